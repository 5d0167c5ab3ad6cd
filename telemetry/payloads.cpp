// Topics, message ids and the JSON of status, telemetry and event messages (see
// telemetry/payloads.hpp). The JSON Schemas in
// manifests/schema/{status,telemetry,event}.schema.json describe the same shapes;
// tests/telemetry/schema_examples.cpp keeps the two in agreement.
#include "telemetry/payloads.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/json_fields.hpp"
#include "manifests/semver.hpp"
#include "telemetry/telemetry_fast_path.hpp"

namespace edgefleet::telemetry {
namespace {

using manifests::Child;
using manifests::FieldReader;
using manifests::Index;
using manifests::IsValidName;
using manifests::QuoteForMessage;
using Json = nlohmann::json;
// Encoders keep the order of ARCHITECTURE.md's sketch, so a payload read off the wire with
// mosquitto_sub reads the same way as the design.
using OrderedJson = nlohmann::ordered_json;
using Keys = std::set<std::string, std::less<>>;

constexpr std::string_view kNamePattern = "[a-z0-9][a-z0-9._-]{0,63}";
constexpr std::size_t kMaxIdLength = 64;

// ---------------------------------------------------------------------------------------------
// Topics

std::vector<std::string_view> SplitLevels(std::string_view topic) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = topic.find('/', start);
    levels.push_back(
        topic.substr(start, slash == std::string_view::npos ? topic.npos : slash - start));
    if (slash == std::string_view::npos) return levels;
    start = slash + 1;
  }
}

bool IsDeviceLeaf(std::string_view leaf) {
  return leaf == "status" || leaf == "telemetry" || leaf == "events" || leaf == "desired";
}

// ---------------------------------------------------------------------------------------------
// Field reading. Every problem reads "expected <what>, found <the value>", like the manifests'
// readers, so a collector log line says what was wrong without the payload at hand.

std::string Shown(const Json& value) {
  if (value.is_string()) return QuoteForMessage(value.get_ref<const std::string&>());
  constexpr std::size_t kMaxShown = 80;
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > kMaxShown) text = text.substr(0, kMaxShown) + "...";
  return text;
}

class Reader {
 public:
  explicit Reader(std::string source) : fields_(std::move(source)) {}

  FieldReader& fields() { return fields_; }
  void Problem(std::string_view path, std::string_view what) { fields_.Problem(path, what); }
  void Expected(std::string_view path, std::string_view what, const Json& found) {
    Problem(path, "expected " + std::string(what) + ", found " + Shown(found));
  }

  // The member `key` of `obj`, or nullptr (a problem recorded when it is required).
  const Json* Find(const Json& obj, std::string_view key, std::string_view path,
                   std::string_view expected, bool required = true) {
    if (const auto it = obj.find(key); it != obj.end()) return &*it;
    if (required) {
      Problem(path,
              "missing required field, expected " + std::string(expected) + ", found nothing");
    }
    return nullptr;
  }

  // Counters and timestamps: non-negative integers below 2^63 (SQLite's INTEGER on the
  // collector side is signed 64-bit).
  std::optional<std::uint64_t> Count(const Json& obj, std::string_view key, std::string_view path) {
    constexpr std::string_view kWhat = "a non-negative integer";
    const Json* v = Find(obj, key, path, kWhat);
    if (v == nullptr) return std::nullopt;
    if (v->is_number_unsigned()) {
      const auto u = v->get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return u;
      Expected(path, "a non-negative integer below 2^63", *v);
      return std::nullopt;
    }
    if (v->is_number_integer() && v->get<std::int64_t>() >= 0) {
      return static_cast<std::uint64_t>(v->get<std::int64_t>());
    }
    Expected(path, kWhat, *v);
    return std::nullopt;
  }
  std::optional<std::int64_t> Millis(const Json& obj, std::string_view key, std::string_view path) {
    const auto count = Count(obj, key, path);
    if (!count) return std::nullopt;
    return static_cast<std::int64_t>(*count);
  }

