// Topics, message ids and the status / telemetry / event payloads: round trips with every
// optional field present and absent, and every refusal with the field it names.
#include "telemetry/payloads.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/telemetry/samples.hpp"

namespace edgefleet::telemetry {
namespace {

using nlohmann::json;
using testing::FullStatus;
using testing::FullWindow;
using testing::LastWill;
using testing::MinimalWindow;
using testing::ParityEvent;
using testing::RejectedEvent;

// Passes when `result` failed with `code` and a message containing `needle`.
template <typename T>
::testing::AssertionResult FailsWith(const Result<T>& result, std::string_view needle,
                                     ErrorCode code = ErrorCode::kParse) {
  if (result) return ::testing::AssertionFailure() << "accepted; expected: " << needle;
  if (result.error().code != code) {
    return ::testing::AssertionFailure()
           << "code " << ToString(result.error().code) << ": " << result.error().message;
  }
  if (result.error().message.find(needle) == std::string::npos) {
    return ::testing::AssertionFailure() << "message does not contain [" << needle << "]:\n"
                                         << result.error().message;
  }
  return ::testing::AssertionSuccess();
}

// ---- topics ---------------------------------------------------------------------------------

TEST(Topics, BuildAndParse) {
  EXPECT_EQ(DeviceTopic("demo", "box-17", "telemetry"),
            "edgefleet/v1/demo/device/box-17/telemetry");
  EXPECT_EQ(GroupDesiredTopic("demo", "lab"), "edgefleet/v1/demo/group/lab/desired");
  for (const char* leaf : {"status", "telemetry", "events", "desired"}) {
    auto parts = ParseTopic(DeviceTopic("demo", "box-17", leaf));
    ASSERT_TRUE(parts) << parts.error().message;
    EXPECT_EQ(parts->fleet, "demo");
    EXPECT_EQ(parts->kind, "device");
    EXPECT_EQ(parts->name, "box-17");
    EXPECT_EQ(parts->leaf, leaf);
  }
  auto group = ParseTopic(GroupDesiredTopic("demo", "lab.2"));
  ASSERT_TRUE(group) << group.error().message;
  EXPECT_EQ(group->kind, "group");
  EXPECT_EQ(group->name, "lab.2");
  EXPECT_EQ(group->leaf, "desired");
}

TEST(Topics, Refusals) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "level 1 is empty"},
      {"edgefleet/v1//device/box/status", "level 3 is empty"},
      {"edgefleet/v1/demo/device//status", "level 5 is empty"},
      {"edgefleet/v1/demo/device/box/status/", "level 7 is empty"},
      {"/edgefleet/v1/demo/device/box/status", "level 1 is empty"},
      {"edgefleet/v1/+/device/box/status", "level 3 holds a wildcard"},
      {"edgefleet/v1/demo/device/box/#", "level 6 holds a wildcard"},
      {"edgefleet/v1/demo/device/bo+x/status", "level 5 holds a wildcard"},
      {"edgefleet/v2/demo/device/box/status", "expected it to start with edgefleet/v1/"},
      {"other/v1/demo/device/box/status", "expected it to start with edgefleet/v1/"},
      {"edgefleet", "expected it to start with edgefleet/v1/"},
      {"edgefleet/v1/demo/device/box", "expected 6 levels"},
      {"edgefleet/v1/demo/device/box/status/extra", "expected 6 levels"},
      {"edgefleet/v1/demo/box/box/status", "expected \"device\" or \"group\" at level 4"},
      {"edgefleet/v1/demo/device/box/config", "expected status, telemetry, events or desired"},
      {"edgefleet/v1/demo/group/lab/status", "expected desired after the group"},
      {"edgefleet/v1/Demo/device/box/status", "expected a fleet matching"},
      {"edgefleet/v1/demo/device/Box 1/status", "expected a device matching"},
      {"edgefleet/v1/demo/group/" + std::string(65, 'g') + "/desired", "expected a group matching"},
  };
  for (const auto& [topic, why] : cases) {
    auto parts = ParseTopic(topic);
    EXPECT_TRUE(FailsWith(parts, why, ErrorCode::kInvalidArgument)) << topic;
    if (!parts) {
      EXPECT_NE(parts.error().message.find("topic \""), std::string::npos);
    }
  }
}

// ---- ids ----------------------------------------------------------------------------------

