// The telemetry window's fast path (telemetry/telemetry_fast_path.hpp) against the reference
// parser: what it accepts, it accepts with the reference's values; what it declines, the
// reference judges, and ParseTelemetry's answer is the reference's, error text included.
// tests/fuzz/collector_fuzz.cpp checks the same on generated inputs.
#include "telemetry/telemetry_fast_path.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>

#include "telemetry/payloads.hpp"
#include "tests/telemetry/samples.hpp"

namespace edgefleet::telemetry {
namespace {

using testing::FullWindow;
using testing::MinimalWindow;

// Every field of the two windows agrees (the encoder writes every field, the optional ones when
// present, doubles with their sign and all their digits).
void ExpectSameWindow(const TelemetryWindow& a, const TelemetryWindow& b) {
  EXPECT_EQ(EncodeTelemetry(a), EncodeTelemetry(b));
  EXPECT_EQ(a.latency.p99, b.latency.p99);
  EXPECT_EQ(a.golden_accuracy.has_value(), b.golden_accuracy.has_value());
  EXPECT_EQ(a.health.temp_c.has_value(), b.health.temp_c.has_value());
  EXPECT_EQ(a.seq.stream, b.seq.stream);
  EXPECT_EQ(a.seq.n, b.seq.n);
}

// ParseTelemetry answers as the reference does, and the fast path never disagrees with it.
void ExpectReferenceAnswer(const std::string& text) {
  SCOPED_TRACE(text);
  const Result<TelemetryWindow> reference = ParseTelemetryReference(text);
  const std::optional<TelemetryWindow> fast = ParseTelemetryFast(text);
  if (fast) {
    ASSERT_TRUE(reference.has_value())
        << "the fast path accepted what the reference refuses: " << reference.error().message;
    ExpectSameWindow(*fast, *reference);
  }
  const Result<TelemetryWindow> got = ParseTelemetry(text);
  ASSERT_EQ(got.has_value(), reference.has_value());
  if (got) {
    ExpectSameWindow(*got, *reference);
  } else {
    EXPECT_EQ(got.error().code, reference.error().code);
    EXPECT_EQ(got.error().message, reference.error().message);
  }
}

// `text` with the first occurrence of `from` replaced by `to` (which must be there).
std::string Edit(std::string text, std::string_view from, std::string_view to) {
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(TelemetryFastPath, AcceptsWhatAgentsSendWithTheReferencesValues) {
  for (const TelemetryWindow& w : {FullWindow(), MinimalWindow()}) {
    const std::string text = EncodeTelemetry(w);
    const std::optional<TelemetryWindow> fast = ParseTelemetryFast(text);
    ASSERT_TRUE(fast.has_value()) << text;
    const Result<TelemetryWindow> reference = ParseTelemetryReference(text);
    ASSERT_TRUE(reference.has_value()) << reference.error().message;
    ExpectSameWindow(*fast, *reference);
    EXPECT_EQ(fast->device, w.device);
    EXPECT_EQ(fast->latency.count, w.latency.count);
  }
}

TEST(TelemetryFastPath, AgreesWithTheReferenceOnThousandsOfRandomWindows) {
  std::mt19937_64 random(20261205);
  auto any = [&](std::uint64_t below) { return random() % below; };
  auto real = [&](double scale) {
    return std::ldexp(static_cast<double>(random() >> 11), -53) * scale;
  };
  int accepted_fast = 0;
  for (int i = 0; i < 2000; ++i) {
    TelemetryWindow w = (i % 2 == 0) ? FullWindow() : MinimalWindow();
    w.ts = static_cast<std::int64_t>(any(std::uint64_t{1} << 62));
    w.count = any(std::uint64_t{1} << (i % 63));
    w.errors = any(1000);
    w.window_s = real(3600);
    w.throughput_rps = real(1e6);
    w.stage_ms.infer = real(1e-300 * (i % 3)) + real(10);
    w.confidence_mean = real(1);
    w.confidence_std = real(1e3);
    w.health.cpu_pct = real(400);
    if (i % 3 == 0) w.health.temp_c = real(200) - 100;
    if (i % 4 == 0) w.golden_accuracy = real(1);
    if (i % 5 == 0) {
      w.seq = {"0123456789abcdef", 1 + any(1000000)};
    }
    LatencyHistogram h;
    for (std::uint64_t n = any(50); n > 0; --n) h.Record(real(20000));
    w.latency = h.Snapshot();
    const std::string text = EncodeTelemetry(w);
    if (ParseTelemetryFast(text)) ++accepted_fast;
    ExpectReferenceAnswer(text);
  }
  // An agent's own windows always take the fast path.
  EXPECT_EQ(accepted_fast, 2000);
}

TEST(TelemetryFastPath, DeclinesWhatItCannotJudgeAndTheReferenceExplains) {
  const std::string full = EncodeTelemetry(FullWindow());
  const std::string minimal = EncodeTelemetry(MinimalWindow());
  // Refused by the reference: each must come back with the reference's error.
  const std::vector<std::string> refused = {
      "",
      "[]",
      "{}",
      full + "x",
      Edit(full, "\"count\":", "\"count\":1,\"count\":"),                // duplicate key
      Edit(full, "\"pre\":", "\"pre\":1,\"pre\":"),                      // duplicate, nested
      Edit(full, "\"errors\":", "\"mistakes\":0,\"errors\":"),           // unknown key
      Edit(full, "\"outbox\":{", "\"outbox\":{\"pending\":1,"),          // unknown key, nested
      Edit(full, "\"ts\":", "\"ts\":-"),                                 // negative
      Edit(full, "\"errors\":", "\"errors\":1.5,\"x\":"),                // a fraction for a count
      Edit(minimal, "\"errors\":0", "\"errors\":0.0"),                   // 0.0 is not an integer
      Edit(minimal, "\"errors\":0", "\"errors\":9223372036854775808"),   // 2^63
      Edit(minimal, "\"errors\":0", "\"errors\":18446744073709551616"),  // 2^64
      Edit(minimal, "\"errors\":0", "\"errors\":1e400"),
      Edit(minimal, "\"errors\":0", "\"errors\":null"),
      Edit(full, "\"slot\":\"B\"", "\"slot\":\"C\""),
      Edit(full, "\"slot\":\"B\"", "\"slot\":\"\\u0042\\u0000\""),
      Edit(full, "\"mean\":", "\"mean\":2,\"x-m\":"),  // a fraction above 1
      Edit(minimal, "\"le_inf\":", "\"le_inf\":1,\"y\":"),
      Edit(full, "\"le_0.1\":", "\"le_0.1\":99999,\"le_x\":"),  // not cumulative
      Edit(full, "\"seq\":{", "\"seq\":{\"n\":0,\"m\":"),
      Edit(minimal, "\"health\":{", "\"health\":{\"temp_c\":null,"),
      Edit(full, "\"device\":\"box-17\"", "\"device\":\"Box\\n17\""),
      Edit(full, "{", "{\"x-deep\":" + std::string(200, '[') + std::string(200, ']') + ","),
      Edit(full, "{", "{\"x-bad\":\"\\ud800\","),  // a lone surrogate
      Edit(full, "{", "{\"x-bytes\":\"\xff\","),   // not UTF-8
  };
  for (const std::string& text : refused) {
    EXPECT_FALSE(ParseTelemetryFast(text).has_value()) << text;
    EXPECT_FALSE(ParseTelemetryReference(text).has_value()) << text;
    ExpectReferenceAnswer(text);
  }
  // Accepted by the reference but left to it: extensions, escapes, a byte-order mark, numbers
  // written another way. The answer is the reference's either way.
  const std::vector<std::string> accepted = {
      Edit(full, "{", "{\"x-site\":{\"rack\":[1,2,3]},"),
      Edit(full, "\"health\":{", "\"health\":{\"x-fan\":1200,"),
      Edit(full, "\"slot\":\"B\"", "\"slot\":\"\\u0042\""),
      Edit(minimal, "\"errors\":0", "\"errors\":-0"),
      Edit(full, "\"window_s\":", "\"window_s\":1E1,\"x-w\":"),
      Edit(full, "\"cpu_pct\":", "\"cpu_pct\":1e-400,\"x-c\":"),
      "\xEF\xBB\xBF" + full,
      " \t\r\n" + full + " \n",
  };
  for (const std::string& text : accepted) {
    ASSERT_TRUE(ParseTelemetryReference(text).has_value()) << text;
    ExpectReferenceAnswer(text);
  }
  EXPECT_FALSE(ParseTelemetryFast(accepted[0]).has_value());
  EXPECT_FALSE(ParseTelemetryFast(accepted[1]).has_value());
}

}  // namespace
}  // namespace edgefleet::telemetry