  // A finite number within [lower, upper]; `what` describes the range for the message.
  std::optional<double> Number(const Json& obj, std::string_view key, std::string_view path,
                               std::string_view what, double lower, double upper,
                               bool required = true) {
    const Json* v = Find(obj, key, path, what, required);
    if (v == nullptr) return std::nullopt;
    if (v->is_number()) {
      const double d = v->get<double>();
      if (std::isfinite(d) && d >= lower && d <= upper) return d;
    }
    Expected(path, what, *v);
    return std::nullopt;
  }
  std::optional<double> NonNegative(const Json& obj, std::string_view key, std::string_view path) {
    return Number(obj, key, path, "a non-negative number", 0, std::numeric_limits<double>::max());
  }
  std::optional<double> Fraction(const Json& obj, std::string_view key, std::string_view path,
                                 bool required = true) {
    return Number(obj, key, path, "a number from 0 to 1", 0, 1, required);
  }

  std::optional<bool> Bool(const Json& obj, std::string_view key, std::string_view path) {
    const Json* v = Find(obj, key, path, "true or false");
    if (v == nullptr) return std::nullopt;
    if (v->is_boolean()) return v->get<bool>();
    Expected(path, "true or false", *v);
    return std::nullopt;
  }

  // A string accepted by `valid`; `what` describes valid strings for the message.
  template <typename Valid>
  std::optional<std::string> String(const Json& obj, std::string_view key, std::string_view path,
                                    std::string_view what, Valid valid) {
    const Json* v = Find(obj, key, path, what);
    if (v == nullptr) return std::nullopt;
    if (v->is_string() && valid(v->get_ref<const std::string&>())) return v->get<std::string>();
    Expected(path, what, *v);
    return std::nullopt;
  }
  std::optional<std::string> AnyString(const Json& obj, std::string_view key,
                                       std::string_view path) {
    return String(obj, key, path, "a string", [](std::string_view) { return true; });
  }
  std::optional<std::string> Name(const Json& obj, std::string_view key, std::string_view path) {
    return String(obj, key, path, "a name matching " + std::string(kNamePattern), IsValidName);
  }

  // The object or array member `key`; nullptr (problem recorded) when missing or of another type.
  const Json* Object(const Json& obj, std::string_view key, std::string_view path) {
    return Container(obj, key, path, "an object", &Json::is_object);
  }
  const Json* Array(const Json& obj, std::string_view key, std::string_view path) {
    return Container(obj, key, path, "an array", &Json::is_array);
  }

  void RejectUnknown(const Json& obj, const Keys& allowed, std::string_view path) {
    fields_.RejectUnknown(obj, allowed, path);
  }

  // Calls `read(item, path)` for each object in the array member `key`; any other item is a
  // problem.
  template <typename Read>
  void ForEachObject(const Json& obj, std::string_view key, Read read) {
    const Json* items = Array(obj, key, key);
    if (items == nullptr) return;
    for (std::size_t i = 0; i < items->size(); ++i) {
      const std::string path = Index(key, i);
      const Json& item = (*items)[i];
      if (item.is_object()) {
        read(item, path);
      } else {
        Expected(path, "an object", item);
      }
    }
  }

 private:
  const Json* Container(const Json& obj, std::string_view key, std::string_view path,
                        std::string_view what, bool (Json::*is)() const noexcept) {
    const Json* v = Find(obj, key, path, what);
    if (v == nullptr) return nullptr;
    if ((v->*is)()) return v;
    Expected(path, what, *v);
    return nullptr;
  }

  FieldReader fields_;
};

bool IsNonEmpty(std::string_view text) { return !text.empty(); }
// Deployment states and event names: lower-case words joined by '_' ("rolled_back").
bool IsEventName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '_') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || c == '_')) return false;
  }
  return true;
}
bool IsSha256(std::string_view hex) { return manifests::IsLowerHex(hex, 64); }

constexpr std::string_view kIdWhat = "an id of 1 to 64 characters from [A-Za-z0-9-]";
constexpr std::string_view kSemVerWhat = "a semantic version such as \"1.2.0\"";