TEST(MessageIds, UniqueUuidV4) {
  const std::regex uuid_v4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string id = NewMessageId();
    ASSERT_TRUE(std::regex_match(id, uuid_v4)) << id;
    ASSERT_TRUE(seen.insert(id).second) << "repeated id " << id;
  }
  // The parsers accept what the generator makes.
  StatusMessage m = FullStatus();
  m.id = NewMessageId();
  auto parsed = ParseStatus(EncodeStatus(m));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->id, m.id);
}

// ---- round trips --------------------------------------------------------------------------

void ExpectSameSlot(const std::optional<SlotInfo>& a, const std::optional<SlotInfo>& b) {
  ASSERT_EQ(a.has_value(), b.has_value());
  if (!a) return;
  EXPECT_EQ(a->slot, b->slot);
  EXPECT_EQ(a->version, b->version);
  EXPECT_EQ(a->sha256, b->sha256);
}

void ExpectSame(const StatusMessage& a, const StatusMessage& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.fleet, b.fleet);
  EXPECT_EQ(a.ts, b.ts);
  EXPECT_EQ(a.online, b.online);
  EXPECT_EQ(a.agent_version, b.agent_version);
  EXPECT_EQ(a.groups, b.groups);
  ASSERT_EQ(a.backends.size(), b.backends.size());
  for (std::size_t i = 0; i < a.backends.size(); ++i) {
    EXPECT_EQ(a.backends[i].name, b.backends[i].name);
    EXPECT_EQ(a.backends[i].version, b.backends[i].version);
    EXPECT_EQ(a.backends[i].formats, b.backends[i].formats);
    EXPECT_EQ(a.backends[i].devices, b.backends[i].devices);
  }
  ASSERT_EQ(a.models.size(), b.models.size());
  for (std::size_t i = 0; i < a.models.size(); ++i) {
    EXPECT_EQ(a.models[i].name, b.models[i].name);
    ExpectSameSlot(a.models[i].active, b.models[i].active);
    ExpectSameSlot(a.models[i].standby, b.models[i].standby);
  }
  EXPECT_EQ(a.connection, b.connection);
  EXPECT_EQ(a.outbox_pending, b.outbox_pending);
  EXPECT_EQ(a.outbox_dropped, b.outbox_dropped);
}

void ExpectSame(const TelemetryWindow& a, const TelemetryWindow& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.ts, b.ts);
  EXPECT_EQ(a.start_ts, b.start_ts);
  EXPECT_EQ(a.window_s, b.window_s);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.slot, b.slot);
  EXPECT_EQ(a.role, b.role);
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(a.errors, b.errors);
  EXPECT_EQ(a.server_errors, b.server_errors);
  EXPECT_EQ(a.latency.count, b.latency.count);
  EXPECT_EQ(a.latency.sum_ms, b.latency.sum_ms);
  EXPECT_EQ(a.latency.max_ms, b.latency.max_ms);
  EXPECT_EQ(a.latency.buckets, b.latency.buckets);
  EXPECT_EQ(a.latency.p50, b.latency.p50);
  EXPECT_EQ(a.latency.p90, b.latency.p90);
  EXPECT_EQ(a.latency.p95, b.latency.p95);
  EXPECT_EQ(a.latency.p99, b.latency.p99);
  EXPECT_EQ(a.stage_ms.pre, b.stage_ms.pre);
  EXPECT_EQ(a.stage_ms.infer, b.stage_ms.infer);
  EXPECT_EQ(a.stage_ms.post, b.stage_ms.post);
  EXPECT_EQ(a.throughput_rps, b.throughput_rps);
  EXPECT_EQ(a.labeled, b.labeled);
  EXPECT_EQ(a.correct, b.correct);
  EXPECT_EQ(a.golden_accuracy, b.golden_accuracy);
  EXPECT_EQ(a.shadow_agree, b.shadow_agree);
  EXPECT_EQ(a.predictions, b.predictions);
  EXPECT_EQ(a.confidence_mean, b.confidence_mean);
  EXPECT_EQ(a.confidence_std, b.confidence_std);
  EXPECT_EQ(a.health.rss_bytes, b.health.rss_bytes);
  EXPECT_EQ(a.health.cpu_pct, b.health.cpu_pct);
  EXPECT_EQ(a.health.temp_c, b.health.temp_c);
  EXPECT_EQ(a.health.disk_free_bytes, b.health.disk_free_bytes);
  EXPECT_EQ(a.outbox_dropped, b.outbox_dropped);
  EXPECT_EQ(a.seq.stream, b.seq.stream);
  EXPECT_EQ(a.seq.n, b.seq.n);
}

