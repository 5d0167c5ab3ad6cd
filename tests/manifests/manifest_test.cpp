// The bundle manifest: round trip and one precise error per kind of schema violation.
#include <gtest/gtest.h>

#include "manifests/json_fields.hpp"
#include "manifests/manifest.hpp"
#include "tests/manifests/samples.hpp"
#include "tests/manifests/test_util.hpp"

namespace edgefleet::manifests {
namespace {

using testing::ParseFailsWith;
using testing::SampleManifestBody;

Result<Manifest> Parse(const nlohmann::json& body) {
  return Manifest::FromJson(body, "manifest.json");
}

TEST(ManifestTest, FormsRoundTripAndWhatCannotBeAFormIsRefused) {
  auto body = SampleManifestBody();
  auto m = Parse(body);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_TRUE(m->variants[0].forms.empty());  // optional
  EXPECT_FALSE(m->ToJson()["variants"][0].contains("forms"));
  body["variants"][0]["forms"] = {"Conv(f32;d4,c4,c1;kernel_shape=[3,3])", "Gemm(f32;d2,c2,c1)"};
  m = Parse(body);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->variants[0].forms, (std::vector<std::string>{"Conv(f32;d4,c4,c1;kernel_shape=[3,3])",
                                                            "Gemm(f32;d2,c2,c1)"}));
  EXPECT_EQ(m->ToJson()["variants"][0]["forms"], body["variants"][0]["forms"]);
  const std::string expected =
      "expected \"<operator>(<form>)\" in printable ASCII of at most 512 bytes, found ";
  for (const auto& [bad, line] : std::vector<std::pair<std::string, std::string>>{
           {"Gemm", expected + "\"Gemm\""},
           {"(f32)", expected + "\"(f32)\""},
           {"Gemm(f32 d2)", expected + "\"Gemm(f32 d2)\""},
           {"Gemm(\x1b[31m)", expected + "\"Gemm(\\x1b[31m)\""},
       }) {
    body["variants"][0]["forms"] = {bad};
    EXPECT_TRUE(ParseFailsWith(Parse(body), "manifest.json: signed.variants[0].forms[0]: " + line))
        << bad;
  }
  body["variants"][0]["forms"] = {std::string(600, 'G') + "()"};
  EXPECT_FALSE(Parse(body));
  body["variants"][0]["forms"] = "Gemm()";
  EXPECT_FALSE(Parse(body));
}

TEST(ManifestTest, FullRoundTrip) {
  const auto body = SampleManifestBody();
  auto m = Parse(body);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->name, "digits");
  EXPECT_EQ(m->version.ToString(), "1.0.0");
  EXPECT_EQ(FormatTimestamp(m->created), "2026-11-21T05:00:00Z");
  ASSERT_EQ(m->variants.size(), 1u);
  EXPECT_EQ(m->variants[0].opset, 10);
  EXPECT_EQ(m->variants[0].operators, (std::vector<std::string>{"Conv", "Relu", "Gemm"}));
  EXPECT_TRUE(m->variants[0].backends[0].version.Contains(*SemVer::Parse("4.6.0")));
  EXPECT_EQ(m->variants[0].inputs[0].shape, (std::vector<std::int64_t>{-1, 1, 8, 8}));
  ASSERT_TRUE(m->preprocessing);
  EXPECT_EQ(m->preprocessing->scale, 0.00392156862745098);
  EXPECT_EQ(m->labels, "golden/labels.json");
  EXPECT_EQ(m->parity.min_accuracy, 0.9);
  EXPECT_EQ(m->watch.min_online_accuracy, 0.9);
  EXPECT_EQ(m->extensions["x-team"]["owner"], "vision");
  ASSERT_NE(m->FindFile("golden/labels.json"), nullptr);
  EXPECT_EQ(m->FindFile("golden/labels.json")->size, 20u);
  EXPECT_EQ(m->FindFile("model/other.onnx"), nullptr);
  // The document we produce is exactly the one we read (every field written back).
  EXPECT_EQ(m->ToJson(), body);
  auto again = Parse(m->ToJson());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->ToJson(), m->ToJson());
}

