// Writes documents produced by the C++ code into a directory, for check_schemas.py to validate
// against manifests/schema/*.schema.json. So that schema and parser cannot drift, every document
// is first judged by the C++ parser here, and the verdict is encoded in the file name:
//
//   <kind>.valid.<label>.json     the C++ parser accepts it; the schema must accept it
//   <kind>.invalid.<label>.json   the C++ parser refuses it; the schema must refuse it
//   <kind>.semantic.<label>.json  the C++ parser refuses it for a rule JSON Schema cannot
//                                 express (cross references, uniqueness of a field, hashes);
//                                 the schema must accept it, documenting the limit
//
// Usage: manifests_schema_examples <output dir>. Exits 1 when the C++ parser disagrees with the
// intended verdict of an example (a broken example is a failure too, not a skip). The file
// naming and the main() are shared with the payload writer (tests/support/schema_examples.hpp).
#include <cstdlib>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "manifests/desired_state.hpp"
#include "manifests/envelope.hpp"
#include "manifests/manifest.hpp"
#include "manifests/trust.hpp"
#include "tests/manifests/samples.hpp"
#include "tests/support/schema_examples.hpp"

namespace edgefleet::manifests {
namespace {

using edgefleet::testing::ExampleWriter;
using edgefleet::testing::Verdict;
using nlohmann::json;
using testing::At;
using testing::KeyFromByte;

struct Kind {
  std::string name;  // manifest | desired-state | root
  std::function<Status(const json&)> parse_body;
};

class Writer {
 public:
  explicit Writer(ExampleWriter& out) : out_(out) {}

  // `doc` is a whole envelope.
  void Add(const Kind& kind, Verdict verdict, const std::string& label, const json& doc) {
    out_.Write(kind.name, verdict, label, Accepts(kind, doc), doc.dump(2) + "\n");
  }

 private:
  static bool Accepts(const Kind& kind, const json& doc) {
    // Through text, as a box would receive it.
    auto env = SignedEnvelope::FromText(doc.dump(), kind.name, kMaxManifestBytes);
    if (!env) return false;
    return kind.parse_body(env->signed_body).has_value();
  }