void ExpectSame(const EventMessage& a, const EventMessage& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.ts, b.ts);
  EXPECT_EQ(a.event, b.event);
  EXPECT_EQ(a.deployment, b.deployment);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.from, b.from);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.serial, b.serial);
  EXPECT_EQ(a.target, b.target);
  EXPECT_EQ(a.parity_json, b.parity_json);
  EXPECT_EQ(a.seq.stream, b.seq.stream);
  EXPECT_EQ(a.seq.n, b.seq.n);
}

TEST(StatusPayload, RoundTripEveryOptionalPresent) {
  const StatusMessage m = FullStatus();
  const std::string text = EncodeStatus(m);
  auto parsed = ParseStatus(text);
  ASSERT_TRUE(parsed) << parsed.error().message;
  ExpectSame(*parsed, m);
  EXPECT_EQ(EncodeStatus(*parsed), text);
  const json doc = json::parse(text);
  EXPECT_TRUE(doc["models"][1]["standby"].is_null());
  EXPECT_TRUE(doc["models"][2]["active"].is_null());
  EXPECT_EQ(doc["outbox"], json::parse(R"({"pending":12,"dropped":1})"));
}

TEST(StatusPayload, LastWillRoundTripEveryOptionalAbsent) {
  const StatusMessage m = LastWill();
  const std::string text = EncodeStatus(m);
  auto parsed = ParseStatus(text);
  ASSERT_TRUE(parsed) << parsed.error().message;
  ExpectSame(*parsed, m);
  const json doc = json::parse(text);
  EXPECT_EQ(doc["online"], false);
  EXPECT_EQ(doc["groups"], json::array());
  EXPECT_EQ(doc["models"], json::array());
  // The same keys as the birth record: one shape for the retained topic.
  std::set<std::string> birth_keys, will_keys;
  const json birth = json::parse(EncodeStatus(FullStatus()));
  for (const auto& [k, v] : birth.items()) birth_keys.insert(k);
  for (const auto& [k, v] : doc.items()) will_keys.insert(k);
  EXPECT_EQ(will_keys, birth_keys);
}

TEST(TelemetryPayload, RoundTripEveryOptionalPresent) {
  const TelemetryWindow m = FullWindow();
  const std::string text = EncodeTelemetry(m);
  auto parsed = ParseTelemetry(text);
  ASSERT_TRUE(parsed) << parsed.error().message;
  ExpectSame(*parsed, m);
  EXPECT_EQ(EncodeTelemetry(*parsed), text);
  const json doc = json::parse(text);
  EXPECT_EQ(doc["accuracy"]["golden"], 0.98);
  EXPECT_EQ(doc["accuracy"]["shadow_agree"], 0.96);
  EXPECT_EQ(doc["health"]["temp_c"], -4.5);
  // Every bucket key, cumulative, ending at the count.
  const json& lat = doc["latency_ms"];
  for (std::size_t i = 0; i < kLatencyBuckets; ++i) {
    EXPECT_EQ(lat[LatencySnapshot::BucketKey(i)], m.latency.buckets[i]) << i;
  }
  EXPECT_EQ(lat["le_0.1"], 1);
  EXPECT_EQ(lat["le_inf"], 11);
  EXPECT_EQ(lat["count"], 11);
  EXPECT_EQ(lat.size(), 7 + kLatencyBuckets);
}

TEST(TelemetryPayload, RoundTripEveryOptionalAbsent) {
  const TelemetryWindow m = MinimalWindow();
  const std::string text = EncodeTelemetry(m);
  auto parsed = ParseTelemetry(text);
  ASSERT_TRUE(parsed) << parsed.error().message;
  ExpectSame(*parsed, m);
  const json doc = json::parse(text);
  EXPECT_FALSE(doc["accuracy"].contains("golden"));
  EXPECT_FALSE(doc["accuracy"].contains("shadow_agree"));
  EXPECT_FALSE(doc["health"].contains("temp_c"));
  EXPECT_EQ(doc["latency_ms"]["le_inf"], 0);
}

TEST(TelemetryPayload, PercentilesAreRecomputedFromBuckets) {
  const TelemetryWindow m = FullWindow();
  json doc = json::parse(EncodeTelemetry(m));
  doc["latency_ms"]["p50"] = 999.0;
  doc["latency_ms"]["p99"] = 0;
  auto parsed = ParseTelemetry(doc.dump());
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->latency.p50, m.latency.p50);
  EXPECT_EQ(parsed->latency.p99, m.latency.p99);
}