TEST(ManifestTest, MinimalDocumentTakesDefaults) {
  auto m = Parse(testing::MinimalManifestBody());
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->description, "");
  EXPECT_FALSE(m->preprocessing);
  EXPECT_FALSE(m->labels);
  EXPECT_EQ(m->parity.atol, 1e-4);
  EXPECT_EQ(m->parity.rtol, 1e-3);
  EXPECT_EQ(m->parity.min_top1_agreement, 0.99);
  EXPECT_FALSE(m->parity.min_accuracy);
  EXPECT_EQ(m->parity.max_latency_factor, 2.0);
  EXPECT_EQ(m->watch.window_s, 60);
  EXPECT_EQ(m->watch.min_requests, 50);
  EXPECT_EQ(m->watch.max_error_rate, 0.01);
  EXPECT_EQ(m->watch.max_p95_latency_factor, 2.0);
  EXPECT_FALSE(m->watch.min_online_accuracy);
  // Optional values stay absent on the way out; defaults are written explicitly.
  const auto out = m->ToJson();
  EXPECT_FALSE(out.contains("preprocessing"));
  EXPECT_FALSE(out.contains("labels"));
  EXPECT_FALSE(out["parity"].contains("min_accuracy"));
  EXPECT_EQ(out["watch"]["window_s"], 60);
  auto again = Parse(out);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->ToJson(), out);
}

TEST(ManifestTest, ParsesBodiesBuiltInCode) {
  Manifest m;
  m.name = "resnet.v2_int8";
  m.version = *SemVer::Parse("2.0.0-rc.1");
  m.created = *ParseTimestamp("2026-01-01T00:00:00Z");
  m.files = {{"model/a.onnx", 0, std::string(64, '0')}};
  Variant v;
  v.id = "a";
  v.file = "model/a.onnx";
  v.format = "onnx";
  v.opset = 13;
  v.operators = {"com.microsoft:QLinearConv"};
  v.backends = {{"opencv", *VersionRange::Parse("*")}};
  v.inputs = {{"x", "uint8", {1, 3, 224, 224}}};
  v.outputs = {{"y", "int64", {}}};
  m.variants = {v};
  m.golden = {{"g", {"golden/g/input_0.pb"}, {"golden/g/output_0.pb"}}};
  m.files.push_back({"golden/g/input_0.pb", 1, std::string(64, '1')});
  m.files.push_back({"golden/g/output_0.pb", 1, std::string(64, '2')});
  m.preprocessing = Preprocessing{"NHWC", "BGR", 224, 224, 1.0, {1, 2, 3}, {4, 5, 6}};
  auto parsed = Parse(m.ToJson());
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->ToJson(), m.ToJson());
}

TEST(ManifestTest, MissingField) {
  auto body = SampleManifestBody();
  body.erase("name");
  body["variants"][0].erase("opset");
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(
      m, "manifest.json: signed.name: missing required field, expected string, found nothing"));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.variants[0].opset: missing required field, "
                             "expected integer, found nothing"));
  body = SampleManifestBody();
  body.erase("parity");
  EXPECT_TRUE(ParseFailsWith(Parse(body),
                             "manifest.json: signed.parity: missing required field, expected "
                             "object, found nothing"));
}

TEST(ManifestTest, WrongType) {
  auto body = SampleManifestBody();
  body["files"][0]["size"] = "1234";
  body["variants"][0]["opset"] = 10.0;
  body["golden"] = {{"name", "x"}};
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(
      m, "manifest.json: signed.files[0].size: wrong type, expected integer, found string"));
  EXPECT_TRUE(ParseFailsWith(
      m, "manifest.json: signed.variants[0].opset: wrong type, expected integer, found number"));
  EXPECT_TRUE(
      ParseFailsWith(m, "manifest.json: signed.golden: wrong type, expected array, found object"));
  EXPECT_TRUE(ParseFailsWith(Manifest::FromJson(nlohmann::json::array(), "manifest.json"),
                             "manifest.json: signed: wrong type, expected object, found array"));
}

TEST(ManifestTest, UnknownFieldAtEveryLevelButExtensionsKept) {
  auto body = SampleManifestBody();
  body["signature"] = "x";
  body["variants"][0]["inputs"][0]["layout"] = "NCHW";
  body["parity"]["x-note"] = "fine";
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(
      m,
      "manifest.json: signed.signature: unknown field, expected one of created, description, "
      "files, golden, labels, name, parity, preprocessing, spec_version, type, variants, version, "
      "watch (or an \"x-\" extension), found \"signature\""));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.variants[0].inputs[0].layout: unknown field, "
                             "expected one of dtype, name, shape (or an \"x-\" extension), found "
                             "\"layout\""));
  EXPECT_EQ(testing::Lines(m.error().message).size(), 2u) << m.error().message;
}

