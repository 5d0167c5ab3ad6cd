// Node forms (runtime/onnx_forms.hpp) and the verdicts built on them: the form text of real
// files, the order in which a backend's form and operator tables decide (Judge), the verdict
// before download from a variant's forms (refused, or left to the real check as unmeasured) and
// the graph check after download. The manifest's "forms" field: tests/manifests.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "manifests/manifest.hpp"
#include "runtime/compat.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(EDGEFLEET_TEST_DATA_DIR);

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string FormOfOnlyNode(const fs::path& model) {
  auto graph = InspectOnnx(model);
  EXPECT_TRUE(graph) << graph.error().message;
  if (!graph || graph->nodes.empty()) return "";
  return graph->nodes.back().form;
}

TEST(NodeForms, NameDtypeInputKindsRanksBroadcastAndAttributes) {
  // ReLU6 at opset 13: a computed [N,C,H,W] input and two constant scalars (Constant nodes).
  auto clip = InspectOnnx(kData / "onnx/node/ef_clip_relu6_op13/model.onnx");
  ASSERT_TRUE(clip) << clip.error().message;
  bool found = false;
  for (const auto& node : clip->nodes) {
    if (node.op_type != "Clip") continue;
    found = true;
    EXPECT_EQ(node.form, "f32;d4,c0,c0;b");
  }
  EXPECT_TRUE(found);
  // A Linear layer as exporters write it: computed input, weight and bias initializers.
  EXPECT_EQ(FormOfOnlyNode(kData / "onnx/node/ef_gemm_linear_op13/model.onnx"),
            "f32;d2,c2,c1;b;alpha=1,beta=1,transB=1");
  EXPECT_EQ(FormOfOnlyNode(kData / "onnx/node/ef_maxpool_2x2_op13/model.onnx"),
            "f32;d4;kernel_shape=[2,2],strides=[2,2]");
  // Two computed inputs of one shape: no broadcast flag.
  EXPECT_EQ(FormOfOnlyNode(kData / "onnx/node/ef_add_same_op13/model.onnx"), "f32;d4,d4");
}

TEST(NodeForms, KeysListEachFormOnceAndFollowTheOperatorSpelling) {
  auto graph = InspectOnnx(kData / "digits/v1/model/digits_op10.onnx");
  ASSERT_TRUE(graph) << graph.error().message;
  const auto keys = FormKeys(*graph);
  ASSERT_FALSE(keys.empty());
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(std::adjacent_find(keys.begin(), keys.end()), keys.end());
  for (const auto& key : keys) {
    EXPECT_EQ(key.back(), ')') << key;
    const std::string op = key.substr(0, key.find('('));
    const auto ops = OperatorKeys(*graph);
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << key;
  }
  EXPECT_EQ(FormKey("", "Gemm", "f32;d2"), "Gemm(f32;d2)");
  EXPECT_EQ(FormKey("com.example", "Fancy", "-;"), "com.example:Fancy(-;)");
}

BackendCapabilities Caps() {
  BackendCapabilities caps;
  caps.name = "opencv";
  caps.version = *manifests::SemVer::Parse("4.6.0");
  caps.formats = {"onnx"};
  caps.min_opset = 7;
  caps.max_opset = 17;
  caps.operators = {{"", "Conv", 1, 17}, {"", "Gemm", 7, 12}, {"", "Identity", 16, 17}};
  caps.forms = {
      {"", "Gemm", 13, 17, "f32;d2,c2,c1;b;transB=1", true, ""},
      {"", "Gemm", 13, 17, "f32;d2,d2,d2;b", false, "load-failed (test_gemm): no const B"},
      {"", "Identity", 16, 17, "f32;c1", false, "load-failed (Identity_op17): inputs.size()"},
  };
  return caps;
}

TEST(Judge, FormRowsDecideFirstThenTheOperatorTable) {
  const auto caps = Caps();
  const FormClaim* claim = nullptr;
  // Claimed whole, no row: runs.
  EXPECT_EQ(caps.Judge("", "Conv", 13, "f32;d4,c4,c1", &claim), FormVerdict::kRuns);
  EXPECT_EQ(claim, nullptr);
  // Claimed whole, but this form was measured to fail: the row wins, with its reason.
  EXPECT_EQ(caps.Judge("", "Identity", 17, "f32;c1", &claim), FormVerdict::kFails);
  ASSERT_NE(claim, nullptr);
  EXPECT_TRUE(Contains(claim->why, "inputs.size()"));
  EXPECT_EQ(caps.Judge("", "Identity", 17, "f32;d4"), FormVerdict::kRuns);
  // Not claimed whole at 13: the exporter's form runs, the conformance form fails, and a form
  // nobody measured is unknown (some form of Gemm runs there).
  EXPECT_EQ(caps.Judge("", "Gemm", 13, "f32;d2,c2,c1;b;transB=1"), FormVerdict::kRuns);
  EXPECT_EQ(caps.Judge("", "Gemm", 17, "f32;d2,d2,d2;b"), FormVerdict::kFails);
  EXPECT_EQ(caps.Judge("", "Gemm", 13, "f32;d2,c2,c1;b;transA=1"), FormVerdict::kUnknown);
  // Outside every row's opsets and the operator table: refused.
  EXPECT_EQ(caps.Judge("", "Gemm", 18, "f32;d2,c2,c1;b;transB=1"), FormVerdict::kRefused);
  EXPECT_EQ(caps.Judge("", "Clip", 13, "f32;d4,c0,c0;b"), FormVerdict::kRefused);
  EXPECT_EQ(caps.Judge("ai.onnx", "Gemm", 13, "f32;d2,c2,c1;b;transB=1"), FormVerdict::kRuns);
}