TEST(TelemetryPayload, ZeroLengthWindowIsAccepted) {
  TelemetryWindow m = MinimalWindow();
  m.window_s = 0;  // closed in the millisecond it opened
  auto parsed = ParseTelemetry(EncodeTelemetry(m));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->window_s, 0);
}

TEST(TelemetryPayload, NonFiniteValuesAreSentAsZero) {
  TelemetryWindow m = MinimalWindow();
  m.health.cpu_pct = std::numeric_limits<double>::quiet_NaN();
  m.throughput_rps = std::numeric_limits<double>::infinity();
  auto parsed = ParseTelemetry(EncodeTelemetry(m));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->health.cpu_pct, 0);
  EXPECT_EQ(parsed->throughput_rps, 0);
}

TEST(EventPayload, RoundTripWithParity) {
  const EventMessage m = ParityEvent();
  const std::string text = EncodeEvent(m);
  auto parsed = ParseEvent(text);
  ASSERT_TRUE(parsed) << parsed.error().message;
  ExpectSame(*parsed, m);
  const json doc = json::parse(text);
  ASSERT_TRUE(doc["parity"].is_object()) << "embedded as an object, not a string";
  EXPECT_EQ(doc["parity"]["sets"][0]["name"], "heldout");
}

TEST(EventPayload, RoundTripWithoutParity) {
  const EventMessage m = RejectedEvent();
  const std::string text = EncodeEvent(m);
  auto parsed = ParseEvent(text);
  ASSERT_TRUE(parsed) << parsed.error().message;
  ExpectSame(*parsed, m);
  const json doc = json::parse(text);
  EXPECT_FALSE(doc.contains("parity"));
  EXPECT_EQ(doc["deployment"], 0);
  EXPECT_EQ(doc["model"], "");
}

TEST(EventPayload, ParityTextThatIsNotAnObjectArrivesWrapped) {
  EventMessage m = ParityEvent();
  m.parity_json = "[1, 2";
  const json doc = json::parse(EncodeEvent(m));
  EXPECT_EQ(doc["parity"], json({{"unparsed", "[1, 2"}}));
  auto parsed = ParseEvent(doc.dump());
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->parity_json, R"({"unparsed":"[1, 2"})");
}

TEST(EventPayload, BytesThatAreNotUtf8AreReplaced) {
  EventMessage m = RejectedEvent();
  m.reason = "cannot open /srv/caf\xe9.efb";  // Latin-1, as a file name may be
  m.parity_json = "{\"note\":\"\xff\"}";
  auto parsed = ParseEvent(EncodeEvent(m));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->reason, "cannot open /srv/caf\xef\xbf\xbd.efb");
  EXPECT_EQ(parsed->parity_json, "{\"unparsed\":\"{\\\"note\\\":\\\"\xef\xbf\xbd\\\"}\"}");
}

TEST(Payloads, ExtensionKeysAreAccepted) {
  json doc = json::parse(EncodeStatus(FullStatus()));
  doc["x-site"] = "lab-2";
  EXPECT_TRUE(ParseStatus(doc.dump()));
}

// ---- refusals -----------------------------------------------------------------------------

enum class Kind { kStatus, kTelemetry, kEvent };

Status ParseAs(Kind kind, const std::string& text) {
  switch (kind) {
    case Kind::kStatus:
      if (auto r = ParseStatus(text); !r) return Unexpected(r.error());
      return Ok();
    case Kind::kTelemetry:
      if (auto r = ParseTelemetry(text); !r) return Unexpected(r.error());
      return Ok();
    case Kind::kEvent:
      if (auto r = ParseEvent(text); !r) return Unexpected(r.error());
      return Ok();
  }
  return Ok();
}

struct Sample {
  Kind kind;
  std::string source;
  json doc;  // the full message
  std::set<std::string> optional;
};

std::vector<Sample> Samples() {
  return {
      {Kind::kStatus, "status", json::parse(EncodeStatus(FullStatus())), {}},
      {Kind::kTelemetry,
       "telemetry",
       json::parse(EncodeTelemetry(FullWindow())),
       {"accuracy.golden", "accuracy.shadow_agree", "health.temp_c", "seq"}},
      {Kind::kEvent, "event", json::parse(EncodeEvent(ParityEvent())), {"parity", "seq"}},
  };
}

