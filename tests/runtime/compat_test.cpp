// Compatibility: every reason a variant cannot run (before download), the variant choice over
// backends in preference order, libonnx inspection of real and hostile files, and the graph
// check after download, including the acceptance case: a MobileNetV2-style block exported at
// opset 13 (ReLU6 as a 3-input Clip) is refused before loading, naming the node and op, while the
// opset-10 export passes the check, loads and runs on the opencv backend.
#include "runtime/compat.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "tests/support/opencv_plugin.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(EDGEFLEET_TEST_DATA_DIR);
const fs::path kDigitsOp10 = kData / "digits/v1/model/digits_op10.onnx";
const fs::path kDigitsOp13 = kData / "digits/v1/model/digits_op13.onnx";
const fs::path kBlockOp10 = kData / "onnx/mobilenet_block_op10.onnx";
const fs::path kBlockOp13 = kData / "onnx/mobilenet_block_op13.onnx";

manifests::VersionRange Range(const char* text) {
  auto range = manifests::VersionRange::Parse(text);
  EXPECT_TRUE(range) << text;
  return *range;
}

BackendCapabilities FakeOpenCv() {
  BackendCapabilities caps;
  caps.name = "opencv";
  caps.version = *manifests::SemVer::Parse("4.6.0");
  caps.formats = {"onnx"};
  caps.min_opset = 7;
  caps.max_opset = 17;
  caps.operators = {{"", "Conv", 1, 17},           {"", "Relu", 6, 13},
                    {"", "MaxPool", 8, 12},        {"", "Flatten", 1, 17},
                    {"", "Gemm", 9, 17},           {"", "Clip", 6, 10},
                    {"ai.onnx", "Add", 7, 12},     {"", "GlobalAveragePool", 1, 17},
                    {"com.example", "Fancy", 1, 1}};
  caps.targets = {"cpu"};
  return caps;
}

manifests::Variant DigitsVariant(int opset) {
  manifests::Variant v;
  v.id = "onnx-op" + std::to_string(opset);
  v.file = "model/digits_op" + std::to_string(opset) + ".onnx";
  v.format = "onnx";
  v.opset = opset;
  v.operators = {"Conv", "Flatten", "Gemm", "MaxPool", "Relu"};
  v.backends = {{"opencv", Range(">=4.5.0 <5.0.0")}};
  v.inputs = {{"input", "float32", {-1, 1, 8, 8}}};
  v.outputs = {{"logits", "float32", {-1, 10}}};
  return v;
}

