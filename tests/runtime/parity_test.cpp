// Parity smoke test on the committed digits models with the real opencv backend: v1 and v2 pass,
// broken fails on accuracy with its numbers, and bad golden data is a clear error.
#include "runtime/parity.hpp"

#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/tensor.hpp"
#include "tests/support/digits.hpp"
#include "tests/support/opencv_plugin.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

// gmock is not linked into runtime_tests; this is HasSubstr with a readable failure.
::testing::AssertionResult Has(std::string_view text, std::string_view part) {
  if (text.find(part) != std::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "missing\n  " << part << "\nin\n  " << text;
}

fs::path DigitsDir(std::string_view version) {
  return fs::path(EDGEFLEET_TEST_DATA_DIR) / "digits" / version;
}

class ParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto backend = testing::LoadOpenCvPlugin();
    ASSERT_TRUE(backend) << backend.error().message;
    backend_ = std::move(backend).value().release();
  }
  static void TearDownTestSuite() {
    delete backend_;
    backend_ = nullptr;
  }

  // The manifest of `dir` and a session of its first variant (opset 10).
  static manifests::Manifest Manifest(const fs::path& dir) {
    auto manifest = testing::LoadBundleManifest(dir);
    EXPECT_TRUE(manifest) << manifest.error().message;
    return manifest ? *manifest : manifests::Manifest{};
  }
  static std::unique_ptr<Session> Open(const fs::path& dir, const manifests::Manifest& manifest) {
    const auto& variant = manifest.variants.at(0);
    auto session = backend_->Load(dir / variant.file, variant, SessionOptions{});
    EXPECT_TRUE(session) << session.error().message;
    return session ? std::move(session).value() : nullptr;
  }

  static void Print(std::string_view what, const ParityReport& report) {
    std::cout << what << ": " << report.ToJson().dump() << "\n";
  }

  static Backend* backend_;
};

Backend* ParityTest::backend_ = nullptr;

TEST_F(ParityTest, V1PassesOnItsOwnGolden) {
  const auto dir = DigitsDir("v1");
  const auto manifest = Manifest(dir);
  auto session = Open(dir, manifest);
  ASSERT_NE(session, nullptr);

  auto report = RunParity(*session, manifest, dir);
  ASSERT_TRUE(report) << report.error().message;
  Print("v1", *report);
  EXPECT_TRUE(report->pass) << ::testing::PrintToString(report->failures);
  EXPECT_TRUE(report->failures.empty());
  ASSERT_EQ(report->sets.size(), 1u);
  const auto& set = report->sets[0];
  EXPECT_EQ(set.name, "heldout");
  EXPECT_EQ(set.samples, 360u);
  EXPECT_EQ(set.values_compared, 3600u);
  EXPECT_EQ(set.values_out_of_tolerance, 0u);
  EXPECT_LE(set.max_abs_diff, 1e-4);
  EXPECT_GT(set.max_abs_diff, 0.0);  // OpenCV and torch do not round alike; 0 would be suspect
  EXPECT_DOUBLE_EQ(set.top1_agreement, 1.0);
  EXPECT_EQ(set.labeled, 360u);
  EXPECT_EQ(set.correct, 357u);  // tests/data/README.md: 0.9917 (357/360)
  EXPECT_EQ(report->samples, 360u);
  ASSERT_TRUE(report->accuracy);
  EXPECT_NEAR(*report->accuracy, 357.0 / 360.0, 1e-12);
  EXPECT_GT(report->latency_median_ms, 0.0);
  EXPECT_GE(report->latency_p95_ms, report->latency_median_ms);
  EXPECT_FALSE(report->active_agreement);
  EXPECT_FALSE(report->latency_factor);
}