// Every member of every object (not inside arrays) as a JSON pointer and a dotted path.
void Members(const json& obj, const json::json_pointer& at, const std::string& dotted,
             std::vector<std::pair<json::json_pointer, std::string>>& out) {
  for (const auto& [key, value] : obj.items()) {
    const std::string path = dotted.empty() ? key : dotted + "." + key;
    out.emplace_back(at / key, path);
    if (value.is_object() && key != "parity") Members(value, at / key, path, out);
  }
}

TEST(PayloadRefusals, EveryRequiredFieldMissing) {
  for (const Sample& s : Samples()) {
    std::vector<std::pair<json::json_pointer, std::string>> members;
    Members(s.doc, json::json_pointer(), "", members);
    for (const auto& [pointer, path] : members) {
      json doc = s.doc;
      doc[pointer.parent_pointer()].erase(pointer.back());
      const Status status = ParseAs(s.kind, doc.dump());
      if (s.optional.contains(path)) {
        EXPECT_TRUE(status) << s.source << " " << path << ": " << status.error().message;
      } else {
        EXPECT_TRUE(FailsWith(status, s.source + ": " + path + ": missing required field")) << path;
      }
    }
  }
}

TEST(PayloadRefusals, EveryFieldWithAWrongType) {
  for (const Sample& s : Samples()) {
    std::vector<std::pair<json::json_pointer, std::string>> members;
    Members(s.doc, json::json_pointer(), "", members);
    for (const auto& [pointer, path] : members) {
      json doc = s.doc;
      const bool boolean = doc[pointer].is_boolean();
      doc[pointer] = boolean ? json("yes") : json(true);
      const std::string found = boolean ? "found \"yes\"" : "found true";
      EXPECT_TRUE(FailsWith(ParseAs(s.kind, doc.dump()), s.source + ": " + path + ": expected "))
          << path;
      EXPECT_TRUE(FailsWith(ParseAs(s.kind, doc.dump()), found)) << path;
    }
  }
}

TEST(PayloadRefusals, UnknownKeysAtEveryLevel) {
  for (const Sample& s : Samples()) {
    json doc = s.doc;
    doc["bogus"] = 1;
    EXPECT_TRUE(FailsWith(ParseAs(s.kind, doc.dump()),
                          s.source + ": bogus: unknown field, expected one of"));
  }
  json t = json::parse(EncodeTelemetry(FullWindow()));
  t["latency_ms"]["le_7"] = 3;
  t["health"]["gpu_pct"] = 3;
  const Status status = ParseAs(Kind::kTelemetry, t.dump());
  EXPECT_TRUE(FailsWith(status, "telemetry: latency_ms.le_7: unknown field"));
  EXPECT_TRUE(FailsWith(status, "telemetry: health.gpu_pct: unknown field"));
  json st = json::parse(EncodeStatus(FullStatus()));
  st["models"][0]["active"]["loaded"] = true;
  EXPECT_TRUE(FailsWith(ParseAs(Kind::kStatus, st.dump()),
                        "status: models[0].active.loaded: unknown field"));
}

TEST(PayloadRefusals, NotJsonTooLargeNotAnObject) {
  for (const Sample& s : Samples()) {
    EXPECT_TRUE(FailsWith(ParseAs(s.kind, "{\"id\":"), s.source + ": malformed JSON at byte"));
    EXPECT_TRUE(FailsWith(ParseAs(s.kind, "[]"), s.source + ": expected an object, found []"));
    EXPECT_TRUE(FailsWith(ParseAs(s.kind, R"({"id":"a","id":"b"})"),
                          s.source + ": malformed JSON: duplicate object key \"id\""));
    // Padding with spaces keeps the document valid, so only the size is wrong.
    std::string big = s.doc.dump();
    big.insert(1, kMaxPayloadBytes, ' ');
    EXPECT_TRUE(FailsWith(ParseAs(s.kind, big), "limit is 65536", ErrorCode::kLimit));
    std::string fits = s.doc.dump();
    fits.insert(1, kMaxPayloadBytes - fits.size(), ' ');
    EXPECT_TRUE(ParseAs(s.kind, fits)) << s.source;
  }
}