manifests::Variant BlockVariant(int opset) {
  manifests::Variant v;
  v.id = "onnx-op" + std::to_string(opset);
  v.file = "model/mobilenet_block_op" + std::to_string(opset) + ".onnx";
  v.format = "onnx";
  v.opset = opset;
  v.operators = {"Add", "Clip", "Conv", "Flatten", "Gemm", "GlobalAveragePool"};
  if (opset >= 13) v.operators.push_back("Constant");
  v.backends = {{"opencv", Range(">=4.5.0 <5.0.0")}};
  v.inputs = {{"input", "float32", {-1, 3, 16, 16}}};
  v.outputs = {{"logits", "float32", {-1, 10}}};
  return v;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

// A Backend for ChooseVariant: only its capabilities matter.
class FakeBackend final : public Backend {
 public:
  explicit FakeBackend(BackendCapabilities caps) : caps_(std::move(caps)) {}
  const BackendCapabilities& capabilities() const override { return caps_; }
  Result<std::unique_ptr<Session>> Load(const fs::path&, const manifests::Variant&,
                                        const SessionOptions&) override {
    return Fail(ErrorCode::kUnsupported, "fake");
  }

 private:
  BackendCapabilities caps_;
};

// ---------------------------------------------------------------- before download

TEST(Compat, SupportsChecksDomainOpAndOpsetRange) {
  const auto caps = FakeOpenCv();
  EXPECT_TRUE(caps.Supports("", "Clip", 6));
  EXPECT_TRUE(caps.Supports("ai.onnx", "Clip", 10));
  EXPECT_FALSE(caps.Supports("", "Clip", 11));
  EXPECT_FALSE(caps.Supports("", "Clip", 5));
  EXPECT_TRUE(caps.Supports("", "Add", 7));  // claimed as "ai.onnx", asked as ""
  EXPECT_FALSE(caps.Supports("com.example", "Conv", 10));
  EXPECT_TRUE(caps.Supports("com.example", "Fancy", 1));
  EXPECT_FALSE(caps.Supports("", "Softmax", 10));
}

TEST(Compat, RunnableVariantHasNoProblems) {
  EXPECT_TRUE(CompatibilityProblems(DigitsVariant(10), FakeOpenCv()).empty());
  EXPECT_TRUE(CompatibilityProblems(BlockVariant(10), FakeOpenCv()).empty());
}

TEST(Compat, WrongFormat) {
  auto v = DigitsVariant(10);
  v.format = "tflite";
  const auto problems = CompatibilityProblems(v, FakeOpenCv());
  ASSERT_EQ(problems.size(), 1u) << Joined(problems);
  EXPECT_EQ(problems[0], "format 'tflite' is not one opencv 4.6.0 reads (onnx)");
}

TEST(Compat, BackendNotNamed) {
  auto v = DigitsVariant(10);
  v.backends = {{"torchscript", Range("*")}, {"tflite", Range(">=2")}};
  const auto problems = CompatibilityProblems(v, FakeOpenCv());
  ASSERT_EQ(problems.size(), 1u) << Joined(problems);
  EXPECT_EQ(problems[0],
            "the variant does not name backend 'opencv' (it names: torchscript, tflite)");
}

TEST(Compat, BackendVersionOutsideEveryRange) {
  auto v = DigitsVariant(10);
  v.backends = {{"opencv", Range(">=4.7.0")}, {"opencv", Range("<4.6.0")}};
  const auto problems = CompatibilityProblems(v, FakeOpenCv());
  ASSERT_EQ(problems.size(), 1u) << Joined(problems);
  EXPECT_EQ(problems[0],
            "opencv 4.6.0 is outside the required version range '>=4.7.0' or '<4.6.0'");
  // Any one matching requirement suffices.
  v.backends.push_back({"opencv", Range(">=4.6.0 <4.7.0")});
  EXPECT_TRUE(CompatibilityProblems(v, FakeOpenCv()).empty());
}

TEST(Compat, OpsetOutsideBackendRange) {
  auto v = DigitsVariant(10);
  v.opset = 18;
  v.operators = {"Conv", "Flatten"};
  const auto problems = CompatibilityProblems(v, FakeOpenCv());
  ASSERT_EQ(problems.size(), 3u) << Joined(problems);
  EXPECT_EQ(problems[0], "opset 18 is outside the opsets opencv 4.6.0 imports (7-17)");
  EXPECT_EQ(problems[1],
            "operator Conv at opset 18 is not supported by opencv 4.6.0 (claimed: opsets 1-17)");
}

TEST(Compat, EachUnclaimedOperatorIsAReason) {
  const auto problems = CompatibilityProblems(BlockVariant(13), FakeOpenCv());
  ASSERT_EQ(problems.size(), 3u) << Joined(problems);
  EXPECT_EQ(problems[0],
            "operator Add at opset 13 is not supported by opencv 4.6.0 (claimed: opsets 7-12)");
  EXPECT_EQ(problems[1],
            "operator Clip at opset 13 is not supported by opencv 4.6.0 (claimed: opsets 6-10)");
  EXPECT_EQ(problems[2],
            "operator Constant at opset 13 is not supported by opencv 4.6.0 (not claimed at any "
            "opset)");
}

TEST(Compat, OtherDomainsAreJudgedWithoutTheirOpset) {
  auto v = DigitsVariant(10);
  v.operators = {"Conv", "com.example:Fancy", "com.example:Unknown"};
  const auto problems = CompatibilityProblems(v, FakeOpenCv());
  ASSERT_EQ(problems.size(), 1u) << Joined(problems);
  EXPECT_EQ(problems[0],
            "operator com.example:Unknown is not supported by opencv 4.6.0 (not claimed at any "
            "opset)");
}

TEST(Compat, EveryReasonAtOnce) {
  auto v = BlockVariant(13);
  v.format = "torchscript";
  v.backends = {{"opencv", Range(">=5")}};
  v.opset = 5;
  const auto problems = CompatibilityProblems(v, FakeOpenCv());
  const auto text = Joined(problems);
  EXPECT_TRUE(Contains(text, "format 'torchscript'")) << text;
  EXPECT_TRUE(Contains(text, "outside the required version range '>=5'")) << text;
  EXPECT_TRUE(Contains(text, "opset 5 is outside the opsets")) << text;
  EXPECT_TRUE(Contains(text, "operator Clip at opset 5 is not supported")) << text;
  EXPECT_TRUE(Contains(text, "operator Add at opset 5 is not supported")) << text;
}

TEST(Compat, ChooseVariantFollowsManifestOrderForTheMostPreferredBackend) {
  FakeBackend opencv(FakeOpenCv());
  auto other_caps = FakeOpenCv();
  other_caps.name = "other";
  FakeBackend other(other_caps);
  const std::vector<manifests::Variant> variants = {BlockVariant(13), DigitsVariant(13),
                                                    DigitsVariant(10)};
  auto choice = ChooseVariant(variants, {&opencv, &other});
  ASSERT_TRUE(choice) << choice.error().message;
  // The op13 block fails on Clip and the op13 digits on MaxPool (claimed 8-12): the first
  // runnable variant on the preferred backend wins, although `other` could run it too.
  EXPECT_EQ(choice->variant_index, 2u);
  EXPECT_EQ(choice->backend, &opencv);
}

TEST(Compat, ChooseVariantFallsBackToTheNextBackend) {
  auto narrow = FakeOpenCv();
  narrow.operators = {{"", "Conv", 1, 10}};
  FakeBackend opencv(narrow);
  auto wide_caps = FakeOpenCv();
  wide_caps.name = "other";
  FakeBackend other(wide_caps);
  auto v = DigitsVariant(10);
  v.backends.push_back({"other", Range("*")});
  auto choice = ChooseVariant({v}, {&opencv, &other});
  ASSERT_TRUE(choice) << choice.error().message;
  EXPECT_EQ(choice->variant_index, 0u);
  EXPECT_EQ(choice->backend, &other);
}

TEST(Compat, ChooseVariantListsEveryReasonPerVariantAndBackend) {
  FakeBackend opencv(FakeOpenCv());
  auto other_caps = FakeOpenCv();
  other_caps.name = "other";
  other_caps.version = *manifests::SemVer::Parse("1.0.0");
  FakeBackend other(other_caps);
  auto a = BlockVariant(13);
  auto b = DigitsVariant(10);
  b.format = "tflite";
  auto choice = ChooseVariant({a, b}, {&opencv, &other});
  ASSERT_FALSE(choice);
  EXPECT_EQ(choice.error().code, ErrorCode::kUnsupported);
  const auto& m = choice.error().message;
  EXPECT_TRUE(Contains(m, "variant 'onnx-op13' on opencv 4.6.0: operator Clip at opset 13")) << m;
  EXPECT_TRUE(Contains(m, "variant 'onnx-op10' on opencv 4.6.0: format 'tflite'")) << m;
  EXPECT_TRUE(Contains(m,
                       "variant 'onnx-op13' on other 1.0.0: the variant does not name backend "
                       "'other' (it names: opencv)"))
      << m;
  EXPECT_TRUE(Contains(m, "variant 'onnx-op10' on other 1.0.0: format 'tflite'")) << m;
  // One line each: a on opencv 3 (Add, Clip, Constant), b on opencv 1, a on other 1 + 3,
  // b on other 2; after the heading line.
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 3 + 1 + 4 + 2) << m;
}