Result<Json> ParseObject(std::string_view text, std::string_view source, Reader& reader) {
  auto doc = manifests::ParseJsonText(text, source, kMaxPayloadBytes);
  if (!doc) return doc;
  if (!doc->is_object()) {
    reader.Expected("", "an object", *doc);
    return Unexpected(reader.fields().ToStatus().error());
  }
  return doc;
}
void ReadCommon(Reader& r, const Json& doc, std::string& id, std::string& device,
                std::int64_t& ts) {
  if (auto v = r.String(doc, "id", "id", kIdWhat, IsMessageId)) id = *v;
  if (auto v = r.Name(doc, "device", "device")) device = *v;
  if (auto v = r.Millis(doc, "ts", "ts")) ts = *v;
}

// Parses with `read` and turns problems (and any nlohmann exception) into one kParse error.
template <typename Message, typename Read>
Result<Message> ParseMessage(std::string_view text, std::string_view source, Read read) {
  Reader reader{std::string(source)};
  try {
    auto doc = ParseObject(text, source, reader);
    if (!doc) return Unexpected(doc.error());
    Message m;
    read(reader, *doc, m);
    EF_RETURN_IF_ERROR(reader.fields().ToStatus());
    return m;
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kParse, std::string(source) + ": " + e.what());
  }
}

// "seq" last, when the message is numbered.
void AddSeq(OrderedJson& out, const MessageSeq& seq) {
  if (seq.n != 0) out["seq"] = {{"stream", seq.stream}, {"n", seq.n}};
}

// Strings the agent did not make (error messages naming files, backend versions) may hold bytes
// that are not UTF-8; they are sent with U+FFFD in their place instead of throwing.
std::string Dump(const OrderedJson& doc) {
  return doc.dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
}

// JSON has no NaN or infinity (nlohmann would write null, which our own parser then refuses);
// a non-finite value here is a bug upstream, sent as 0 so the rest of the window still arrives.
double Finite(double d) { return std::isfinite(d) ? d : 0.0; }

// ---------------------------------------------------------------------------------------------
// status

OrderedJson SlotJson(const std::optional<SlotInfo>& slot) {
  if (!slot) return nullptr;
  return {{"slot", slot->slot}, {"version", slot->version}, {"sha256", slot->sha256}};
}

std::optional<SlotInfo> ReadSlot(Reader& r, const Json& model, std::string_view key,
                                 const std::string& path, bool& ok) {
  const Json* v = r.Find(model, key, path, "an object or null");
  if (v == nullptr || v->is_null()) {
    ok = ok && v != nullptr;
    return std::nullopt;
  }
  if (!v->is_object()) {
    r.Expected(path, "an object or null", *v);
    ok = false;
    return std::nullopt;
  }
  r.RejectUnknown(*v, {"slot", "version", "sha256"}, path);
  SlotInfo slot;
  auto s = r.String(*v, "slot", Child(path, "slot"), "\"A\" or \"B\"", IsSlot);
  auto version = r.String(*v, "version", Child(path, "version"), kSemVerWhat, IsSemVer);
  auto sha = r.String(*v, "sha256", Child(path, "sha256"), "64 lowercase hex digits", IsSha256);
  if (!s || !version || !sha) {
    ok = false;
    return std::nullopt;
  }
  return SlotInfo{*s, *version, *sha};
}