TEST(PayloadRefusals, NonFiniteNumbers) {
  std::string text = EncodeTelemetry(FullWindow());
  const std::string key = "\"cpu_pct\":37.5";
  ASSERT_NE(text.find(key), std::string::npos);
  text.replace(text.find(key), key.size(), "\"cpu_pct\":1e400");
  EXPECT_TRUE(FailsWith(ParseTelemetry(text), "telemetry: malformed JSON: number overflow"));
  text = EncodeTelemetry(FullWindow());
  text.replace(text.find(key), key.size(), "\"cpu_pct\":NaN");
  EXPECT_TRUE(FailsWith(ParseTelemetry(text), "telemetry: malformed JSON at byte"));
}

TEST(PayloadRefusals, CountsMustBeNonNegativeIntegersBelow2To63) {
  json doc = json::parse(EncodeTelemetry(FullWindow()));
  doc["latency_ms"]["le_5"] = "x";
  auto parsed = ParseTelemetry(doc.dump());
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().message,
            "telemetry: latency_ms.le_5: expected a non-negative integer, found \"x\"");

  const std::vector<std::tuple<std::string, json, std::string>> cases = {
      {"/count", -1, "telemetry: count: expected a non-negative integer, found -1"},
      {"/errors", 1.5, "telemetry: errors: expected a non-negative integer, found 1.5"},
      {"/health/rss_bytes", -5, "telemetry: health.rss_bytes: expected a non-negative integer"},
      {"/outbox/dropped", 9223372036854775808ull,
       "telemetry: outbox.dropped: expected a non-negative integer below 2^63, found "
       "9223372036854775808"},
      {"/ts", -1, "telemetry: ts: expected a non-negative integer, found -1"},
      {"/confidence/count", 2.0, "telemetry: confidence.count: expected a non-negative integer"},
      {"/accuracy/labeled", nullptr,
       "telemetry: accuracy.labeled: expected a non-negative "
       "integer, found null"},
  };
  for (const auto& [pointer, value, message] : cases) {
    json d = json::parse(EncodeTelemetry(FullWindow()));
    d[json::json_pointer(pointer)] = value;
    EXPECT_TRUE(FailsWith(ParseTelemetry(d.dump()), message)) << pointer;
  }
  // 2^63 - 1 is the largest count.
  json d = json::parse(EncodeTelemetry(FullWindow()));
  d["outbox"]["dropped"] = 9223372036854775807ull;
  auto max = ParseTelemetry(d.dump());
  ASSERT_TRUE(max) << max.error().message;
  EXPECT_EQ(max->outbox_dropped, 9223372036854775807ull);
}

TEST(PayloadRefusals, CumulativeBuckets) {
  json doc = json::parse(EncodeTelemetry(FullWindow()));
  doc["latency_ms"]["le_10"] = 0;  // le_5 is 4
  EXPECT_TRUE(FailsWith(ParseTelemetry(doc.dump()),
                        "telemetry: latency_ms.le_10: expected a cumulative count of at least "
                        "le_5's 4, found 0"));
  doc = json::parse(EncodeTelemetry(FullWindow()));
  doc["latency_ms"]["le_inf"] = 12;
  EXPECT_TRUE(FailsWith(ParseTelemetry(doc.dump()),
                        "telemetry: latency_ms.le_inf: expected the same as latency_ms.count "
                        "(11), found 12"));
  doc = json::parse(EncodeTelemetry(FullWindow()));
  doc["latency_ms"]["count"] = 10;
  EXPECT_TRUE(FailsWith(ParseTelemetry(doc.dump()), "latency_ms.le_inf: expected the same"));
}