TEST_F(ParityTest, V2PassesAloneAndAgainstV1AsActive) {
  const auto v1_dir = DigitsDir("v1");
  const auto v2_dir = DigitsDir("v2");
  const auto v1_manifest = Manifest(v1_dir);
  const auto v2_manifest = Manifest(v2_dir);
  auto v1 = Open(v1_dir, v1_manifest);
  auto v2 = Open(v2_dir, v2_manifest);
  ASSERT_NE(v1, nullptr);
  ASSERT_NE(v2, nullptr);

  auto alone = RunParity(*v2, v2_manifest, v2_dir);
  ASSERT_TRUE(alone) << alone.error().message;
  Print("v2", *alone);
  EXPECT_TRUE(alone->pass) << ::testing::PrintToString(alone->failures);
  EXPECT_EQ(alone->sets.at(0).correct, 351u);  // 0.9750 (351/360)

  auto report = RunParity(*v2, v2_manifest, v2_dir, v1.get());
  ASSERT_TRUE(report) << report.error().message;
  Print("v2 vs v1 active", *report);
  EXPECT_TRUE(report->pass) << ::testing::PrintToString(report->failures);
  ASSERT_TRUE(report->active_agreement);
  EXPECT_NEAR(*report->active_agreement, 354.0 / 360.0, 1e-12);  // README: v1/v2 0.9833
  EXPECT_NEAR(*report->sets.at(0).active_agreement, 354.0 / 360.0, 1e-12);
  ASSERT_TRUE(report->active_latency_median_ms);
  EXPECT_GT(*report->active_latency_median_ms, 0.0);
  ASSERT_TRUE(report->latency_factor);
  EXPECT_NEAR(*report->latency_factor,
              report->latency_median_ms / *report->active_latency_median_ms, 1e-9);
  // Same architecture, same batch: far from the 3.0 the manifest allows, on any machine.
  EXPECT_LT(*report->latency_factor, 3.0);
}

TEST_F(ParityTest, BrokenFailsOnAccuracyWithTheNumbers) {
  const auto dir = DigitsDir("broken");
  const auto manifest = Manifest(dir);
  auto session = Open(dir, manifest);
  ASSERT_NE(session, nullptr);

  auto report = RunParity(*session, manifest, dir);
  ASSERT_TRUE(report) << report.error().message;
  Print("broken", *report);
  EXPECT_FALSE(report->pass);
  // Its golden outputs are its own: tolerance and agreement pass, only accuracy fails.
  EXPECT_EQ(report->sets.at(0).values_out_of_tolerance, 0u);
  EXPECT_DOUBLE_EQ(report->top1_agreement, 1.0);
  ASSERT_EQ(report->failures.size(), 1u) << ::testing::PrintToString(report->failures);
  EXPECT_EQ(report->failures[0], "accuracy 0.206 < min_accuracy 0.900 (74 of 360 labeled)");
  ASSERT_TRUE(report->accuracy);
  EXPECT_NEAR(*report->accuracy, 74.0 / 360.0, 1e-12);
}

TEST_F(ParityTest, BrokenAgainstV2AsActiveStillFailsOnlyOnAccuracy) {
  const auto v2_dir = DigitsDir("v2");
  const auto dir = DigitsDir("broken");
  const auto manifest = Manifest(dir);
  auto session = Open(dir, manifest);
  auto v2 = Open(v2_dir, Manifest(v2_dir));
  ASSERT_NE(session, nullptr);
  ASSERT_NE(v2, nullptr);

  auto report = RunParity(*session, manifest, dir, v2.get());
  ASSERT_TRUE(report) << report.error().message;
  Print("broken vs v2 active", *report);
  EXPECT_FALSE(report->pass);
  ASSERT_TRUE(report->active_agreement);
  EXPECT_NEAR(*report->active_agreement, 74.0 / 360.0, 1e-12);  // README: v2/broken 0.2056
  ASSERT_EQ(report->failures.size(), 1u) << ::testing::PrintToString(report->failures);
  EXPECT_TRUE(Has(report->failures[0], "accuracy 0.206 < min_accuracy 0.900"));
}