TEST(Compat, ChooseVariantWithNothingToChooseFrom) {
  FakeBackend opencv(FakeOpenCv());
  EXPECT_EQ(ChooseVariant({}, {&opencv}).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ChooseVariant({DigitsVariant(10)}, {}).error().code, ErrorCode::kUnsupported);
}

// ---------------------------------------------------------------- InspectOnnx

TEST(Compat, InspectsTheDigitsModels) {
  for (const auto& [file, opset] : {std::pair{kDigitsOp10, 10}, std::pair{kDigitsOp13, 13}}) {
    auto graph = InspectOnnx(file);
    ASSERT_TRUE(graph) << graph.error().message;
    EXPECT_GE(graph->ir_version, 5);
    ASSERT_EQ(graph->opset_imports.size(), 1u);
    EXPECT_EQ(graph->opset_imports.at(""), opset);
    std::vector<std::string> ops;
    for (const auto& node : graph->nodes) {
      EXPECT_EQ(node.domain, "");
      ops.push_back(node.op_type);
    }
    EXPECT_EQ(ops, (std::vector<std::string>{"Conv", "Relu", "Conv", "Relu", "MaxPool", "Flatten",
                                             "Gemm"}));
    EXPECT_EQ(graph->nodes[0].input_count, 3u);  // x, W, B
    ASSERT_EQ(graph->inputs.size(), 1u);         // weights are initializers, not inputs
    EXPECT_EQ(graph->inputs[0].name, "input");
    EXPECT_EQ(graph->inputs[0].dtype, DType::kFloat32);
    EXPECT_EQ(graph->inputs[0].shape, (std::vector<std::int64_t>{-1, 1, 8, 8}));
    ASSERT_EQ(graph->outputs.size(), 1u);
    EXPECT_EQ(graph->outputs[0].name, "logits");
    EXPECT_EQ(graph->outputs[0].shape, (std::vector<std::int64_t>{-1, 10}));
  }
}