TEST(PayloadRefusals, Ranges) {
  const std::vector<std::tuple<std::string, json, std::string>> cases = {
      {"/window_s", -10, "telemetry: window_s: expected a non-negative number, found -10"},
      {"/throughput_rps", -0.5, "telemetry: throughput_rps: expected a non-negative number"},
      {"/latency_ms/sum", -1.0, "telemetry: latency_ms.sum: expected a non-negative number"},
      {"/latency_ms/p90", -1.0, "telemetry: latency_ms.p90: expected a non-negative number"},
      {"/stage_ms/infer", -0.1, "telemetry: stage_ms.infer: expected a non-negative number"},
      {"/accuracy/golden", 1.5, "telemetry: accuracy.golden: expected a number from 0 to 1"},
      {"/accuracy/shadow_agree", -0.1, "telemetry: accuracy.shadow_agree: expected a number"},
      {"/confidence/mean", 1.01, "telemetry: confidence.mean: expected a number from 0 to 1"},
      {"/confidence/std", -1, "telemetry: confidence.std: expected a non-negative number"},
      {"/health/cpu_pct", -3, "telemetry: health.cpu_pct: expected a non-negative number"},
      {"/health/temp_c", "hot", "telemetry: health.temp_c: expected a finite number"},
      {"/slot", "C", "telemetry: slot: expected \"A\" or \"B\", found \"C\""},
      {"/role", "leader", "telemetry: role: expected \"active\", \"candidate\" or \"previous\""},
      {"/version", "1.2", "telemetry: version: expected a semantic version"},
      {"/model", "Digits", "telemetry: model: expected a name matching"},
  };
  for (const auto& [pointer, value, message] : cases) {
    json d = json::parse(EncodeTelemetry(FullWindow()));
    d[json::json_pointer(pointer)] = value;
    EXPECT_TRUE(FailsWith(ParseTelemetry(d.dump()), message)) << pointer;
  }
}

TEST(PayloadRefusals, IdsAndDevices) {
  const std::vector<std::pair<json, std::string>> bad_ids = {
      {"", "\"\""},       {std::string(65, 'a'), "\"aaaa"}, {"a b", "\"a b\""},
      {"a_b", "\"a_b\""}, {"caf\xc3\xa9", "\"caf"},         {"a/b", "\"a/b\""},
      {42, "42"},
  };
  const std::vector<std::pair<json, std::string>> bad_devices = {
      {"", "\"\""},
      {"a/b", "\"a/b\""},
      {"+", "\"+\""},
      {"#", "\"#\""},
      {"Box", "\"Box\""},
      {"box 1", "\"box 1\""},
      {std::string(65, 'b'), "\"bbbb"},
  };
  for (const Sample& s : Samples()) {
    for (const auto& [id, shown] : bad_ids) {
      json doc = s.doc;
      doc["id"] = id;
      EXPECT_TRUE(FailsWith(ParseAs(s.kind, doc.dump()),
                            s.source +
                                ": id: expected an id of 1 to 64 characters from "
                                "[A-Za-z0-9-], found " +
                                shown))
          << id;
    }
    json doc = s.doc;
    doc["id"] = std::string(64, 'Z');
    EXPECT_TRUE(ParseAs(s.kind, doc.dump())) << "64 characters are enough";
    for (const auto& [device, shown] : bad_devices) {
      doc = s.doc;
      doc["device"] = device;
      EXPECT_TRUE(FailsWith(ParseAs(s.kind, doc.dump()), s.source +
                                                             ": device: expected a name matching "
                                                             "[a-z0-9][a-z0-9._-]{0,63}, found " +
                                                             shown))
          << device;
    }
  }
}

TEST(PayloadRefusals, StatusLists) {
  const auto refused = [](const std::function<void(json&)>& mutate, const std::string& message) {
    json doc = json::parse(EncodeStatus(FullStatus()));
    mutate(doc);
    return FailsWith(ParseStatus(doc.dump()), message);
  };
  EXPECT_TRUE(refused([](json& d) { d["groups"][1] = "Lab"; },
                      "status: groups[1]: expected a name matching"));
  EXPECT_TRUE(refused([](json& d) { d["backends"][0] = "opencv"; },
                      "status: backends[0]: expected an object, found \"opencv\""));
  EXPECT_TRUE(refused([](json& d) { d["backends"][0]["version"] = ""; },
                      "status: backends[0].version: expected a non-empty string"));
  EXPECT_TRUE(refused(
      [](json& d) {
        d["backends"][0]["formats"] = {"onnx", ""};
      },
      "status: backends[0].formats[1]: expected a non-empty string"));
  EXPECT_TRUE(refused([](json& d) { d["backends"][0]["devices"] = "cpu"; },
                      "status: backends[0].devices: "));
  EXPECT_TRUE(refused([](json& d) { d["models"][0]["active"]["sha256"] = "abc"; },
                      "status: models[0].active.sha256: expected 64 lowercase hex digits"));
  EXPECT_TRUE(refused([](json& d) { d["models"][1]["name"] = "digits"; },
                      "status: models[1].name: expected each model once, found \"digits\""));
  EXPECT_TRUE(refused([](json& d) { d["models"][0]["active"]["version"] = "v1"; },
                      "status: models[0].active.version: expected a semantic version"));
  EXPECT_TRUE(refused([](json& d) { d["agent_version"] = ""; },
                      "status: agent_version: expected a non-empty string, found \"\""));
  EXPECT_TRUE(refused([](json& d) { d["fleet"] = "a/b"; }, "status: fleet: expected a name"));
}