void ReadStatus(Reader& r, const Json& doc, StatusMessage& m) {
  r.RejectUnknown(doc,
                  {"id", "device", "fleet", "ts", "online", "agent_version", "groups", "backends",
                   "models", "connection", "outbox"},
                  "");
  ReadCommon(r, doc, m.id, m.device, m.ts);
  if (auto v = r.Name(doc, "fleet", "fleet")) m.fleet = *v;
  if (auto v = r.Bool(doc, "online", "online")) m.online = *v;
  if (auto v = r.String(doc, "agent_version", "agent_version", "a non-empty string", IsNonEmpty)) {
    m.agent_version = *v;
  }
  if (const Json* groups = r.Array(doc, "groups", "groups")) {
    for (std::size_t i = 0; i < groups->size(); ++i) {
      const Json& g = (*groups)[i];
      if (g.is_string() && IsValidName(g.get_ref<const std::string&>())) {
        m.groups.push_back(g.get<std::string>());
      } else {
        r.Expected(Index("groups", i), "a name matching " + std::string(kNamePattern), g);
      }
    }
  }
  r.ForEachObject(doc, "backends", [&](const Json& b, const std::string& path) {
    r.RejectUnknown(b, {"name", "version", "formats", "devices"}, path);
    auto name = r.String(b, "name", Child(path, "name"), "a non-empty string", IsNonEmpty);
    auto version = r.String(b, "version", Child(path, "version"), "a non-empty string", IsNonEmpty);
    BackendInfo info;
    for (const char* key : {"formats", "devices"}) {
      const std::string list_path = Child(path, key);
      const Json* list = b.contains(key) ? r.Array(b, key, list_path) : nullptr;
      if (list == nullptr) continue;
      auto& out = std::string_view(key) == "formats" ? info.formats : info.devices;
      for (std::size_t i = 0; i < list->size(); ++i) {
        const Json& item = (*list)[i];
        if (item.is_string() && !item.get_ref<const std::string&>().empty()) {
          out.push_back(item.get<std::string>());
        } else {
          r.Expected(Index(list_path, i), "a non-empty string", item);
        }
      }
    }
    if (name && version) {
      info.name = *name;
      info.version = *version;
      m.backends.push_back(std::move(info));
    }
  });
  std::set<std::string, std::less<>> names;
  r.ForEachObject(doc, "models", [&](const Json& item, const std::string& path) {
    r.RejectUnknown(item, {"name", "active", "standby"}, path);
    bool ok = true;
    ModelStatus model;
    if (auto name = r.Name(item, "name", Child(path, "name"))) {
      model.name = *name;
      if (!names.insert(*name).second) {
        r.Problem(Child(path, "name"),
                  "expected each model once, found " + QuoteForMessage(*name) + " again");
        ok = false;
      }
    } else {
      ok = false;
    }
    model.active = ReadSlot(r, item, "active", Child(path, "active"), ok);
    model.standby = ReadSlot(r, item, "standby", Child(path, "standby"), ok);
    if (ok) m.models.push_back(std::move(model));
  });
  if (auto v = r.Count(doc, "connection", "connection")) m.connection = *v;
  if (const Json* outbox = r.Object(doc, "outbox", "outbox")) {
    r.RejectUnknown(*outbox, {"pending", "dropped"}, "outbox");
    if (auto v = r.Count(*outbox, "pending", "outbox.pending")) m.outbox_pending = *v;
    if (auto v = r.Count(*outbox, "dropped", "outbox.dropped")) m.outbox_dropped = *v;
  }
}

// ---------------------------------------------------------------------------------------------
// telemetry

OrderedJson LatencyJson(const LatencySnapshot& s) {
  OrderedJson out = {{"sum", Finite(s.sum_ms)}, {"max", Finite(s.max_ms)}, {"p50", Finite(s.p50)},
                     {"p90", Finite(s.p90)},    {"p95", Finite(s.p95)},    {"p99", Finite(s.p99)},
                     {"count", s.count}};
  for (std::size_t i = 0; i < kLatencyBuckets; ++i)
    out[LatencySnapshot::BucketKey(i)] = s.buckets[i];
  return out;
}

const Keys& LatencyKeys() {
  static const Keys keys = [] {
    Keys k = {"sum", "max", "p50", "p90", "p95", "p99", "count"};
    for (std::size_t i = 0; i < kLatencyBuckets; ++i) k.insert(LatencySnapshot::BucketKey(i));
    return k;
  }();
  return keys;
}

