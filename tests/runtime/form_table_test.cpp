// The opencv backend's form table against the truth, on what a real exporter emits: cases cut
// from the build's ONNX zoo (tests/data/make_onnx_zoo.py, torch's exporter at opsets 10-17) with
// ONNX Runtime's outputs as reference (runtime/form_cases.hpp), run through the opencv plugin.
// A claim larger than the truth fails here: a case the operator and form tables together
// predict to run must pass, and a form they list as failing must fail. Then the verdicts on
// the zoo's whole files: every file the verdicts accept before download and after must load
// and match PyTorch on OpenCV (no false accept), and every file OpenCV runs and matches must be
// accepted (no false refusal).
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "runtime/compat.hpp"
#include "runtime/form_cases.hpp"
#include "runtime/node_cases.hpp"
#include "runtime/plugin_backend.hpp"
#include "tests/support/opencv_plugin.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path kFormZoo = EDGEFLEET_ONNX_ZOO_DIR;
const fs::path kOrtPlugin = testing::BuildBackendsDir() / "libedgefleet_backend_onnxruntime.so";

const std::vector<std::string> kZooModels = {"mobilenet_v2_op10",       "mobilenet_v2_op17",
                                             "resnet18_op10",           "resnet18_op17",
                                             "efficientnet_b0_op13",    "efficientnet_b0_op17",
                                             "shufflenet_v2_x1_0_op13", "shufflenet_v2_x1_0_op17"};

class FormTable : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opencv = testing::LoadOpenCvPlugin();
    ASSERT_TRUE(opencv) << opencv.error().message;
    opencv_ = std::move(*opencv);
    auto ort = LoadBackendPlugin(kOrtPlugin);
    ASSERT_TRUE(ort) << ort.error().message;
    ort_ = std::move(*ort);
  }
  std::unique_ptr<Backend> opencv_;
  std::unique_ptr<Backend> ort_;
};

TEST_F(FormTable, EveryCaseCutFromTheZooRunsAsTheTablesPredict) {
  const auto& caps = opencv_->capabilities();
  ASSERT_FALSE(caps.forms.empty()) << "the opencv plugin exports no form table";
  testing::TempDir cases;
  std::set<std::string> cut;
  std::size_t written = 0;
  for (const auto& model : kZooModels) {
    auto stats = WriteFormCases(kFormZoo / model / "model.onnx", cases.path(), *ort_, caps, cut);
    ASSERT_TRUE(stats) << stats.error().message;
    EXPECT_EQ(stats->reference_failed, 0U) << model;
    written += stats->written;
  }
  // Every distinct form of the zoo's float computations, not a handful.
  EXPECT_GE(written, 40U);
  auto dirs = ListNodeCases(cases.path());
  ASSERT_TRUE(dirs) << dirs.error().message;
  std::size_t predicted_to_run = 0;
  std::size_t predicted_to_fail = 0;
  for (const auto& dir : *dirs) {
    const auto result = RunNodeCase(*opencv_, dir);
    SCOPED_TRACE(result.name);
    ASSERT_NE(result.outcome, NodeCaseOutcome::kNotRun) << result.detail;
    if (ClaimsCover(caps, result)) {
      ++predicted_to_run;
      EXPECT_EQ(result.outcome, NodeCaseOutcome::kPass) << result.detail;
      continue;
    }
    // A node the form table lists as failing must fail: a stale row would refuse models the
    // engine runs.
    for (const auto& node : result.nodes) {
      if (node.name.starts_with(kCarrierPrefix)) continue;
      if (caps.Judge(node.op.domain, node.op.op, node.op.opset, node.form) == FormVerdict::kFails) {
        ++predicted_to_fail;
        EXPECT_NE(result.outcome, NodeCaseOutcome::kPass) << node.op.op << "(" << node.form << ")";
      }
    }
  }
  EXPECT_GE(predicted_to_run, 30U);
  EXPECT_GE(predicted_to_fail, 2U);  // Mul's batch broadcast, Identity of an initializer, ...
}

TEST_F(FormTable, VerdictsOnTheZooNeitherAcceptWhatOpenCvFailsNorRefuseWhatItRuns) {
  const auto& caps = opencv_->capabilities();
  const auto any = manifests::VersionRange::Parse("*");
  ASSERT_TRUE(any);
  std::size_t served = 0;
  for (const auto& model : kZooModels) {
    SCOPED_TRACE(model);
    auto graph = InspectOnnx(kFormZoo / model / "model.onnx");
    ASSERT_TRUE(graph) << graph.error().message;
    manifests::Variant v = CaseVariant(*graph, model);
    v.forms = FormKeys(*graph);
    v.backends = {{"opencv", *any}};
    const auto problems = CompatibilityProblems(v, caps);
    const bool accepted = problems.empty() && static_cast<bool>(CheckGraph(*graph, v, caps, model));
    // The truth: load and run the golden batch, as parity would after download.
    auto input = ReadTensorProto(kFormZoo / model / "golden/input_0.pb");
    auto want = ReadTensorProto(kFormZoo / model / "golden/output_0.pb");
    ASSERT_TRUE(input && want);
    input->name = "input";
    bool runs = false;
    std::string why;
    auto session = opencv_->Load(kFormZoo / model / "model.onnx", v, SessionOptions{});
    if (session) {
      auto out = (*session)->Run({*input});
      if (out) {
        why = CompareTensors(out->front(), *want, NodeCaseTolerance{1e-3, 1e-3});
        runs = why.empty();
      } else {
        why = out.error().message;
      }
    } else {
      why = session.error().message;
    }
    EXPECT_EQ(accepted, runs) << (accepted ? "false accept: " + why
                                           : "false refusal: " + (problems.empty()
                                                                      ? std::string("graph check")
                                                                      : problems.front()));
    served += accepted && runs ? 1 : 0;
  }
  // MobileNetV2 at opset 10 and ResNet-18 at 10 and 17 at least.
  EXPECT_GE(served, 3U);
}

}  // namespace
}  // namespace edgefleet::runtime
