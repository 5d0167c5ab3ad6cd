// The telemetry window's accept-only fast path (telemetry/telemetry_fast_path.hpp). Each reader
// below mirrors one of payloads.cpp's ReadTelemetry steps and returns false wherever that one
// would record a problem, or might: false sends the text to the reference parser.
#include "telemetry/telemetry_fast_path.hpp"

#include <simdjson.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "manifests/json_fields.hpp"

namespace edgefleet::telemetry {
namespace {

using simdjson::dom::element;
using Type = simdjson::dom::element_type;

constexpr double kMaxDouble = std::numeric_limits<double>::max();

// The members of one object, by position in `keys`. False (the reference decides) for a key not
// in `keys` (an unknown key or an "x-" extension), a duplicate key, or a required key missing.
template <std::size_t N>
struct Members {
  std::array<element, N> value{};
  std::uint32_t present = 0;

  bool Read(element obj, const std::array<std::string_view, N>& keys, std::uint32_t required) {
    static_assert(N <= 32);
    simdjson::dom::object members;
    if (obj.get_object().get(members) != simdjson::SUCCESS) return false;
    for (const simdjson::dom::key_value_pair member : members) {
      std::size_t i = 0;
      while (i < N && keys[i] != member.key) ++i;
      if (i == N) return false;
      const std::uint32_t bit = std::uint32_t{1} << i;
      if ((present & bit) != 0) return false;
      present |= bit;
      value[i] = member.value;
    }
    return (present & required) == required;
  }
  bool Has(std::size_t i) const { return (present & (std::uint32_t{1} << i)) != 0; }
};

constexpr std::uint32_t All(std::size_t n) { return n >= 32 ? ~0u : (1u << n) - 1; }

// Reader::Count: an integer from 0 to 2^63-1. simdjson types those INT64; UINT64 is above.
bool Count(element v, std::uint64_t& out) {
  if (v.type() != Type::INT64) return false;
  const std::int64_t i = v.get_int64().value_unsafe();
  if (i < 0) return false;
  out = static_cast<std::uint64_t>(i);
  return true;
}
bool Millis(element v, std::int64_t& out) {
  std::uint64_t count = 0;
  if (!Count(v, count)) return false;
  out = static_cast<std::int64_t>(count);
  return true;
}

// Reader::Number: any JSON number, as nlohmann's get<double>() converts it, within the range.
bool Number(element v, double lower, double upper, double& out) {
  double d = 0;
  switch (v.type()) {
    case Type::INT64:
      d = static_cast<double>(v.get_int64().value_unsafe());
      break;
    case Type::UINT64:
      d = static_cast<double>(v.get_uint64().value_unsafe());
      break;
    case Type::DOUBLE:
      d = v.get_double().value_unsafe();
      break;
    default:
      return false;
  }
  if (!std::isfinite(d) || d < lower || d > upper) return false;
  out = d;
  return true;
}
bool NonNegative(element v, double& out) { return Number(v, 0, kMaxDouble, out); }
bool Fraction(element v, double& out) { return Number(v, 0, 1, out); }

template <typename Valid>
bool String(element v, Valid valid, std::string& out) {
  std::string_view text;
  if (v.get_string().get(text) != simdjson::SUCCESS || !valid(text)) return false;
  out.assign(text);
  return true;
}

const std::array<std::string_view, kLatencyBuckets>& BucketKeys() {
  static const std::array<std::string, kLatencyBuckets> owned = [] {
    std::array<std::string, kLatencyBuckets> keys;
    for (std::size_t i = 0; i < kLatencyBuckets; ++i) keys[i] = LatencySnapshot::BucketKey(i);
    return keys;
  }();
  static const std::array<std::string_view, kLatencyBuckets> views = [] {
    std::array<std::string_view, kLatencyBuckets> keys;
    for (std::size_t i = 0; i < kLatencyBuckets; ++i) keys[i] = owned[i];
    return keys;
  }();
  return views;
}

// "latency_ms": sum, max, p50..p99 (checked, then recomputed), count and the cumulative buckets.
bool ReadLatency(element v, LatencySnapshot& s) {
  constexpr std::size_t kFixed = 7;
  static const std::array<std::string_view, kFixed + kLatencyBuckets> keys = [] {
    std::array<std::string_view, kFixed + kLatencyBuckets> k{"sum", "max", "p50",  "p90",
                                                             "p95", "p99", "count"};
    for (std::size_t i = 0; i < kLatencyBuckets; ++i) k[kFixed + i] = BucketKeys()[i];
    return k;
  }();
  Members<kFixed + kLatencyBuckets> m;
  if (!m.Read(v, keys, All(keys.size()))) return false;
  double percentile = 0;
  for (std::size_t i = 2; i < 6; ++i) {
    if (!NonNegative(m.value[i], percentile)) return false;
  }
  if (!NonNegative(m.value[0], s.sum_ms) || !NonNegative(m.value[1], s.max_ms) ||
      !Count(m.value[6], s.count)) {
    return false;
  }
  for (std::size_t i = 0; i < kLatencyBuckets; ++i) {
    if (!Count(m.value[kFixed + i], s.buckets[i])) return false;
    if (i > 0 && s.buckets[i] < s.buckets[i - 1]) return false;
  }
  if (s.buckets.back() != s.count) return false;
  s.UpdatePercentiles();
  return true;
}

bool ReadStage(element v, StageMs& s) {
  static constexpr std::array<std::string_view, 3> kKeys{"pre", "infer", "post"};
  Members<3> m;
  return m.Read(v, kKeys, All(3)) && NonNegative(m.value[0], s.pre) &&
         NonNegative(m.value[1], s.infer) && NonNegative(m.value[2], s.post);
}

// An optional member: absent is fine, present must be a number within the range.
template <std::size_t N>
bool OptionalNumber(const Members<N>& m, std::size_t i, double lower, double upper,
                    std::optional<double>& out) {
  if (!m.Has(i)) return true;
  double d = 0;
  if (!Number(m.value[i], lower, upper, d)) return false;
  out = d;
  return true;
}

bool ReadAccuracy(element v, TelemetryWindow& w) {
  static constexpr std::array<std::string_view, 4> kKeys{"labeled", "correct", "golden",
                                                         "shadow_agree"};
  Members<4> m;
  return m.Read(v, kKeys, All(2)) && Count(m.value[0], w.labeled) && Count(m.value[1], w.correct) &&
         OptionalNumber(m, 2, 0, 1, w.golden_accuracy) &&
         OptionalNumber(m, 3, 0, 1, w.shadow_agree);
}

bool ReadConfidence(element v, TelemetryWindow& w) {
  static constexpr std::array<std::string_view, 3> kKeys{"mean", "std", "count"};
  Members<3> m;
  return m.Read(v, kKeys, All(3)) && Fraction(m.value[0], w.confidence_mean) &&
         NonNegative(m.value[1], w.confidence_std) && Count(m.value[2], w.predictions);
}

bool ReadHealth(element v, Health& h) {
  static constexpr std::array<std::string_view, 4> kKeys{"rss_bytes", "cpu_pct", "temp_c",
                                                         "disk_free_bytes"};
  Members<4> m;
  return m.Read(v, kKeys, 0b1011) && Count(m.value[0], h.rss_bytes) &&
         NonNegative(m.value[1], h.cpu_pct) && Count(m.value[3], h.disk_free_bytes) &&
         OptionalNumber(m, 2, -kMaxDouble, kMaxDouble, h.temp_c);
}

bool ReadOutbox(element v, std::uint64_t& dropped) {
  static constexpr std::array<std::string_view, 1> kKeys{"dropped"};
  Members<1> m;
  return m.Read(v, kKeys, All(1)) && Count(m.value[0], dropped);
}

bool ReadSeq(element v, MessageSeq& seq) {
  static constexpr std::array<std::string_view, 2> kKeys{"stream", "n"};
  Members<2> m;
  return m.Read(v, kKeys, All(2)) && String(m.value[0], IsSeqStream, seq.stream) &&
         Count(m.value[1], seq.n) && seq.n != 0;
}

// Positions in kTelemetryKeys.
enum Key : std::size_t {
  kId,
  kDevice,
  kTs,
  kStartTs,
  kWindowS,
  kModel,
  kVersion,
  kSlot,
  kRole,
  kCount,
  kErrors,
  kServerErrors,
  kThroughput,
  kLatency,
  kStage,
  kAccuracy,
  kConfidence,
  kHealth,
  kOutbox,
  kSeq,  // the only optional one, last
  kKeyCount
};
static_assert(kKeyCount == kTelemetryKeys.size() && kTelemetryKeys[kSeq] == "seq");

bool ReadWindow(element doc, TelemetryWindow& w) {
  Members<kKeyCount> m;
  if (!m.Read(doc, kTelemetryKeys, All(kSeq))) return false;
  const auto& v = m.value;
  return String(v[kId], IsMessageId, w.id) &&
         String(v[kDevice], manifests::IsValidName, w.device) && Millis(v[kTs], w.ts) &&
         Millis(v[kStartTs], w.start_ts) && NonNegative(v[kWindowS], w.window_s) &&
         String(v[kModel], manifests::IsValidName, w.model) &&
         String(v[kVersion], IsSemVer, w.version) && String(v[kSlot], IsSlot, w.slot) &&
         String(v[kRole], IsRole, w.role) && Count(v[kCount], w.count) &&
         Count(v[kErrors], w.errors) && Count(v[kServerErrors], w.server_errors) &&
         NonNegative(v[kThroughput], w.throughput_rps) && ReadLatency(v[kLatency], w.latency) &&
         ReadStage(v[kStage], w.stage_ms) && ReadAccuracy(v[kAccuracy], w) &&
         ReadConfidence(v[kConfidence], w) && ReadHealth(v[kHealth], w.health) &&
         ReadOutbox(v[kOutbox], w.outbox_dropped) && (!m.Has(kSeq) || ReadSeq(v[kSeq], w.seq));
}

}  // namespace

std::optional<TelemetryWindow> ParseTelemetryFast(std::string_view text) {
  if (text.size() > kMaxPayloadBytes) return std::nullopt;
  thread_local simdjson::dom::parser parser(kMaxPayloadBytes);
  element doc;
  if (parser.parse(text.data(), text.size()).get(doc) != simdjson::SUCCESS) return std::nullopt;
  TelemetryWindow w;
  if (!ReadWindow(doc, w)) return std::nullopt;
  return w;
}

}  // namespace edgefleet::telemetry