void ReadLatency(Reader& r, const Json& doc, LatencySnapshot& s) {
  const std::string path = "latency_ms";
  const Json* lat = r.Object(doc, "latency_ms", path);
  if (lat == nullptr) return;
  r.RejectUnknown(*lat, LatencyKeys(), path);
  if (auto v = r.NonNegative(*lat, "sum", Child(path, "sum"))) s.sum_ms = *v;
  if (auto v = r.NonNegative(*lat, "max", Child(path, "max"))) s.max_ms = *v;
  // The percentiles must be well-formed, but their values are recomputed from the buckets below:
  // the buckets are what merges across the fleet, so they are the truth.
  for (const char* key : {"p50", "p90", "p95", "p99"}) r.NonNegative(*lat, key, Child(path, key));
  const auto count = r.Count(*lat, "count", Child(path, "count"));
  if (count) s.count = *count;
  bool buckets_ok = true;
  for (std::size_t i = 0; i < kLatencyBuckets; ++i) {
    const std::string key = LatencySnapshot::BucketKey(i);
    if (auto v = r.Count(*lat, key, Child(path, key))) {
      s.buckets[i] = *v;
    } else {
      buckets_ok = false;
    }
  }
  if (!buckets_ok) return;
  for (std::size_t i = 1; i < kLatencyBuckets; ++i) {
    if (s.buckets[i] < s.buckets[i - 1]) {
      const std::string previous = LatencySnapshot::BucketKey(i - 1);
      r.Problem(Child(path, LatencySnapshot::BucketKey(i)),
                "expected a cumulative count of at least " + previous + "'s " +
                    std::to_string(s.buckets[i - 1]) + ", found " + std::to_string(s.buckets[i]));
    }
  }
  if (count && s.buckets.back() != *count) {
    r.Problem(Child(path, "le_inf"), "expected the same as latency_ms.count (" +
                                         std::to_string(*count) + "), found " +
                                         std::to_string(s.buckets.back()));
  }
  s.UpdatePercentiles();
}

// The optional "seq": {"stream": "<16 hex>", "n": <1 or more>}.
void ReadSeq(Reader& r, const Json& doc, MessageSeq& seq) {
  const Json* v = r.Find(doc, "seq", "seq", "an object", false);
  if (v == nullptr) return;
  if (!v->is_object()) {
    r.Expected("seq", "an object", *v);
    return;
  }
  r.RejectUnknown(*v, {"stream", "n"}, "seq");
  if (auto s = r.String(*v, "stream", "seq.stream", "16 lower-case hex digits", IsSeqStream)) {
    seq.stream = *s;
  }
  if (auto n = r.Count(*v, "n", "seq.n")) {
    if (*n == 0) {
      r.Problem("seq.n", "expected a number of 1 or more, found 0");
    } else {
      seq.n = *n;
    }
  }
}

void ReadTelemetry(Reader& r, const Json& doc, TelemetryWindow& m) {
  static const Keys kKeys = [] {
    Keys keys;
    for (std::string_view key : kTelemetryKeys) keys.emplace(key);
    return keys;
  }();
  r.RejectUnknown(doc, kKeys, "");
  ReadCommon(r, doc, m.id, m.device, m.ts);
  ReadSeq(r, doc, m.seq);
  if (auto v = r.Millis(doc, "start_ts", "start_ts")) m.start_ts = *v;
  constexpr double kMax = std::numeric_limits<double>::max();
  // 0 is possible: a window closed in the millisecond it opened (at shutdown).
  if (auto v = r.NonNegative(doc, "window_s", "window_s")) m.window_s = *v;
  if (auto v = r.Name(doc, "model", "model")) m.model = *v;
  if (auto v = r.String(doc, "version", "version", kSemVerWhat, IsSemVer)) m.version = *v;
  if (auto v = r.String(doc, "slot", "slot", "\"A\" or \"B\"", IsSlot)) m.slot = *v;
  if (auto v = r.String(doc, "role", "role", "\"active\", \"candidate\" or \"previous\"", IsRole)) {
    m.role = *v;
  }
  if (auto v = r.Count(doc, "count", "count")) m.count = *v;
  if (auto v = r.Count(doc, "errors", "errors")) m.errors = *v;
  if (auto v = r.Count(doc, "server_errors", "server_errors")) m.server_errors = *v;
  if (auto v = r.NonNegative(doc, "throughput_rps", "throughput_rps")) m.throughput_rps = *v;
  ReadLatency(r, doc, m.latency);

  if (const Json* stage = r.Object(doc, "stage_ms", "stage_ms")) {
    r.RejectUnknown(*stage, {"pre", "infer", "post"}, "stage_ms");
    if (auto v = r.NonNegative(*stage, "pre", "stage_ms.pre")) m.stage_ms.pre = *v;
    if (auto v = r.NonNegative(*stage, "infer", "stage_ms.infer")) m.stage_ms.infer = *v;
    if (auto v = r.NonNegative(*stage, "post", "stage_ms.post")) m.stage_ms.post = *v;
  }
  if (const Json* acc = r.Object(doc, "accuracy", "accuracy")) {
    r.RejectUnknown(*acc, {"labeled", "correct", "golden", "shadow_agree"}, "accuracy");
    if (auto v = r.Count(*acc, "labeled", "accuracy.labeled")) m.labeled = *v;
    if (auto v = r.Count(*acc, "correct", "accuracy.correct")) m.correct = *v;
    m.golden_accuracy = r.Fraction(*acc, "golden", "accuracy.golden", false);
    m.shadow_agree = r.Fraction(*acc, "shadow_agree", "accuracy.shadow_agree", false);
  }
  if (const Json* conf = r.Object(doc, "confidence", "confidence")) {
    r.RejectUnknown(*conf, {"mean", "std", "count"}, "confidence");
    if (auto v = r.Fraction(*conf, "mean", "confidence.mean")) m.confidence_mean = *v;
    if (auto v = r.NonNegative(*conf, "std", "confidence.std")) m.confidence_std = *v;
    if (auto v = r.Count(*conf, "count", "confidence.count")) m.predictions = *v;
  }
  if (const Json* health = r.Object(doc, "health", "health")) {
    r.RejectUnknown(*health, {"rss_bytes", "cpu_pct", "temp_c", "disk_free_bytes"}, "health");
    if (auto v = r.Count(*health, "rss_bytes", "health.rss_bytes")) m.health.rss_bytes = *v;
    if (auto v = r.NonNegative(*health, "cpu_pct", "health.cpu_pct")) m.health.cpu_pct = *v;
    m.health.temp_c =
        r.Number(*health, "temp_c", "health.temp_c", "a finite number", -kMax, kMax, false);
    if (auto v = r.Count(*health, "disk_free_bytes", "health.disk_free_bytes")) {
      m.health.disk_free_bytes = *v;
    }
  }
  if (const Json* outbox = r.Object(doc, "outbox", "outbox")) {
    r.RejectUnknown(*outbox, {"dropped"}, "outbox");
    if (auto v = r.Count(*outbox, "dropped", "outbox.dropped")) m.outbox_dropped = *v;
  }
}

