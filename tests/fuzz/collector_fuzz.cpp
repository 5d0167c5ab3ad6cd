// Fuzzes the collector's intake of MQTT messages: deploy::ClassifyMessage, which parses device
// status, telemetry and event payloads (telemetry::ParseStatus/ParseTelemetry/ParseEvent) and
// rollout status payloads (ParseRolloutStatus) and checks them against their topic.
//
// Input: the first byte picks the topic (one of the four kinds for device "box-17" of fleet
// "demo", or, from 4 on, a topic read from the input up to its first newline); the rest is the
// payload.
//
// Telemetry payloads also go through both telemetry parsers on their own: the simdjson fast path
// (telemetry/telemetry_fast_path.hpp) may accept only what the reference parser accepts, with
// the same values; anything else aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "deploy/collector/collector.hpp"
#include "telemetry/payloads.hpp"
#include "telemetry/telemetry_fast_path.hpp"

namespace {

void CompareTelemetryParsers(std::string_view payload) {
  using namespace edgefleet::telemetry;
  const std::optional<TelemetryWindow> fast = ParseTelemetryFast(payload);
  if (!fast) return;
  const auto reference = ParseTelemetryReference(payload);
  if (!reference) {
    std::fprintf(stderr, "fast path accepted what the reference refuses: %s\n",
                 reference.error().message.c_str());
    std::abort();
  }
  if (EncodeTelemetry(*fast) != EncodeTelemetry(*reference)) {
    std::fprintf(stderr, "fast path and reference differ:\n%s\n%s\n",
                 EncodeTelemetry(*fast).c_str(), EncodeTelemetry(*reference).c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string topic;
  switch (data[0] % 8) {
    case 0:
      topic = "edgefleet/v1/demo/device/box-17/status";
      break;
    case 1:
      topic = "edgefleet/v1/demo/device/box-17/telemetry";
      CompareTelemetryParsers(payload);
      break;
    case 2:
      topic = "edgefleet/v1/demo/device/box-17/events";
      break;
    case 3:
      topic = "edgefleet/v1/demo/rollout/digits-1.1.0/status";
      break;
    default: {
      const std::size_t newline = payload.find('\n');
      topic = std::string(payload.substr(0, newline));
      payload =
          newline == std::string_view::npos ? std::string_view() : payload.substr(newline + 1);
      break;
    }
  }
  (void)edgefleet::deploy::ClassifyMessage(topic, payload, 1764547200000);
  return 0;
}