// The active model's input under another name, as when a new version renames it.
class RenamedInputSession final : public Session {
 public:
  explicit RenamedInputSession(Session& inner) : inner_(inner), inputs_(inner.inputs()) {
    inputs_.at(0).name = "pixels";
  }
  const std::vector<TensorInfo>& inputs() const override { return inputs_; }
  const std::vector<TensorInfo>& outputs() const override { return inner_.outputs(); }
  Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) override {
    if (inputs.size() != 1 || inputs[0].name != "pixels") {
      return Fail(ErrorCode::kInvalidArgument, "expected one input named pixels");
    }
    auto renamed = inputs;
    renamed[0].name = inner_.inputs()[0].name;
    return inner_.Run(renamed);
  }

 private:
  Session& inner_;
  std::vector<TensorInfo> inputs_;
};

TEST_F(ParityTest, ActiveModelIsFedByPosition) {
  const auto v1_dir = DigitsDir("v1");
  const auto v2_dir = DigitsDir("v2");
  const auto v2_manifest = Manifest(v2_dir);
  auto v1 = Open(v1_dir, Manifest(v1_dir));
  auto v2 = Open(v2_dir, v2_manifest);
  ASSERT_NE(v1, nullptr);
  ASSERT_NE(v2, nullptr);
  RenamedInputSession renamed(*v1);
  auto report = RunParity(*v2, v2_manifest, v2_dir, &renamed, ParityOptions{.latency_runs = 1});
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_NEAR(*report->active_agreement, 354.0 / 360.0, 1e-12);
}

// v1's model against v2's golden outputs: the tolerance and agreement rules fail with numbers.
TEST_F(ParityTest, WrongModelFailsToleranceAndAgreementWithTheNumbers) {
  const auto v1_dir = DigitsDir("v1");
  const auto v2_dir = DigitsDir("v2");
  auto v1 = Open(v1_dir, Manifest(v1_dir));
  ASSERT_NE(v1, nullptr);
  auto report = RunParity(*v1, Manifest(v2_dir), v2_dir);
  ASSERT_TRUE(report) << report.error().message;
  Print("v1 on v2 golden", *report);
  EXPECT_FALSE(report->pass);
  const auto& set = report->sets.at(0);
  EXPECT_GT(set.values_out_of_tolerance, 3000u);
  EXPECT_GT(set.max_abs_diff, 0.1);
  ASSERT_EQ(report->failures.size(), 2u) << ::testing::PrintToString(report->failures);
  EXPECT_TRUE(Has(report->failures[0],
                  "golden set 'heldout': " + std::to_string(set.values_out_of_tolerance) +
                      " of 3600 values out of tolerance (|a-b| > atol 0.0001 + rtol 0.001"));
  EXPECT_TRUE(Has(report->failures[0], "max abs diff "));
  EXPECT_EQ(report->failures[1],
            "top1_agreement 0.983 < min_top1_agreement 0.990 (354 of 360 samples agree with the "
            "golden outputs)");
  // Accuracy is v1's own (357/360), which passes.
  EXPECT_NEAR(*report->accuracy, 357.0 / 360.0, 1e-12);
}

TEST_F(ParityTest, LatencyFactorAboveTheLimitFails) {
  const auto dir = DigitsDir("v2");
  auto manifest = Manifest(dir);
  auto candidate = Open(dir, manifest);
  auto active = Open(dir, manifest);
  ASSERT_NE(candidate, nullptr);
  ASSERT_NE(active, nullptr);
  // The same model on both sides runs at a factor near 1; a limit of 0.01 must trip.
  manifest.parity.max_latency_factor = 0.01;
  auto report =
      RunParity(*candidate, manifest, dir, active.get(), ParityOptions{.latency_runs = 3});
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_FALSE(report->pass);
  ASSERT_EQ(report->failures.size(), 1u) << ::testing::PrintToString(report->failures);
  EXPECT_TRUE(Has(report->failures[0], "> max_latency_factor 0.01 (candidate median "));
  EXPECT_DOUBLE_EQ(*report->active_agreement, 1.0);
}