manifests::Variant GemmVariant(std::vector<std::string> forms) {
  manifests::Variant v;
  v.id = "onnx-op13";
  v.file = "model/m.onnx";
  v.format = "onnx";
  v.opset = 13;
  v.operators = {"Conv", "Gemm"};
  v.forms = std::move(forms);
  v.backends = {{"opencv", *manifests::VersionRange::Parse(">=4.5.0 <5.0.0")}};
  return v;
}

TEST(CompatForms, TheExportersFormRunsBeforeDownload) {
  const auto v = GemmVariant({"Conv(f32;d4,c4,c1)", "Gemm(f32;d2,c2,c1;b;transB=1)"});
  EXPECT_TRUE(CompatibilityProblems(v, Caps()).empty());
  EXPECT_TRUE(UnmeasuredForms(v, Caps()).empty());
}

TEST(CompatForms, AFailingFormIsRefusedWithItsReason) {
  const auto v = GemmVariant({"Conv(f32;d4,c4,c1)", "Gemm(f32;d2,d2,d2;b)"});
  const auto problems = CompatibilityProblems(v, Caps());
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_TRUE(Contains(problems[0],
                       "Gemm at opset 13 in form (f32;d2,d2,d2;b) fails on opencv "
                       "4.6.0: load-failed (test_gemm): no const B"))
      << problems[0];
}

TEST(CompatForms, AnUnmeasuredFormIsLeftToTheRealCheck) {
  const auto v = GemmVariant({"Conv(f32;d4,c4,c1)", "Gemm(f32;d2,c2,c1;b;transA=1)"});
  EXPECT_TRUE(CompatibilityProblems(v, Caps()).empty());
  EXPECT_EQ(UnmeasuredForms(v, Caps()), std::vector<std::string>{"Gemm(f32;d2,c2,c1;b;transA=1)"});
}

TEST(CompatForms, WithoutFormsTheVerdictIsByOperator) {
  const auto problems = CompatibilityProblems(GemmVariant({}), Caps());
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_TRUE(Contains(problems[0],
                       "operator Gemm at opset 13 is not supported by opencv 4.6.0 "
                       "(claimed: opsets 7-12)"))
      << problems[0];
}

TEST(CompatForms, AnOperatorRunningInNoFormIsOneLine) {
  auto v = GemmVariant({"Clip(f32;d4,c0,c0;b)", "Clip(f32;d4,-,c0;b)", "Conv(f32;d4,c4,c1)",
                        "Gemm(f32;d2,c2,c1;b;transB=1)"});
  v.operators = {"Clip", "Conv", "Gemm"};
  const auto problems = CompatibilityProblems(v, Caps());
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_TRUE(Contains(problems[0], "operator Clip at opset 13 is not supported")) << problems[0];
}

// The graph check after download compares the file's forms with the signed ones, and refuses a
// node whose form fails, naming it.
class CheckForms : public ::testing::Test {
 protected:
  void SetUp() override {
    auto graph = InspectOnnx(kData / "onnx/node/ef_gemm_linear_op13/model.onnx");
    ASSERT_TRUE(graph) << graph.error().message;
    graph_ = *graph;
    variant_.id = "gemm";
    variant_.format = "onnx";
    variant_.opset = 13;
    variant_.operators = OperatorKeys(graph_);
    variant_.forms = FormKeys(graph_);
    for (const auto& t : graph_.inputs) {
      variant_.inputs.push_back({t.name, std::string(ToString(t.dtype)), t.shape});
    }
    for (const auto& t : graph_.outputs) {
      variant_.outputs.push_back({t.name, std::string(ToString(t.dtype)), t.shape});
    }
  }
  GraphInfo graph_;
  manifests::Variant variant_;
};

TEST_F(CheckForms, TheMeasuredFormPasses) {
  auto caps = Caps();
  caps.forms[0].form = graph_.nodes[0].form;
  const auto status = CheckGraph(graph_, variant_, caps, "gemm");
  EXPECT_TRUE(status) << status.error().message;
}

TEST_F(CheckForms, AnUnmeasuredFormPassesForLoadAndParityToDecide) {
  const auto status = CheckGraph(graph_, variant_, Caps(), "gemm");
  EXPECT_TRUE(status) << status.error().message;
}

TEST_F(CheckForms, AFailingFormIsRefusedNamingTheNode) {
  auto caps = Caps();
  caps.forms[1].form = graph_.nodes[0].form;
  const auto status = CheckGraph(graph_, variant_, caps, "gemm");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kUnsupported);
  EXPECT_TRUE(Contains(status.error().message, "node #0: Gemm at opset 13 in form (" +
                                                   graph_.nodes[0].form + ") fails on opencv"))
      << status.error().message;
}

TEST_F(CheckForms, FormsThatDisagreeWithTheManifestAreAnIntegrityFailure) {
  variant_.forms = {"Gemm(f32;d2,d2,d2;b)"};
  const auto status = CheckGraph(graph_, variant_, Caps(), "gemm");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kIntegrity);
  EXPECT_TRUE(Contains(status.error().message, "which the manifest's form list does not declare"))
      << status.error().message;
  EXPECT_TRUE(Contains(status.error().message,
                       "the manifest declares form Gemm(f32;d2,d2,d2;b) but no node has it"))
      << status.error().message;
}

}  // namespace
}  // namespace edgefleet::runtime