TEST(PayloadRefusals, EventFields) {
  const auto refused = [](const std::function<void(json&)>& mutate, const std::string& message) {
    json doc = json::parse(EncodeEvent(ParityEvent()));
    mutate(doc);
    return FailsWith(ParseEvent(doc.dump()), message);
  };
  EXPECT_TRUE(refused([](json& d) { d["parity"] = R"({"a":1})"; },
                      "event: parity: expected an object, found \"{\\\"a\\\":1}\""));
  EXPECT_TRUE(refused([](json& d) { d["event"] = "Rolled Back"; },
                      "event: event: expected lower-case letters and '_'"));
  EXPECT_TRUE(refused([](json& d) { d["event"] = ""; }, "event: event: expected lower-case"));
  EXPECT_TRUE(refused([](json& d) { d["from"] = "x-y"; }, "event: from: expected \"\" or"));
  EXPECT_TRUE(refused([](json& d) { d["deployment"] = -1; },
                      "event: deployment: expected a non-negative integer, found -1"));
  EXPECT_TRUE(refused([](json& d) { d["version"] = "latest"; }, "event: version: expected \"\""));
  EXPECT_TRUE(refused([](json& d) { d["model"] = "../x"; }, "event: model: expected \"\""));
  EXPECT_TRUE(refused([](json& d) { d["serial"] = "7"; },
                      "event: serial: expected a non-negative integer, found \"7\""));
}

TEST(PayloadRefusals, SequenceNumbers) {
  const auto refused = [](const std::function<void(json&)>& mutate, const std::string& message) {
    json doc = json::parse(EncodeTelemetry(FullWindow()));
    mutate(doc);
    return FailsWith(ParseTelemetry(doc.dump()), message);
  };
  EXPECT_TRUE(refused([](json& d) { d["seq"]["n"] = 0; },
                      "telemetry: seq.n: expected a number of 1 or more, found 0"));
  EXPECT_TRUE(refused([](json& d) { d["seq"]["n"] = -1; },
                      "telemetry: seq.n: expected a non-negative integer, found -1"));
  EXPECT_TRUE(refused([](json& d) { d["seq"]["stream"] = "ABCDEF0123456789"; },
                      "telemetry: seq.stream: expected 16 lower-case hex digits, found "
                      "\"ABCDEF0123456789\""));
  EXPECT_TRUE(
      refused([](json& d) { d["seq"] = "7"; }, "telemetry: seq: expected an object, found \"7\""));
  EXPECT_TRUE(refused([](json& d) { d["seq"].erase("stream"); },
                      "telemetry: seq.stream: missing required field"));
  EXPECT_TRUE(refused([](json& d) { d["seq"]["boot"] = 1; }, "telemetry: seq.boot: unknown"));
  // Absent: an agent before sequence numbers; nothing to count, and nothing encoded back.
  json doc = json::parse(EncodeTelemetry(FullWindow()));
  doc.erase("seq");
  auto parsed = ParseTelemetry(doc.dump());
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->seq.n, 0u);
  EXPECT_FALSE(json::parse(EncodeTelemetry(*parsed)).contains("seq"));
  auto event = ParseEvent(EncodeEvent(ParityEvent()));
  ASSERT_TRUE(event) << event.error().message;
  EXPECT_EQ(event->seq.n, 4098u);
  EXPECT_EQ(json::parse(EncodeEvent(*event))["seq"],
            json::parse(R"({"stream":"00c0ffee12345678","n":4098})"));
}

TEST(PayloadRefusals, EveryProblemIsReportedAtOnce) {
  json doc = json::parse(EncodeStatus(FullStatus()));
  doc["id"] = "";
  doc.erase("fleet");
  doc["outbox"]["pending"] = -1;
  doc["extra"] = 1;
  auto parsed = ParseStatus(doc.dump());
  ASSERT_FALSE(parsed);
  const std::string& message = parsed.error().message;
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 3) << message;
  for (const char* path :
       {"status: id:", "status: fleet:", "status: outbox.pending:", "status: extra:"}) {
    EXPECT_NE(message.find(path), std::string::npos) << path << " in\n" << message;
  }
}

}  // namespace
}  // namespace edgefleet::telemetry