TEST_F(ParityTest, JsonReportHoldsEveryNumber) {
  const auto v1_dir = DigitsDir("v1");
  const auto v2_dir = DigitsDir("v2");
  const auto v2_manifest = Manifest(v2_dir);
  auto v1 = Open(v1_dir, Manifest(v1_dir));
  auto v2 = Open(v2_dir, v2_manifest);
  ASSERT_NE(v1, nullptr);
  ASSERT_NE(v2, nullptr);
  auto report = RunParity(*v2, v2_manifest, v2_dir, v1.get(), ParityOptions{.latency_runs = 2});
  ASSERT_TRUE(report) << report.error().message;

  const auto j = report->ToJson();
  EXPECT_EQ(j.at("pass"), true);
  EXPECT_TRUE(j.at("failures").empty());
  EXPECT_EQ(j.at("samples"), 360);
  EXPECT_EQ(j.at("top1_agreement"), report->top1_agreement);
  EXPECT_EQ(j.at("accuracy"), *report->accuracy);
  EXPECT_EQ(j.at("latency_median_ms"), report->latency_median_ms);
  EXPECT_EQ(j.at("latency_p95_ms"), report->latency_p95_ms);
  EXPECT_EQ(j.at("active_agreement"), *report->active_agreement);
  EXPECT_EQ(j.at("active_latency_median_ms"), *report->active_latency_median_ms);
  EXPECT_EQ(j.at("latency_factor"), *report->latency_factor);
  const auto& policy = j.at("policy");
  EXPECT_EQ(policy.at("atol"), 1e-4);
  EXPECT_EQ(policy.at("rtol"), 1e-3);
  EXPECT_EQ(policy.at("min_top1_agreement"), 0.99);
  EXPECT_EQ(policy.at("min_accuracy"), 0.9);
  EXPECT_EQ(policy.at("max_latency_factor"), 3.0);
  ASSERT_EQ(j.at("sets").size(), 1u);
  const auto& set = j.at("sets")[0];
  EXPECT_EQ(set.at("name"), "heldout");
  EXPECT_EQ(set.at("samples"), 360);
  EXPECT_EQ(set.at("values_compared"), 3600);
  EXPECT_EQ(set.at("values_out_of_tolerance"), 0);
  EXPECT_EQ(set.at("max_abs_diff"), report->sets[0].max_abs_diff);
  EXPECT_EQ(set.at("max_rel_diff"), report->sets[0].max_rel_diff);
  EXPECT_EQ(set.at("top1_agreement"), 1.0);
  EXPECT_EQ(set.at("labeled"), 360);
  EXPECT_EQ(set.at("correct"), 351);
  EXPECT_EQ(set.at("active_agreement"), *report->sets[0].active_agreement);

  // Without an active model the active numbers are null, not 0 (0 would read as "measured").
  auto alone = RunParity(*v2, v2_manifest, v2_dir, nullptr, ParityOptions{.latency_runs = 1});
  ASSERT_TRUE(alone) << alone.error().message;
  const auto k = alone->ToJson();
  EXPECT_TRUE(k.at("active_agreement").is_null());
  EXPECT_TRUE(k.at("latency_factor").is_null());
  EXPECT_TRUE(k.at("sets")[0].at("active_agreement").is_null());
}

TEST_F(ParityTest, NoLabelsMeansNoAccuracyJudgement) {
  const auto dir = DigitsDir("broken");
  auto manifest = Manifest(dir);
  manifest.labels.reset();
  auto session = Open(dir, manifest);
  ASSERT_NE(session, nullptr);
  auto report = RunParity(*session, manifest, dir);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_TRUE(report->pass) << ::testing::PrintToString(report->failures);
  EXPECT_FALSE(report->accuracy);
  EXPECT_FALSE(report->sets.at(0).labeled);
  EXPECT_TRUE(report->ToJson().at("accuracy").is_null());
}

// Bad golden data, built in a copy of v1: each case is a kIntegrity error naming the file, what
// was expected and what was found.
class BadGoldenTest : public ParityTest {
 protected:
  void SetUp() override {
    dir_ = temp_ / "v1";
    fs::copy(DigitsDir("v1"), dir_, fs::copy_options::recursive);
    manifest_ = Manifest(dir_);
    session_ = Open(dir_, manifest_);
    ASSERT_NE(session_, nullptr);
    auto input = ReadTensorProto(dir_ / kInput);
    ASSERT_TRUE(input) << input.error().message;
    input_ = *input;
    auto output = ReadTensorProto(dir_ / kOutput);
    ASSERT_TRUE(output) << output.error().message;
    output_ = *output;
  }