TEST(ManifestTest, BadHex) {
  auto body = SampleManifestBody();
  body["files"][3]["sha256"] = "0123456789ab";
  body["files"][1]["sha256"] = std::string(64, 'A');
  body["files"][2]["sha256"] = std::string(10, 'a') + "g" + std::string(53, 'a');
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.files[3].sha256: expected 64 lowercase hex "
                             "digits, found 12 characters"));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.files[1].sha256: expected 64 lowercase hex "
                             "digits, found uppercase hex digits (write them in lowercase)"));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.files[2].sha256: expected 64 lowercase hex "
                             "digits, found 'g' at position 10"));
}

TEST(ManifestTest, BadSemverAndRange) {
  auto body = SampleManifestBody();
  body["version"] = "1.0";
  body["variants"][0]["backends"][0]["version"] = ">=4.5.0 <five";
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.version: expected a semantic version like "
                             "1.2.3 or 1.2.3-rc.1, found \"1.0\""));
  EXPECT_TRUE(ParseFailsWith(
      m,
      "manifest.json: signed.variants[0].backends[0].version: expected a version range of "
      "comparators like \">=4.5.0 <5.0.0\" (operators =, <, <=, >, >=, or *), found bad "
      "comparator \"<five\""));
}

TEST(ManifestTest, BadTimestamp) {
  auto body = SampleManifestBody();
  body["created"] = "2026-11-21 05:00:00";
  EXPECT_TRUE(ParseFailsWith(Parse(body),
                             "manifest.json: signed.created: expected RFC 3339 UTC time like "
                             "2026-11-21T05:00:00Z, found \"2026-11-21 05:00:00\""));
  body["created"] = "2026-02-30T05:00:00Z";
  EXPECT_TRUE(ParseFailsWith(Parse(body),
                             "manifest.json: signed.created: expected a valid calendar date, "
                             "found \"2026-02-30T05:00:00Z\""));
}

TEST(ManifestTest, OutOfRangeNumbers) {
  auto body = SampleManifestBody();
  body["variants"][0]["opset"] = 31;
  body["files"][0]["size"] = -1;
  body["parity"]["atol"] = -0.1;
  body["parity"]["min_top1_agreement"] = 1.5;
  body["parity"]["max_latency_factor"] = 0;
  body["watch"]["window_s"] = 0;
  body["watch"]["max_error_rate"] = 2;
  body["preprocessing"]["std"][0] = 0.0;
  body["preprocessing"]["height"] = 0;
  body["variants"][0]["outputs"][0]["shape"][0] = -2;
  body["files"][1]["size"] = 9223372036854775808ull;
  auto m = Parse(body);
  for (const char* line : {
           "manifest.json: signed.variants[0].opset: expected an integer from 1 to 30, found 31",
           "manifest.json: signed.files[0].size: expected an integer >= 0, found -1",
           "manifest.json: signed.files[1].size: expected an integer below 2^63, found "
           "9223372036854775808",
           "manifest.json: signed.parity.atol: expected a number >= 0, found -0.1",
           "manifest.json: signed.parity.min_top1_agreement: expected a number from 0 to 1, "
           "found 1.5",
           "manifest.json: signed.parity.max_latency_factor: expected a number > 0, found 0.0",
           "manifest.json: signed.watch.window_s: expected an integer >= 1, found 0",
           "manifest.json: signed.watch.max_error_rate: expected a number from 0 to 1, found 2.0",
           "manifest.json: signed.preprocessing.std[0]: expected a number > 0, found 0.0",
           "manifest.json: signed.preprocessing.height: expected an integer >= 1, found 0",
           "manifest.json: signed.variants[0].outputs[0].shape[0]: expected a dimension >= 0 or "
           "-1 (dynamic), found -2",
       }) {
    EXPECT_TRUE(ParseFailsWith(m, line));
  }
  EXPECT_EQ(testing::Lines(m.error().message).size(), 11u) << m.error().message;
}

TEST(ManifestTest, EnumsAndChannelCounts) {
  auto body = SampleManifestBody();
  body["variants"][0]["inputs"][0]["dtype"] = "float";
  body["preprocessing"]["color"] = "RGB";  // mean/std still have one entry
  body["preprocessing"]["layout"] = "CHW";
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.variants[0].inputs[0].dtype: expected one of "
                             "bool, float16, float32, float64, int16, int32, int64, int8, uint8, "
                             "found \"float\""));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.preprocessing.mean: expected 3 value(s), one "
                             "per channel of RGB, found 1"));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.preprocessing.std: expected 3 value(s), one "
                             "per channel of RGB, found 1"));
  EXPECT_TRUE(ParseFailsWith(
      m, "manifest.json: signed.preprocessing.layout: expected one of NCHW, NHWC, found \"CHW\""));
}