TEST(Compat, InspectsTheMobileNetBlocks) {
  auto op10 = InspectOnnx(kBlockOp10);
  ASSERT_TRUE(op10) << op10.error().message;
  auto op13 = InspectOnnx(kBlockOp13);
  ASSERT_TRUE(op13) << op13.error().message;
  auto clip_inputs = [](const GraphInfo& g) {
    std::vector<std::size_t> counts;
    for (const auto& n : g.nodes) {
      if (n.op_type == "Clip") counts.push_back(n.input_count);
    }
    return counts;
  };
  // ReLU6: Clip with min/max attributes at opset 10, with min/max as inputs at opset 13.
  EXPECT_EQ(clip_inputs(*op10), (std::vector<std::size_t>{1, 1, 1}));
  EXPECT_EQ(clip_inputs(*op13), (std::vector<std::size_t>{3, 3, 3}));
}

class InspectHostile : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  std::string digits_ = testing::ReadFile(kDigitsOp10);
};

TEST_F(InspectHostile, MissingFile) {
  auto graph = InspectOnnx(dir_ / "nope.onnx");
  ASSERT_FALSE(graph);
  EXPECT_EQ(graph.error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(Contains(graph.error().message, "nope.onnx")) << graph.error().message;
}

TEST_F(InspectHostile, Garbage) {
  std::string garbage(4096, '\0');
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 131 + 7);
  testing::WriteFile(dir_ / "garbage.onnx", garbage);
  auto graph = InspectOnnx(dir_ / "garbage.onnx");
  ASSERT_FALSE(graph);
  EXPECT_EQ(graph.error().code, ErrorCode::kParse);
  EXPECT_TRUE(Contains(graph.error().message, "garbage.onnx: ")) << graph.error().message;
}

TEST_F(InspectHostile, EmptyFileIsNotAModel) {
  testing::WriteFile(dir_ / "empty.onnx", "");
  auto graph = InspectOnnx(dir_ / "empty.onnx");
  ASSERT_FALSE(graph);
  EXPECT_EQ(graph.error().code, ErrorCode::kParse);
  EXPECT_TRUE(Contains(graph.error().message, "empty.onnx: ONNX checker:"))
      << graph.error().message;
}

TEST_F(InspectHostile, EveryTruncationIsRefused) {
  // Cutting a model anywhere must give an error naming the file, never a crash or a graph.
  for (std::size_t cut = 1; cut < digits_.size(); cut += 97) {
    testing::WriteFile(dir_ / "cut.onnx", digits_.substr(0, cut));
    auto graph = InspectOnnx(dir_ / "cut.onnx");
    ASSERT_FALSE(graph) << "cut at " << cut;
    EXPECT_TRUE(Contains(graph.error().message, "cut.onnx: ")) << graph.error().message;
  }
}

