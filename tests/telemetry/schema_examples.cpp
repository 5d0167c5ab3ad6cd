// Writes status, telemetry and event payloads into a directory, for
// tests/manifests/check_schemas.py to validate against manifests/schema/{status,telemetry,event}
// .schema.json (verdicts and file names: tests/support/schema_examples.hpp). Valid payloads come
// from the C++ encoders; hostile ones are edits of them. Semantic ones break rules JSON Schema
// cannot express: payload size, duplicate keys, relations between fields, 2.0 as an integer.
//
// Files hold the exact text the parser judged (not a re-dump), so hostile text such as 1e400
// or a repeated key reaches the schema check unchanged.
//
// Usage: telemetry_schema_examples <output dir>. Exits 1 when the C++ parser disagrees with the
// intended verdict of an example.
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "telemetry/payloads.hpp"
#include "tests/support/schema_examples.hpp"
#include "tests/telemetry/samples.hpp"

namespace edgefleet::telemetry {
namespace {

using edgefleet::testing::ExampleWriter;
using edgefleet::testing::Verdict;
using nlohmann::json;
using Mutation = std::function<void(json&)>;

struct Kind {
  std::string name;  // status | telemetry | event
  std::function<bool(const std::string&)> accepts;
  json full;  // the sample with every optional field, as the encoder wrote it
};

class Writer {
 public:
  explicit Writer(ExampleWriter& out) : out_(out) {}

  void AddText(const Kind& kind, Verdict verdict, const std::string& label,
               const std::string& text) {
    out_.Write(kind.name, verdict, label, kind.accepts(text), text);
  }
  // `mutate` edits a copy of the kind's full sample.
  void Add(const Kind& kind, Verdict verdict, const std::string& label, const Mutation& mutate) {
    json doc = kind.full;
    mutate(doc);
    AddText(kind, verdict, label, doc.dump());
  }