  void Write(const fs::path& relative, const Tensor& tensor) {
    auto bytes = SerializeTensorProto(tensor);
    ASSERT_TRUE(bytes) << bytes.error().message;
    testing::WriteFile(dir_ / relative, *bytes);
  }

  // Runs parity and expects a kIntegrity error whose message holds every piece of `parts`.
  void ExpectError(const std::vector<std::string>& parts) {
    auto report = RunParity(*session_, manifest_, dir_);
    ASSERT_FALSE(report) << "expected an error, got a report: " << report->ToJson().dump();
    EXPECT_EQ(report.error().code, ErrorCode::kIntegrity) << report.error().message;
    for (const auto& part : parts) EXPECT_TRUE(Has(report.error().message, part));
    std::cout << "error: " << report.error().message << "\n";
  }

  static Tensor Float32(std::string name, std::vector<std::int64_t> shape) {
    std::vector<float> values(static_cast<std::size_t>(*ElementCount(shape)), 0.5f);
    return *Tensor::FromFloats(std::move(name), std::move(shape), values);
  }

  static constexpr const char* kInput = "golden/heldout/input_0.pb";
  static constexpr const char* kOutput = "golden/heldout/output_0.pb";
  testing::TempDir temp_;
  fs::path dir_;
  manifests::Manifest manifest_;
  std::unique_ptr<Session> session_;
  Tensor input_;
  Tensor output_;
};

TEST_F(BadGoldenTest, TheUntouchedCopyPasses) {
  auto report = RunParity(*session_, manifest_, dir_);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_TRUE(report->pass);
}

TEST_F(BadGoldenTest, InputOfWrongShape) {
  Write(kInput, Float32("input", {360, 1, 9, 9}));
  ExpectError(
      {kInput, "golden input 'input'", "expected float32 [-1,1,8,8]", "found float32 [360,1,9,9]"});
}

TEST_F(BadGoldenTest, InputOfWrongRank) {
  Write(kInput, Float32("input", {360, 64}));
  ExpectError({kInput, "expected float32 [-1,1,8,8]", "found float32 [360,64]"});
}

TEST_F(BadGoldenTest, InputOfWrongDType) {
  Tensor wide;
  wide.name = "input";
  wide.dtype = DType::kFloat64;
  wide.shape = input_.shape;
  wide.data.resize(input_.data.size() * 2);
  auto doubles = wide.AsMutable<double>();
  auto floats = input_.As<float>();
  for (std::size_t i = 0; i < floats.size(); ++i) doubles[i] = floats[i];
  Write(kInput, wide);
  ExpectError({kInput, "expected float32 [-1,1,8,8]", "found float64 [360,1,8,8]"});
}

TEST_F(BadGoldenTest, OutputOfWrongShape) {
  Write(kOutput, Float32("logits", {360, 9}));
  ExpectError(
      {kOutput, "golden output 'logits'", "expected float32 [-1,10]", "found float32 [360,9]"});
}

TEST_F(BadGoldenTest, OutputOfWrongDType) {
  Tensor ints;
  ints.name = "logits";
  ints.dtype = DType::kInt64;
  ints.shape = {360, 10};
  ints.data.resize(3600 * sizeof(std::int64_t));
  Write(kOutput, ints);
  ExpectError({kOutput, "expected float32 [-1,10]", "found int64 [360,10]"});
}

TEST_F(BadGoldenTest, BatchRowsDisagree) {
  Write(kOutput, Float32("logits", {359, 10}));
  ExpectError({kOutput, "expected 360 batch rows (as in golden/heldout/input_0.pb), found 359"});
}

TEST_F(BadGoldenTest, MissingInputFile) {
  fs::remove(dir_ / kInput);
  ExpectError({kInput, "missing", "golden input 'input'"});
}