  ExampleWriter& out_;
};

json Envelope(json body, std::initializer_list<PrivateKey> keys) {
  SignedEnvelope env;
  env.signed_body = std::move(body);
  for (const auto& k : keys) {
    if (!env.Sign(k)) std::abort();
  }
  return env.ToJson();
}

// Applies `mutate` to a copy of `base`'s signed body and re-signs it.
json Mutated(const json& base_body, const std::function<void(json&)>& mutate,
             const PrivateKey& key) {
  json body = base_body;
  mutate(body);
  return Envelope(std::move(body), {key});
}

void ManifestExamples(Writer& w, const PrivateKey& key) {
  const Kind kind{"manifest", [](const json& b) -> Status {
                    auto m = Manifest::FromJson(b, "manifest");
                    if (!m) return Unexpected(m.error());
                    return Ok();
                  }};
  // Valid documents are produced by the C++ writer (ToJson), not by hand.
  const auto from_cpp = [](const json& body) { return Manifest::FromJson(body, "m")->ToJson(); };
  const json full = from_cpp(testing::SampleManifestBody());
  const json minimal = from_cpp(testing::MinimalManifestBody());
  w.Add(kind, Verdict::kValid, "full", Envelope(full, {key}));
  w.Add(kind, Verdict::kValid, "minimal", Envelope(minimal, {key}));
  w.Add(kind, Verdict::kValid, "unsigned", Envelope(minimal, {}));
  {
    json body = full;
    body["preprocessing"] = {{"layout", "NHWC"},
                             {"color", "BGR"},
                             {"height", 224},
                             {"width", 224},
                             {"mean", {0.485, 0.456, 0.406}},
                             {"std", {0.229, 0.224, 0.225}}};
    body["version"] = "2.0.0-rc.1";
    body["variants"].push_back(body["variants"][0]);
    body["variants"][1]["id"] = "onnx-op13";
    body["variants"][1]["opset"] = 13;
    body["variants"][1]["backends"][0]["version"] = "*";
    body["variants"][1]["operators"] = {"com.microsoft:QLinearConv"};
    body["variants"][1]["inputs"][0]["shape"] = json::array();
    body["parity"]["x-comment"] = "nested extension";
    body["files"][0]["x-origin"] = "trainer";
    w.Add(kind, Verdict::kValid, "rgb-two-variants-extensions",
          Envelope(from_cpp(body), {key, KeyFromByte(2)}));
  }

  const auto invalid = [&](const std::string& label, const std::function<void(json&)>& mutate) {
    w.Add(kind, Verdict::kInvalid, label, Mutated(full, mutate, key));
  };
  invalid("missing-name", [](json& b) { b.erase("name"); });
  invalid("missing-files", [](json& b) { b.erase("files"); });
  invalid("missing-parity", [](json& b) { b.erase("parity"); });
  invalid("missing-variant-opset", [](json& b) { b["variants"][0].erase("opset"); });
  invalid("missing-tensor-shape", [](json& b) { b["variants"][0]["inputs"][0].erase("shape"); });
  invalid("wrong-type-size", [](json& b) { b["files"][0]["size"] = "1234"; });
  invalid("wrong-type-description", [](json& b) { b["description"] = 5; });
  invalid("wrong-type-watch", [](json& b) { b["watch"] = json::array(); });
  invalid("unknown-top-level", [](json& b) { b["signature"] = "x"; });
  invalid("unknown-in-tensor", [](json& b) { b["variants"][0]["inputs"][0]["layout"] = "NCHW"; });
  invalid("unknown-in-parity", [](json& b) { b["parity"]["tolerance"] = 1; });
  invalid("unknown-in-file", [](json& b) { b["files"][0]["mode"] = 420; });
  invalid("bad-hex-short", [](json& b) { b["files"][3]["sha256"] = "0123456789ab"; });
  invalid("bad-hex-upper", [](json& b) { b["files"][0]["sha256"] = std::string(64, 'A'); });
  invalid("bad-semver-partial", [](json& b) { b["version"] = "1.0"; });
  invalid("bad-semver-leading-zero", [](json& b) { b["version"] = "1.01.0"; });
  invalid("bad-semver-build", [](json& b) { b["version"] = "1.0.0+build.5"; });
  invalid("bad-range", [](json& b) { b["variants"][0]["backends"][0]["version"] = "~4.5"; });
  invalid("bad-timestamp-space", [](json& b) { b["created"] = "2026-11-21 05:00:00Z"; });
  invalid("bad-timestamp-offset", [](json& b) { b["created"] = "2026-11-21T05:00:00+01:00"; });
  invalid("bad-timestamp-hour", [](json& b) { b["created"] = "2026-11-21T24:00:00Z"; });
  invalid("bad-timestamp-fraction", [](json& b) { b["created"] = "2026-11-21T05:00:00.5Z"; });
  invalid("opset-zero", [](json& b) { b["variants"][0]["opset"] = 0; });
  invalid("opset-31", [](json& b) { b["variants"][0]["opset"] = 31; });
  invalid("size-negative", [](json& b) { b["files"][0]["size"] = -1; });
  invalid("atol-negative", [](json& b) { b["parity"]["atol"] = -0.1; });
  invalid("agreement-above-1", [](json& b) { b["parity"]["min_top1_agreement"] = 1.5; });
  invalid("latency-factor-zero", [](json& b) { b["parity"]["max_latency_factor"] = 0; });
  invalid("window-zero", [](json& b) { b["watch"]["window_s"] = 0; });
  invalid("error-rate-negative", [](json& b) { b["watch"]["max_error_rate"] = -0.5; });
  invalid("std-zero", [](json& b) { b["preprocessing"]["std"][0] = 0; });
  invalid("height-zero", [](json& b) { b["preprocessing"]["height"] = 0; });
  invalid("shape-below-minus-one", [](json& b) { b["variants"][0]["inputs"][0]["shape"][0] = -2; });
  invalid("dtype-unknown", [](json& b) { b["variants"][0]["inputs"][0]["dtype"] = "float"; });
  invalid("layout-unknown", [](json& b) { b["preprocessing"]["layout"] = "CHW"; });
  invalid("color-unknown", [](json& b) { b["preprocessing"]["color"] = "RGBA"; });
  invalid("rgb-with-one-mean", [](json& b) { b["preprocessing"]["color"] = "RGB"; });
  invalid("gray-with-three-std", [](json& b) { b["preprocessing"]["std"] = {1, 1, 1}; });
  invalid("preprocessing-missing-mean", [](json& b) { b["preprocessing"].erase("mean"); });
  invalid("path-dotdot", [](json& b) { b["files"][0]["path"] = "../x"; });
  invalid("path-absolute", [](json& b) { b["files"][0]["path"] = "/etc/x"; });
  invalid("path-inner-dotdot", [](json& b) { b["files"][0]["path"] = "model/../../x"; });
  invalid("path-empty-segment", [](json& b) { b["files"][0]["path"] = "model//a"; });
  invalid("path-dot-segment", [](json& b) { b["files"][0]["path"] = "model/./a"; });
  invalid("path-backslash", [](json& b) { b["files"][0]["path"] = "model\\a"; });
  invalid("path-newline", [](json& b) { b["files"][0]["path"] = "model/a\nb"; });
  invalid("path-manifest", [](json& b) { b["files"][0]["path"] = "manifest.json"; });
  invalid("path-too-long", [](json& b) { b["files"][0]["path"] = "m/" + std::string(254, 'a'); });
  invalid("variant-file-outside-model",
          [](json& b) { b["variants"][0]["file"] = "golden/labels.json"; });
  invalid("golden-outside-golden",
          [](json& b) { b["golden"][0]["inputs"][0] = "model/digits_op10.onnx"; });
  invalid("labels-unsafe", [](json& b) { b["labels"] = "../labels.json"; });
  invalid("no-files", [](json& b) { b["files"] = json::array(); });
  invalid("no-variants", [](json& b) { b["variants"] = json::array(); });
  invalid("no-golden", [](json& b) { b["golden"] = json::array(); });
  invalid("no-backends", [](json& b) { b["variants"][0]["backends"] = json::array(); });
  invalid("no-inputs", [](json& b) { b["variants"][0]["inputs"] = json::array(); });
  invalid("golden-no-outputs", [](json& b) { b["golden"][0]["outputs"] = json::array(); });
  invalid("name-uppercase", [](json& b) { b["name"] = "Digits"; });
  invalid("name-too-long", [](json& b) { b["name"] = std::string(65, 'a'); });
  invalid("variant-id-bad", [](json& b) { b["variants"][0]["id"] = "-op10"; });
  invalid("wrong-document-type", [](json& b) { b["type"] = "edgefleet/root"; });
  invalid("spec-version-2", [](json& b) { b["spec_version"] = 2; });
  invalid("multiple-problems", [](json& b) {
    b.erase("created");
    b["files"][3]["sha256"] = "0123456789ab";
    b["variants"][0]["opset"] = 0;
    b["bogus"] = true;
  });
  w.Add(kind, Verdict::kInvalid, "envelope-extra-key", [&] {
    json doc = Envelope(full, {key});
    doc["x-unsigned"] = 1;
    return doc;
  }());
  w.Add(kind, Verdict::kInvalid, "envelope-bad-sig", [&] {
    json doc = Envelope(full, {key});
    doc["signatures"][0]["sig"] = "abcd";
    return doc;
  }());
  w.Add(kind, Verdict::kInvalid, "envelope-no-signatures", [&] {
    json doc = Envelope(full, {key});
    doc.erase("signatures");
    return doc;
  }());
  w.Add(kind, Verdict::kInvalid, "envelope-signed-array",
        json{{"signed", json::array()}, {"signatures", json::array()}});

  const auto semantic = [&](const std::string& label, const std::function<void(json&)>& mutate) {
    w.Add(kind, Verdict::kSemantic, label, Mutated(full, mutate, key));
  };
  semantic("duplicate-file-path", [](json& b) { b["files"].push_back(b["files"][0]); });
  semantic("variant-file-not-listed",
           [](json& b) { b["variants"][0]["file"] = "model/digits_op13.onnx"; });
  semantic("labels-not-listed", [](json& b) { b["labels"] = "golden/other.json"; });
  semantic("duplicate-variant-id", [](json& b) { b["variants"].push_back(b["variants"][0]); });
  semantic("golden-in-other-set",
           [](json& b) { b["golden"][0]["inputs"][0] = "golden/other/input_0.pb"; });
  semantic("feb-30", [](json& b) { b["created"] = "2026-02-30T05:00:00Z"; });
  semantic("integral-float-opset", [](json& b) { b["variants"][0]["opset"] = 10.0; });
}

void DesiredStateExamples(Writer& w, const PrivateKey& key) {
  const Kind kind{"desired-state", [](const json& b) -> Status {
                    auto d = DesiredState::FromJson(b, "desired");
                    if (!d) return Unexpected(d.error());
                    return Ok();
                  }};
  const auto from_cpp = [](const json& body) {
    return DesiredState::FromJson(body, "d")->ToJson();
  };
  const json full = from_cpp(testing::SampleDesiredStateBody());
  w.Add(kind, Verdict::kValid, "group", Envelope(full, {key}));
  {
    json body = testing::SampleDesiredStateBody();
    body["target"] = {{"device", "box-1"}, {"x-site", "lab-2"}};
    body["models"][0].erase("allow_downgrade");
    body["models"][0].erase("requirements");
    body["models"][0]["bundle"]["url"] = "file:///srv/digits.efb";
    w.Add(kind, Verdict::kValid, "device-defaults", Envelope(from_cpp(body), {key}));
    body["models"] = json::array();
    w.Add(kind, Verdict::kValid, "no-models", Envelope(from_cpp(body), {key}));
  }
  const auto invalid = [&](const std::string& label, const std::function<void(json&)>& mutate) {
    w.Add(kind, Verdict::kInvalid, label, Mutated(full, mutate, key));
  };
  invalid("target-both", [](json& b) { b["target"] = {{"device", "a"}, {"group", "b"}}; });
  invalid("target-neither", [](json& b) { b["target"] = json::object(); });
  invalid("target-unknown-key", [](json& b) { b["target"] = {{"fleet", "demo"}}; });
  invalid("target-string", [](json& b) { b["target"] = "lab"; });
  invalid("target-bad-name", [](json& b) { b["target"] = {{"device", "Box 1"}}; });
  invalid("url-ftp", [](json& b) { b["models"][0]["bundle"]["url"] = "ftp://x/y.efb"; });
  invalid("url-bare-scheme", [](json& b) { b["models"][0]["bundle"]["url"] = "https://"; });
  invalid("bundle-size-zero", [](json& b) { b["models"][0]["bundle"]["size"] = 0; });
  invalid("bundle-bad-hex", [](json& b) { b["models"][0]["bundle"]["sha256"] = "abc"; });
  invalid("bundle-missing-sha", [](json& b) { b["models"][0]["bundle"].erase("sha256"); });
  invalid("requirement-with-file",
          [](json& b) { b["models"][0]["requirements"][0]["file"] = "model/a.onnx"; });
  invalid("requirement-bad-dtype",
          [](json& b) { b["models"][0]["requirements"][0]["outputs"][0]["dtype"] = "double"; });
  invalid("allow-downgrade-string", [](json& b) { b["models"][0]["allow_downgrade"] = "yes"; });
  invalid("serial-negative", [](json& b) { b["serial"] = -1; });
  invalid("serial-missing", [](json& b) { b.erase("serial"); });
  invalid("models-missing", [](json& b) { b.erase("models"); });
  invalid("model-bad-version", [](json& b) { b["models"][0]["version"] = "v1.1.0"; });
  invalid("expires-bad", [](json& b) { b["expires"] = "2026-12-21"; });
  invalid("unknown-top-level", [](json& b) { b["priority"] = 1; });
  invalid("unknown-in-model", [](json& b) { b["models"][0]["slot"] = "B"; });
  invalid("wrong-document-type", [](json& b) { b["type"] = "edgefleet/manifest"; });
  const auto semantic = [&](const std::string& label, const std::function<void(json&)>& mutate) {
    w.Add(kind, Verdict::kSemantic, label, Mutated(full, mutate, key));
  };
  semantic("duplicate-model", [](json& b) { b["models"].push_back(b["models"][0]); });
  semantic("expires-before-created", [](json& b) { b["expires"] = "2026-11-20T05:00:00Z"; });
}

void RootExamples(Writer& w) {
  const Kind kind{"root", [](const json& b) -> Status {
                    auto r = TrustRootBody::FromJson(b, "root");
                    if (!r) return Unexpected(r.error());
                    return Ok();
                  }};
  const PrivateKey root = KeyFromByte(1);
  const PrivateKey rel1 = KeyFromByte(11), rel2 = KeyFromByte(12), rel3 = KeyFromByte(13);
  const PrivateKey deploy = KeyFromByte(21);
  TrustRootBody body = testing::MakeRootBody(1, {root}, 1, {rel1, rel2, rel3}, 2, {deploy},
                                             At("2027-11-21T05:00:00Z"));
  const json base = body.ToJson();
  w.Add(kind, Verdict::kValid, "two-of-three", Envelope(base, {root}));
  body.extensions["x-owner"] = "ops";
  w.Add(kind, Verdict::kValid, "extension", Envelope(body.ToJson(), {root}));

  const auto invalid = [&](const std::string& label, const std::function<void(json&)>& mutate) {
    w.Add(kind, Verdict::kInvalid, label, Mutated(base, mutate, root));
  };
  const std::string rel1_id = rel1.KeyId();
  invalid("threshold-zero", [](json& b) { b["roles"]["release"]["threshold"] = 0; });
  invalid("missing-role", [](json& b) { b["roles"].erase("deploy"); });
  invalid("unknown-role", [](json& b) { b["roles"]["admin"] = b["roles"]["root"]; });
  invalid("keyid-not-hex", [](json& b) { b["keys"]["not-a-keyid"] = b["keys"].begin().value(); });
  invalid("keytype-rsa", [&](json& b) { b["keys"][rel1_id]["keytype"] = "rsa"; });
  invalid("public-bad-hex", [&](json& b) { b["keys"][rel1_id]["public"] = "abcd"; });
  invalid("key-unknown-field", [&](json& b) { b["keys"][rel1_id]["comment"] = "x"; });
  invalid("keyids-empty", [](json& b) { b["roles"]["deploy"]["keyids"] = json::array(); });
  invalid("keyids-duplicate", [&](json& b) { b["roles"]["release"]["keyids"].push_back(rel1_id); });
  invalid("version-zero", [](json& b) { b["version"] = 0; });
  invalid("no-keys", [](json& b) { b["keys"] = json::object(); });
  invalid("expires-missing", [](json& b) { b.erase("expires"); });
  invalid("wrong-document-type", [](json& b) { b["type"] = "edgefleet/manifest"; });
  const auto semantic = [&](const std::string& label, const std::function<void(json&)>& mutate) {
    w.Add(kind, Verdict::kSemantic, label, Mutated(base, mutate, root));
  };
  semantic("keyid-not-hash-of-key",
           [&](json& b) { b["keys"][std::string(64, 'c')] = b["keys"][rel1_id]; });
  semantic("role-names-unlisted-key",
           [](json& b) { b["roles"]["deploy"]["keyids"].push_back(std::string(64, 'd')); });
  semantic("threshold-above-keys", [](json& b) { b["roles"]["release"]["threshold"] = 4; });
}

}  // namespace
}  // namespace edgefleet::manifests

int main(int argc, char** argv) {
  using namespace edgefleet::manifests;
  return edgefleet::testing::RunExampleWriter(argc, argv, [](ExampleWriter& out) {
    Writer writer(out);
    ManifestExamples(writer, testing::KeyFromByte(11));
    DesiredStateExamples(writer, testing::KeyFromByte(21));
    RootExamples(writer);
  });
}