 private:
  ExampleWriter& out_;
};

// Examples every message shares: the envelope fields, size, duplicate keys, extensions.
void CommonExamples(Writer& w, const Kind& kind) {
  const auto invalid = [&](const std::string& label, const Mutation& m) {
    w.Add(kind, Verdict::kInvalid, label, m);
  };
  w.Add(kind, Verdict::kValid, "extension", [](json& d) { d["x-site"] = "lab-2"; });
  w.Add(kind, Verdict::kValid, "generated-id", [](json& d) { d["id"] = NewMessageId(); });
  w.Add(kind, Verdict::kValid, "id-64", [](json& d) { d["id"] = std::string(64, 'Z'); });
  invalid("not-an-object", [](json& d) { d = json::array({d}); });
  invalid("unknown-top-level", [](json& d) { d["bogus"] = 1; });
  invalid("missing-id", [](json& d) { d.erase("id"); });
  invalid("missing-device", [](json& d) { d.erase("device"); });
  invalid("missing-ts", [](json& d) { d.erase("ts"); });
  invalid("id-empty", [](json& d) { d["id"] = ""; });
  invalid("id-65", [](json& d) { d["id"] = std::string(65, 'a'); });
  invalid("id-underscore", [](json& d) { d["id"] = "a_b"; });
  invalid("id-trailing-newline", [](json& d) { d["id"] = "abc\n"; });
  invalid("id-number", [](json& d) { d["id"] = 42; });
  invalid("device-empty", [](json& d) { d["device"] = ""; });
  invalid("device-slash", [](json& d) { d["device"] = "a/b"; });
  invalid("device-plus", [](json& d) { d["device"] = "+"; });
  invalid("device-hash", [](json& d) { d["device"] = "box#1"; });
  invalid("device-upper", [](json& d) { d["device"] = "Box-17"; });
  invalid("device-trailing-newline", [](json& d) { d["device"] = "box-17\n"; });
  invalid("ts-negative", [](json& d) { d["ts"] = -1; });
  invalid("ts-float", [](json& d) { d["ts"] = 1.5; });
  invalid("ts-string", [](json& d) { d["ts"] = "1763700000000"; });
  invalid("ts-above-2-63", [](json& d) { d["ts"] = 9223372036854775808ull; });

  const auto semantic = [&](const std::string& label, const std::string& text) {
    w.AddText(kind, Verdict::kSemantic, label, text);
  };
  // A schema cannot count bytes; 64 KiB of a legal extension passes it.
  json big = kind.full;
  big["x-pad"] = std::string(kMaxPayloadBytes, 'p');
  semantic("larger-than-64k", big.dump());
  // A parser that keeps the last of two keys (Python's json) never sees the first.
  std::string twice = kind.full.dump();
  twice.insert(1, "\"ts\":\"not a number\",");
  semantic("duplicate-key", twice);
  // JSON Schema's integer is a mathematical one; the C++ parser wants integers written as such.
  w.Add(kind, Verdict::kSemantic, "integral-float-ts",
        [](json& d) { d["ts"] = d["ts"].get<double>(); });
}

void StatusExamples(Writer& w) {
  const Kind kind{"status", [](const std::string& t) { return ParseStatus(t).has_value(); },
                  json::parse(EncodeStatus(testing::FullStatus()))};
  w.AddText(kind, Verdict::kValid, "full", EncodeStatus(testing::FullStatus()));
  w.AddText(kind, Verdict::kValid, "last-will", EncodeStatus(testing::LastWill()));
  CommonExamples(w, kind);
  const auto invalid = [&](const std::string& label, const Mutation& m) {
    w.Add(kind, Verdict::kInvalid, label, m);
  };
  invalid("missing-fleet", [](json& d) { d.erase("fleet"); });
  invalid("missing-models", [](json& d) { d.erase("models"); });
  invalid("missing-outbox-pending", [](json& d) { d["outbox"].erase("pending"); });
  invalid("missing-standby", [](json& d) { d["models"][0].erase("standby"); });
  invalid("fleet-plus", [](json& d) { d["fleet"] = "+"; });
  invalid("online-number", [](json& d) { d["online"] = 1; });
  invalid("agent-version-empty", [](json& d) { d["agent_version"] = ""; });
  invalid("groups-bad-name", [](json& d) { d["groups"][0] = "Lab"; });
  invalid("groups-object", [](json& d) { d["groups"] = json::object(); });
  invalid("backend-string", [](json& d) { d["backends"][0] = "opencv"; });
  invalid("backend-missing-version", [](json& d) { d["backends"][0].erase("version"); });
  invalid("backend-empty-format", [](json& d) { d["backends"][0]["formats"] = {""}; });
  invalid("backend-unknown-key", [](json& d) { d["backends"][0]["path"] = "/usr/lib"; });
  invalid("model-unknown-key", [](json& d) { d["models"][0]["loaded"] = true; });
  invalid("slot-c", [](json& d) { d["models"][0]["active"]["slot"] = "C"; });
  invalid("slot-bad-sha", [](json& d) { d["models"][0]["active"]["sha256"] = "abc"; });
  invalid("slot-upper-sha",
          [](json& d) { d["models"][0]["active"]["sha256"] = std::string(64, 'B'); });
  invalid("slot-bad-version", [](json& d) { d["models"][0]["active"]["version"] = "1.2"; });
  invalid("slot-unknown-key", [](json& d) { d["models"][0]["active"]["path"] = "/var/lib"; });
  invalid("active-string", [](json& d) { d["models"][0]["active"] = "B"; });
  invalid("connection-negative", [](json& d) { d["connection"] = -1; });
  invalid("outbox-dropped-fraction", [](json& d) { d["outbox"]["dropped"] = 0.5; });
  w.Add(kind, Verdict::kSemantic, "duplicate-model",
        [](json& d) { d["models"][1]["name"] = "digits"; });
}

void TelemetryExamples(Writer& w) {
  const Kind kind{"telemetry", [](const std::string& t) { return ParseTelemetry(t).has_value(); },
                  json::parse(EncodeTelemetry(testing::FullWindow()))};
  w.AddText(kind, Verdict::kValid, "full", EncodeTelemetry(testing::FullWindow()));
  w.AddText(kind, Verdict::kValid, "minimal", EncodeTelemetry(testing::MinimalWindow()));
  CommonExamples(w, kind);
  const auto invalid = [&](const std::string& label, const Mutation& m) {
    w.Add(kind, Verdict::kInvalid, label, m);
  };
  invalid("missing-window", [](json& d) { d.erase("window_s"); });
  invalid("missing-latency", [](json& d) { d.erase("latency_ms"); });
  invalid("missing-bucket", [](json& d) { d["latency_ms"].erase("le_2.5"); });
  invalid("missing-le-inf", [](json& d) { d["latency_ms"].erase("le_inf"); });
  invalid("missing-p99", [](json& d) { d["latency_ms"].erase("p99"); });
  invalid("missing-stage-infer", [](json& d) { d["stage_ms"].erase("infer"); });
  invalid("missing-labeled", [](json& d) { d["accuracy"].erase("labeled"); });
  invalid("missing-confidence-count", [](json& d) { d["confidence"].erase("count"); });
  invalid("missing-rss", [](json& d) { d["health"].erase("rss_bytes"); });
  invalid("missing-outbox-dropped", [](json& d) { d["outbox"] = json::object(); });
  invalid("bucket-string", [](json& d) { d["latency_ms"]["le_5"] = "x"; });
  invalid("bucket-negative", [](json& d) { d["latency_ms"]["le_0.1"] = -1; });
  invalid("bucket-unknown", [](json& d) { d["latency_ms"]["le_7"] = 3; });
  invalid("count-negative", [](json& d) { d["count"] = -1; });
  invalid("errors-fraction", [](json& d) { d["errors"] = 1.5; });
  invalid("count-above-2-63", [](json& d) { d["count"] = 9223372036854775808ull; });
  invalid("window-negative", [](json& d) { d["window_s"] = -10.0; });
  invalid("throughput-negative", [](json& d) { d["throughput_rps"] = -1; });
  invalid("sum-negative", [](json& d) { d["latency_ms"]["sum"] = -0.5; });
  invalid("stage-negative", [](json& d) { d["stage_ms"]["pre"] = -0.5; });
  invalid("stage-unknown", [](json& d) { d["stage_ms"]["queue"] = 0.5; });
  invalid("golden-above-1", [](json& d) { d["accuracy"]["golden"] = 1.5; });
  invalid("shadow-negative", [](json& d) { d["accuracy"]["shadow_agree"] = -0.1; });
  invalid("confidence-mean-above-1", [](json& d) { d["confidence"]["mean"] = 1.2; });
  invalid("cpu-negative", [](json& d) { d["health"]["cpu_pct"] = -1; });
  invalid("temp-string", [](json& d) { d["health"]["temp_c"] = "61"; });
  invalid("health-unknown", [](json& d) { d["health"]["gpu_pct"] = 3; });
  invalid("slot-c", [](json& d) { d["slot"] = "C"; });
  invalid("role-unknown", [](json& d) { d["role"] = "leader"; });
  invalid("version-partial", [](json& d) { d["version"] = "1.2"; });
  invalid("model-upper", [](json& d) { d["model"] = "Digits"; });
  invalid("seq-zero", [](json& d) { d["seq"]["n"] = 0; });
  invalid("seq-negative", [](json& d) { d["seq"]["n"] = -3; });
  invalid("seq-stream-upper", [](json& d) { d["seq"]["stream"] = "00C0FFEE12345678"; });
  invalid("seq-stream-short", [](json& d) { d["seq"]["stream"] = "c0ffee"; });
  invalid("seq-missing-n", [](json& d) { d["seq"].erase("n"); });
  invalid("seq-unknown", [](json& d) { d["seq"]["epoch"] = 1; });
  invalid("seq-number", [](json& d) { d["seq"] = 4097; });
  {
    std::string text = EncodeTelemetry(testing::FullWindow());
    const std::string key = "\"cpu_pct\":37.5";
    text.replace(text.find(key), key.size(), "\"cpu_pct\":1e400");
    w.AddText(kind, Verdict::kInvalid, "cpu-overflows-double", text);
  }
  const auto semantic = [&](const std::string& label, const Mutation& m) {
    w.Add(kind, Verdict::kSemantic, label, m);
  };
  semantic("buckets-decrease", [](json& d) { d["latency_ms"]["le_10"] = 0; });
  semantic("le-inf-not-count", [](json& d) { d["latency_ms"]["le_inf"] = 12; });
}

void EventExamples(Writer& w) {
  const Kind kind{"event", [](const std::string& t) { return ParseEvent(t).has_value(); },
                  json::parse(EncodeEvent(testing::ParityEvent()))};
  w.AddText(kind, Verdict::kValid, "parity-report", EncodeEvent(testing::ParityEvent()));
  w.AddText(kind, Verdict::kValid, "rejected", EncodeEvent(testing::RejectedEvent()));
  CommonExamples(w, kind);
  const auto invalid = [&](const std::string& label, const Mutation& m) {
    w.Add(kind, Verdict::kInvalid, label, m);
  };
  invalid("missing-event", [](json& d) { d.erase("event"); });
  invalid("missing-reason", [](json& d) { d.erase("reason"); });
  invalid("missing-target", [](json& d) { d.erase("target"); });
  invalid("parity-string", [](json& d) { d["parity"] = d["parity"].dump(); });
  invalid("parity-array", [](json& d) { d["parity"] = json::array(); });
  invalid("event-empty", [](json& d) { d["event"] = ""; });
  invalid("event-spaces", [](json& d) { d["event"] = "Rolled Back"; });
  invalid("event-leading-underscore", [](json& d) { d["event"] = "_x"; });
  invalid("from-dash", [](json& d) { d["from"] = "rolling-back"; });
  invalid("model-dotdot", [](json& d) { d["model"] = "../x"; });
  invalid("version-v", [](json& d) { d["version"] = "v1.2.0"; });
  invalid("deployment-negative", [](json& d) { d["deployment"] = -1; });
  invalid("serial-string", [](json& d) { d["serial"] = "7"; });
  invalid("reason-null", [](json& d) { d["reason"] = nullptr; });
  invalid("target-number", [](json& d) { d["target"] = 5; });
  invalid("seq-zero", [](json& d) { d["seq"]["n"] = 0; });
  invalid("seq-stream-missing", [](json& d) { d["seq"].erase("stream"); });
  const auto semantic = [&](const std::string& label, const std::string& text) {
    w.AddText(kind, Verdict::kSemantic, label, text);
  };
  {
    // The parity report is free-form; only the reader's depth cap (64 levels) limits it.
    json deep = json::object();
    for (int i = 0; i < 70; ++i) deep = json{{"n", deep}};
    json doc = kind.full;
    doc["parity"] = deep;
    semantic("parity-too-deep", doc.dump());
  }
  {
    std::string text = EncodeEvent(testing::ParityEvent());
    const std::string key = "\"accuracy\":0.98";
    text.replace(text.find(key), key.size(), "\"accuracy\":1e400");
    // Inside the free-form report no schema rule reaches the number; nlohmann refuses to parse it.
    semantic("parity-overflows-double", text);
  }
}

}  // namespace
}  // namespace edgefleet::telemetry

int main(int argc, char** argv) {
  using namespace edgefleet::telemetry;
  return edgefleet::testing::RunExampleWriter(argc, argv, [](ExampleWriter& out) {
    Writer writer(out);
    StatusExamples(writer);
    TelemetryExamples(writer);
    EventExamples(writer);
  });
}