// ---------------------------------------------------------------------------------------------
// event

void ReadEvent(Reader& r, const Json& doc, EventMessage& m) {
  r.RejectUnknown(doc,
                  {"id", "device", "ts", "event", "deployment", "model", "version", "from",
                   "reason", "serial", "target", "parity", "seq"},
                  "");
  ReadCommon(r, doc, m.id, m.device, m.ts);
  ReadSeq(r, doc, m.seq);
  constexpr std::string_view kEventWhat = "lower-case letters and '_' (1 to 64)";
  if (auto v = r.String(doc, "event", "event", kEventWhat, IsEventName)) m.event = *v;
  if (auto v = r.Count(doc, "deployment", "deployment"))
    m.deployment = static_cast<std::int64_t>(*v);
  // Empty when unknown (a desired state refused before a model was named).
  if (auto v =
          r.String(doc, "model", "model", "\"\" or a name matching " + std::string(kNamePattern),
                   [](std::string_view s) { return s.empty() || IsValidName(s); })) {
    m.model = *v;
  }
  if (auto v = r.String(doc, "version", "version", "\"\" or " + std::string(kSemVerWhat),
                        [](std::string_view s) { return s.empty() || IsSemVer(s); })) {
    m.version = *v;
  }
  if (auto v = r.String(doc, "from", "from", "\"\" or " + std::string(kEventWhat),
                        [](std::string_view s) { return s.empty() || IsEventName(s); })) {
    m.from = *v;
  }
  if (auto v = r.AnyString(doc, "reason", "reason")) m.reason = *v;
  if (auto v = r.Count(doc, "serial", "serial")) m.serial = *v;
  if (auto v = r.AnyString(doc, "target", "target")) m.target = *v;
  if (const Json* parity = r.Find(doc, "parity", "parity", "an object", false)) {
    if (parity->is_object()) {
      m.parity_json = parity->dump();
    } else {
      r.Expected("parity", "an object", *parity);
    }
  }
}

}  // namespace