TEST_F(InspectHostile, CheckerRefusesAnUnknownOperator) {
  // Same length, so the protobuf stays well-formed and only the checker can object.
  auto bytes = digits_;
  // NodeProto.op_type is field 4 (tag 0x22), here 7 bytes long.
  const auto at = bytes.find(std::string("\x22\x07MaxPool"));
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at + 2, 7, "MaxPoul");
  testing::WriteFile(dir_ / "unknown_op.onnx", bytes);
  auto graph = InspectOnnx(dir_ / "unknown_op.onnx");
  ASSERT_FALSE(graph);
  EXPECT_EQ(graph.error().code, ErrorCode::kParse);
  EXPECT_TRUE(Contains(graph.error().message, "unknown_op.onnx: ONNX checker:"))
      << graph.error().message;
  EXPECT_TRUE(Contains(graph.error().message, "MaxPoul")) << graph.error().message;
}

// ---------------------------------------------------------------- CheckGraph

class CheckDigits : public ::testing::Test {
 protected:
  void SetUp() override {
    auto graph = InspectOnnx(kDigitsOp10);
    ASSERT_TRUE(graph) << graph.error().message;
    graph_ = *graph;
  }
  Status Check(const manifests::Variant& v) {
    return CheckGraph(graph_, v, FakeOpenCv(), "digits");
  }
  GraphInfo graph_;
};

TEST_F(CheckDigits, AgreesWithItsManifest) {
  auto status = Check(DigitsVariant(10));
  EXPECT_TRUE(status) << status.error().message;
}

TEST_F(CheckDigits, OperatorMissingFromTheManifest) {
  auto v = DigitsVariant(10);
  v.operators = {"Conv", "Flatten", "Gemm", "Relu"};
  auto status = Check(v);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "digits: node '/pool/MaxPool' (#4) uses operator MaxPool, which the manifest's "
            "operator list does not declare")
      << status.error().message;
}

TEST_F(CheckDigits, OperatorTheGraphDoesNotUse) {
  auto v = DigitsVariant(10);
  v.operators.push_back("Softmax");
  auto status = Check(v);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "digits: the manifest declares operator Softmax but no node uses it");
}

TEST_F(CheckDigits, WrongOpset) {
  auto v = DigitsVariant(10);
  v.opset = 13;
  auto status = Check(v);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "digits: the graph imports ai.onnx opset 10, the manifest declares opset 13");
}

TEST_F(CheckDigits, WrongInputNameDtypeAndShape) {
  auto v = DigitsVariant(10);
  v.inputs[0].name = "image";
  v.outputs[0].dtype = "float16";
  v.outputs[0].shape = {-1, 11};
  auto status = Check(v);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(status.error().message,
            "digits: the manifest declares input 'image' but the graph has no such input\n"
            "digits: the graph has input 'input' that the manifest does not declare\n"
            "digits: output 'logits': the manifest declares dtype float16, the graph has float32\n"
            "digits: output 'logits': the manifest declares shape [-1,11], the graph has [-1,10]");
}

TEST_F(CheckDigits, ManifestMayNarrowADynamicDimension) {
  auto v = DigitsVariant(10);
  v.inputs[0].shape = {1, 1, 8, 8};
  auto status = Check(v);
  EXPECT_TRUE(status) << status.error().message;
}

TEST_F(CheckDigits, UnclaimedOperatorNamesEveryNode) {
  auto caps = FakeOpenCv();
  caps.operators.erase(caps.operators.begin() + 1);  // Relu
  auto status = CheckGraph(graph_, DigitsVariant(10), caps, "digits 1.0.0");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(status.error().message,
            "digits 1.0.0: node '/Relu' (#1): Relu at opset 10 is not supported by opencv "
            "4.6.0 (not claimed at any opset)\n"
            "digits 1.0.0: node '/Relu_1' (#3): Relu at opset 10 is not supported by opencv "
            "4.6.0 (not claimed at any opset)");
}