TEST(ManifestTest, DuplicateFilePath) {
  auto body = SampleManifestBody();
  body["files"].push_back(body["files"][0]);
  EXPECT_TRUE(ParseFailsWith(Parse(body),
                             "manifest.json: signed.files[4].path: expected unique file paths, "
                             "found \"model/digits_op10.onnx\" already listed at "
                             "signed.files[0].path"));
}

TEST(ManifestTest, DuplicateVariantIdAndGoldenName) {
  auto body = SampleManifestBody();
  body["variants"].push_back(body["variants"][0]);
  body["golden"].push_back(body["golden"][0]);
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.variants[1].id: expected unique variant ids, "
                             "found \"onnx-op10\" already used at signed.variants[0].id"));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.golden[1].name: expected unique golden set "
                             "names, found \"heldout\" again"));
}

TEST(ManifestTest, ReferencedFilesMustBeListed) {
  auto body = SampleManifestBody();
  body["variants"][0]["file"] = "model/digits_op13.onnx";
  body["golden"][0]["outputs"][0] = "golden/heldout/output_9.pb";
  body["labels"] = "golden/labels2.json";
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.variants[0].file: expected a path listed in "
                             "signed.files, found \"model/digits_op13.onnx\" (not listed)"));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.golden[0].outputs[0]: expected a path listed "
                             "in signed.files, found \"golden/heldout/output_9.pb\" (not "
                             "listed)"));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.labels: expected a path listed in "
                             "signed.files, found \"golden/labels2.json\" (not listed)"));
}

TEST(ManifestTest, FilesLiveInTheirFolders) {
  auto body = SampleManifestBody();
  body["variants"][0]["file"] = "golden/labels.json";
  body["golden"][0]["inputs"][0] = "golden/labels.json";
  auto m = Parse(body);
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.variants[0].file: expected a path under "
                             "model/, found \"golden/labels.json\""));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.golden[0].inputs[0]: expected a path under "
                             "golden/heldout/, found \"golden/labels.json\""));
}

TEST(ManifestTest, UnsafePaths) {
  const std::string expectation =
      "expected a safe relative path ('/'-separated, no leading '/', no empty, '.' or '..' "
      "segments, no backslashes or control characters, at most 255 bytes, not manifest.json), "
      "found ";
  for (const std::string& bad :
       {std::string("../x"), std::string("/etc/x"), std::string("model/../../x"),
        std::string("model/./a"), std::string("model//a"), std::string("model/a/"),
        std::string("model\\a"), std::string(""), std::string("."), std::string("manifest.json"),
        std::string("model/a\nb"), "model/" + std::string(250, 'a')}) {
    auto body = SampleManifestBody();
    body["files"][0]["path"] = bad;
    EXPECT_FALSE(IsSafeRelativePath(bad)) << bad;
    EXPECT_TRUE(ParseFailsWith(
        Parse(body), "manifest.json: signed.files[0].path: " + expectation + QuoteForMessage(bad)))
        << bad;
  }
  for (const char* good : {"model/a.onnx", "a", "golden/set-1/input_0.pb", "model/..a", "x/.y"}) {
    EXPECT_TRUE(IsSafeRelativePath(good)) << good;
  }
}

TEST(ManifestTest, EmptyListsAndBadNames) {
  auto body = SampleManifestBody();
  body["variants"] = nlohmann::json::array();
  body["name"] = "Digits";
  body["type"] = "edgefleet/desired-state";
  body["spec_version"] = 2;
  auto m = Parse(body);
  EXPECT_TRUE(
      ParseFailsWith(m, "manifest.json: signed.variants: expected at least 1 entry, found 0"));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.name: expected a name matching "
                             "[a-z0-9][a-z0-9._-]{0,63}, found \"Digits\""));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.type: expected \"edgefleet/manifest\", found "
                             "\"edgefleet/desired-state\""));
  EXPECT_TRUE(ParseFailsWith(m,
                             "manifest.json: signed.spec_version: expected 1 (the only spec "
                             "version this build reads), found 2"));
}

TEST(ManifestTest, MultipleProblemsReportedTogether) {
  auto body = SampleManifestBody();
  body.erase("created");
  body["files"][3]["sha256"] = "0123456789ab";
  body["variants"][0]["opset"] = 0;
  body["watch"]["min_requests"] = "many";
  body["bogus"] = true;
  auto m = Parse(body);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kParse);
  const auto lines = testing::Lines(m.error().message);
  ASSERT_EQ(lines.size(), 5u) << m.error().message;
  for (const auto& line : lines) EXPECT_TRUE(line.starts_with("manifest.json: signed.")) << line;
}

}  // namespace
}  // namespace edgefleet::manifests