TEST_F(BadGoldenTest, MissingOutputFile) {
  fs::remove(dir_ / kOutput);
  ExpectError({kOutput, "missing", "golden output 'logits'"});
}

TEST_F(BadGoldenTest, GarbageInputFile) {
  testing::WriteFile(dir_ / kInput, std::string(1000, '\xff'));
  ExpectError({kInput, "unreadable golden input 'input'"});
}

TEST_F(BadGoldenTest, TooManyInputFiles) {
  manifest_.golden[0].inputs.push_back("golden/heldout/input_1.pb");
  ExpectError(
      {"golden set 'heldout'", "expected 1 input file(s), one per model input (input)", "found 2"});
}

TEST_F(BadGoldenTest, NoOutputFiles) {
  manifest_.golden[0].outputs.clear();
  ExpectError({"golden set 'heldout'", "expected 1 output file(s), one per model output (logits)",
               "found 0"});
}

TEST_F(BadGoldenTest, LabelsOfWrongLength) {
  nlohmann::json labels = {{"heldout", std::vector<int>(359, 1)}};
  testing::WriteFile(dir_ / "golden/labels.json", labels.dump());
  ExpectError({"golden/labels.json: heldout: expected 360 labels", "found 359"});
}

TEST_F(BadGoldenTest, LabelsOfWrongType) {
  nlohmann::json values = std::vector<int>(360, 1);
  values[7] = "seven";
  testing::WriteFile(dir_ / "golden/labels.json", nlohmann::json{{"heldout", values}}.dump());
  ExpectError(
      {"golden/labels.json: heldout[7]: expected a class index (integer >= 0) or null, "
       "found \"seven\""});
}

TEST_F(BadGoldenTest, LabelOutOfRange) {
  std::vector<int> values(360, 1);
  values[3] = 10;
  testing::WriteFile(dir_ / "golden/labels.json", nlohmann::json{{"heldout", values}}.dump());
  ExpectError({"golden/labels.json: heldout[3]: expected a class index below 10", "found 10"});
}

TEST_F(BadGoldenTest, LabelsNotAnObject) {
  testing::WriteFile(dir_ / "golden/labels.json", "[1, 2, 3]");
  ExpectError({"golden/labels.json: expected an object", "found array"});
}

TEST_F(BadGoldenTest, LabelsNotJson) {
  testing::WriteFile(dir_ / "golden/labels.json", "{\"heldout\": [1, 2,");
  ExpectError({"golden/labels.json: not JSON"});
}

TEST_F(BadGoldenTest, LabelsForAnUnknownSet) {
  testing::WriteFile(dir_ / "golden/labels.json",
                     nlohmann::json{{"heldout", std::vector<int>(360, 1)}, {"typo", {1}}}.dump());
  ExpectError({"golden/labels.json: \"typo\": expected the name of a golden set"});
}

TEST_F(BadGoldenTest, OversizedLabelsAreRefused) {
  testing::WriteFile(dir_ / "golden/labels.json", std::string((16u << 20) + 1, ' '));
  auto report = RunParity(*session_, manifest_, dir_);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ErrorCode::kLimit) << report.error().message;
  EXPECT_TRUE(Has(report.error().message, "golden/labels.json: 16777217 bytes"));
}

TEST_F(BadGoldenTest, UnlabeledSamplesAreLeftOut) {
  // null marks a sample without ground truth: it counts for agreement, not for accuracy.
  auto labels = nlohmann::json::parse(testing::ReadFile(dir_ / "golden/labels.json"));
  for (int i = 0; i < 60; ++i) labels["heldout"][i] = nullptr;
  testing::WriteFile(dir_ / "golden/labels.json", labels.dump());
  auto report = RunParity(*session_, manifest_, dir_);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->sets.at(0).labeled, 300u);
  EXPECT_EQ(report->sets.at(0).samples, 360u);
  EXPECT_TRUE(report->pass);
}

}  // namespace
}  // namespace edgefleet::runtime