bool IsMessageId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (char c : id) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return true;
}
bool IsSeqStream(std::string_view s) {
  return s.size() == 16 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}
bool IsSlot(std::string_view slot) { return slot == "A" || slot == "B"; }
bool IsRole(std::string_view role) {
  return role == "active" || role == "candidate" || role == "previous";
}
bool IsSemVer(std::string_view text) { return manifests::SemVer::Parse(text).has_value(); }

std::string DeviceTopic(std::string_view fleet, std::string_view device, std::string_view leaf) {
  std::string topic(kTopicRoot);
  for (std::string_view level : {fleet, std::string_view("device"), device, leaf}) {
    topic += '/';
    topic += level;
  }
  return topic;
}

std::string GroupDesiredTopic(std::string_view fleet, std::string_view group) {
  std::string topic(kTopicRoot);
  for (std::string_view level :
       {fleet, std::string_view("group"), group, std::string_view("desired")}) {
    topic += '/';
    topic += level;
  }
  return topic;
}

Result<TopicParts> ParseTopic(std::string_view topic) {
  const auto refuse = [&](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument, "topic " + QuoteForMessage(topic) + ": " + why);
  };
  const std::vector<std::string_view> levels = SplitLevels(topic);
  for (std::size_t i = 0; i < levels.size(); ++i) {
    if (levels[i].empty()) return refuse("level " + std::to_string(i + 1) + " is empty");
    if (levels[i].find_first_of("+#") != std::string_view::npos) {
      return refuse("level " + std::to_string(i + 1) + " holds a wildcard (+ or #)");
    }
  }
  const std::vector<std::string_view> root = SplitLevels(kTopicRoot);
  if (levels.size() < root.size() || levels[0] != root[0] || levels[1] != root[1]) {
    return refuse("expected it to start with " + std::string(kTopicRoot) + "/");
  }
  constexpr std::size_t kLevels = 6;  // edgefleet / v1 / fleet / kind / name / leaf
  if (levels.size() != kLevels) {
    return refuse("expected " + std::to_string(kLevels) + " levels (" + std::string(kTopicRoot) +
                  "/<fleet>/<device|group>/<name>/<leaf>), found " + std::to_string(levels.size()));
  }
  TopicParts parts{std::string(levels[2]), std::string(levels[3]), std::string(levels[4]),
                   std::string(levels[5])};
  if (parts.kind != "device" && parts.kind != "group") {
    return refuse("expected \"device\" or \"group\" at level 4, found " +
                  QuoteForMessage(parts.kind));
  }
  if (parts.kind == "device" && !IsDeviceLeaf(parts.leaf)) {
    return refuse("expected status, telemetry, events or desired after the device, found " +
                  QuoteForMessage(parts.leaf));
  }
  if (parts.kind == "group" && parts.leaf != "desired") {
    return refuse("expected desired after the group, found " + QuoteForMessage(parts.leaf));
  }
  // Fleet, device and group names follow the project's name rule (the agent's config and the
  // desired state refuse others), so a topic naming anything else was not written by us.
  if (!IsValidName(parts.fleet)) {
    return refuse("expected a fleet matching " + std::string(kNamePattern) + ", found " +
                  QuoteForMessage(parts.fleet));
  }
  if (!IsValidName(parts.name)) {
    return refuse("expected a " + parts.kind + " matching " + std::string(kNamePattern) +
                  ", found " + QuoteForMessage(parts.name));
  }
  return parts;
}

std::string NewMessageId() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    // OpenSSL's DRBG only fails when it cannot seed; the id must still be unique, not secret.
    std::random_device device;
    for (auto& b : bytes) b = static_cast<unsigned char>(device());
  }
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);  // version 4
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  id.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) id += '-';
    id += kHex[bytes[i] >> 4];
    id += kHex[bytes[i] & 0x0f];
  }
  return id;
}