TEST_F(CheckDigits, UnnamedNodesAreNamedByIndex) {
  for (auto& node : graph_.nodes) node.name.clear();
  auto caps = FakeOpenCv();
  caps.operators[3].max_opset = 9;  // Flatten
  auto status = CheckGraph(graph_, DigitsVariant(10), caps, "digits");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message,
            "digits: node #5: Flatten at opset 10 is not supported by opencv 4.6.0 (claimed: "
            "opsets 1-9)");
}

TEST_F(CheckDigits, IntegrityOutranksUnsupported) {
  auto v = DigitsVariant(10);
  v.inputs[0].dtype = "int64";
  auto caps = FakeOpenCv();
  caps.max_opset = 9;
  auto status = CheckGraph(graph_, v, caps, "digits");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_TRUE(Contains(status.error().message, "declares dtype int64"));
  EXPECT_TRUE(Contains(status.error().message,
                       "ai.onnx opset 10 is outside the opsets opencv 4.6.0 imports (7-9)"));
}

// ---------------------------------------------------------------- the acceptance case

class MobileNetBlock : public ::testing::Test {
 protected:
  void SetUp() override {
    auto backend = testing::LoadOpenCvPlugin();
    ASSERT_TRUE(backend) << backend.error().message;
    backend_ = std::move(*backend);
  }
  std::unique_ptr<Backend> backend_;
};

TEST_F(MobileNetBlock, Opset13ThreeInputClipIsRefusedBeforeLoading) {
  auto graph = InspectOnnx(kBlockOp13);
  ASSERT_TRUE(graph) << graph.error().message;
  // The signed requirements already say no, before a byte is downloaded...
  const auto problems = CompatibilityProblems(BlockVariant(13), backend_->capabilities());
  EXPECT_TRUE(Contains(Joined(problems), "operator Clip at opset 13 is not supported by opencv"))
      << Joined(problems);
  // ...and the real graph names the node.
  auto status = CheckGraph(*graph, BlockVariant(13), backend_->capabilities(), "mobilenet_block");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kUnsupported);
  const auto& m = status.error().message;
  std::cout << "refused before loading:\n" << m << "\n";
  EXPECT_TRUE(Contains(m,
                       "mobilenet_block: node '/0/0.2/Clip' (#3): Clip at opset 13 is not "
                       "supported by opencv 4.6.0"))
      << m;
  EXPECT_TRUE(Contains(m, "node '/1/conv/conv.1/conv.1.2/Clip' (#11): Clip at opset 13")) << m;
  // OpenCV really cannot import it: the check spared a failed load, it did not invent one.
  auto session = backend_->Load(kBlockOp13, BlockVariant(13), {});
  EXPECT_FALSE(session);
}

TEST_F(MobileNetBlock, Opset10PassesTheCheckThenLoadsAndRuns) {
  auto graph = InspectOnnx(kBlockOp10);
  ASSERT_TRUE(graph) << graph.error().message;
  const auto problems = CompatibilityProblems(BlockVariant(10), backend_->capabilities());
  EXPECT_TRUE(problems.empty()) << Joined(problems);
  auto status = CheckGraph(*graph, BlockVariant(10), backend_->capabilities(), "mobilenet_block");
  ASSERT_TRUE(status) << status.error().message;

  auto session = backend_->Load(kBlockOp10, BlockVariant(10), {});
  ASSERT_TRUE(session) << session.error().message;
  auto input = ReadTensorProto(kData / "onnx/mobilenet_block/input_0.pb");
  ASSERT_TRUE(input) << input.error().message;
  auto expected = ReadTensorProto(kData / "onnx/mobilenet_block/output_0.pb");
  ASSERT_TRUE(expected) << expected.error().message;
  auto outputs = (*session)->Run({*input});
  ASSERT_TRUE(outputs) << outputs.error().message;
  ASSERT_EQ(outputs->size(), 1u);
  const auto& got = (*outputs)[0];
  EXPECT_EQ(got.shape, (std::vector<std::int64_t>{2, 10}));
  const auto g = got.As<float>();
  const auto w = expected->As<float>();
  ASSERT_EQ(g.size(), w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    EXPECT_NEAR(g[i], w[i], 1e-4 + 1e-3 * std::fabs(w[i])) << "logit " << i;
  }
}

}  // namespace
}  // namespace edgefleet::runtime
