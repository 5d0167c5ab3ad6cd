// The telemetry window's fast path: the one payload a collector reads about once a second per
// device (10,000 a second for a 10,000-device fleet), parsed with simdjson's DOM instead of
// nlohmann::json. bench/RESULTS.md ("The collector's cost per message") has the two costs.
//
// It is an accept-only path: it returns a window only when ParseTelemetryReference
// (payloads.hpp) would accept the same text and return the same values, and nothing whenever it
// could be otherwise: a field missing, of another type or out of range, an unknown key, an "x-"
// extension, a duplicate key, a number either parser would have to convert, text simdjson
// refuses. ParseTelemetry then runs the reference parser, which says exactly what is wrong, so
// errors read the same whichever path a payload took. tests/fuzz/collector_fuzz.cpp runs both
// parsers on every telemetry input and aborts when the fast path accepts anything the reference
// does not, or with other values; tests/telemetry/telemetry_fast_path_test.cpp holds the cases
// found worth naming.
//
// Thread safety: each thread parses with its own simdjson parser (thread_local).
#pragma once

#include <array>
#include <optional>
#include <string_view>

#include "telemetry/payloads.hpp"

namespace edgefleet::telemetry {

// The members of a telemetry window's JSON object, in the order the encoder writes them; every
// one is required except "seq", the last (both parsers read this list).
// clang-format off
inline constexpr std::array<std::string_view, 20> kTelemetryKeys{
    "id", "device", "ts", "start_ts", "window_s", "model", "version", "slot", "role", "count",
    "errors", "server_errors", "throughput_rps", "latency_ms", "stage_ms", "accuracy",
    "confidence", "health", "outbox", "seq"};
// clang-format on

// The window, or nullopt: not accepted here (ParseTelemetryReference decides).
std::optional<TelemetryWindow> ParseTelemetryFast(std::string_view text);

}  // namespace edgefleet::telemetry