std::string EncodeStatus(const StatusMessage& m) {
  OrderedJson backends = OrderedJson::array();
  for (const auto& b : m.backends) {
    backends.push_back(
        {{"name", b.name}, {"version", b.version}, {"formats", b.formats}, {"devices", b.devices}});
  }
  OrderedJson models = OrderedJson::array();
  for (const auto& model : m.models) {
    models.push_back({{"name", model.name},
                      {"active", SlotJson(model.active)},
                      {"standby", SlotJson(model.standby)}});
  }
  const OrderedJson out = {
      {"id", m.id},
      {"device", m.device},
      {"fleet", m.fleet},
      {"ts", m.ts},
      {"online", m.online},
      {"agent_version", m.agent_version},
      {"groups", m.groups},
      {"backends", std::move(backends)},
      {"models", std::move(models)},
      {"connection", m.connection},
      {"outbox", {{"pending", m.outbox_pending}, {"dropped", m.outbox_dropped}}}};
  return Dump(out);
}

std::string EncodeTelemetry(const TelemetryWindow& m) {
  OrderedJson accuracy = {{"labeled", m.labeled}, {"correct", m.correct}};
  if (m.golden_accuracy) accuracy["golden"] = Finite(*m.golden_accuracy);
  if (m.shadow_agree) accuracy["shadow_agree"] = Finite(*m.shadow_agree);
  OrderedJson health = {{"rss_bytes", m.health.rss_bytes}, {"cpu_pct", Finite(m.health.cpu_pct)}};
  if (m.health.temp_c) health["temp_c"] = Finite(*m.health.temp_c);
  health["disk_free_bytes"] = m.health.disk_free_bytes;
  OrderedJson out = {{"id", m.id},
                     {"device", m.device},
                     {"ts", m.ts},
                     {"start_ts", m.start_ts},
                     {"window_s", Finite(m.window_s)},
                     {"model", m.model},
                     {"version", m.version},
                     {"slot", m.slot},
                     {"role", m.role},
                     {"count", m.count},
                     {"errors", m.errors},
                     {"server_errors", m.server_errors},
                     {"throughput_rps", Finite(m.throughput_rps)},
                     {"latency_ms", LatencyJson(m.latency)},
                     {"stage_ms",
                      {{"pre", Finite(m.stage_ms.pre)},
                       {"infer", Finite(m.stage_ms.infer)},
                       {"post", Finite(m.stage_ms.post)}}},
                     {"accuracy", std::move(accuracy)},
                     {"confidence",
                      {{"mean", Finite(m.confidence_mean)},
                       {"std", Finite(m.confidence_std)},
                       {"count", m.predictions}}},
                     {"health", std::move(health)},
                     {"outbox", {{"dropped", m.outbox_dropped}}}};
  AddSeq(out, m.seq);
  return Dump(out);
}

std::string EncodeEvent(const EventMessage& m) {
  OrderedJson out = {{"id", m.id},
                     {"device", m.device},
                     {"ts", m.ts},
                     {"event", m.event},
                     {"deployment", m.deployment},
                     {"model", m.model},
                     {"version", m.version},
                     {"from", m.from},
                     {"reason", m.reason},
                     {"serial", m.serial},
                     {"target", m.target}};
  if (!m.parity_json.empty()) {
    // Embedded as an object so the collector and jq read it without a second parse. Text that is
    // not a JSON object (a bug upstream) still arrives, wrapped, rather than vanishing.
    OrderedJson parity = OrderedJson::parse(m.parity_json, nullptr, /*allow_exceptions=*/false);
    if (!parity.is_object()) parity = {{"unparsed", m.parity_json}};
    out["parity"] = std::move(parity);
  }
  AddSeq(out, m.seq);
  return Dump(out);
}

Result<StatusMessage> ParseStatus(std::string_view text) {
  return ParseMessage<StatusMessage>(text, "status", ReadStatus);
}

Result<TelemetryWindow> ParseTelemetry(std::string_view text) {
  if (text.size() <= kMaxPayloadBytes) {
    if (std::optional<TelemetryWindow> fast = ParseTelemetryFast(text)) return std::move(*fast);
  }
  return ParseTelemetryReference(text);
}

Result<TelemetryWindow> ParseTelemetryReference(std::string_view text) {
  return ParseMessage<TelemetryWindow>(text, "telemetry", ReadTelemetry);
}

Result<EventMessage> ParseEvent(std::string_view text) {
  return ParseMessage<EventMessage>(text, "event", ReadEvent);
}

}  // namespace edgefleet::telemetry
