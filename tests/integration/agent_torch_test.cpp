// End-to-end: TorchScript models served by the real agent through the build's `torch` backend
// plugin (issue 12, item 2). Bundles of MobileNetV2 and ResNet-18 with only a torchscript
// variant, made by the real CLI from the models and golden data tests/data/make_torchscript.py
// wrote into the build tree, must install (the agent's load + golden parity, no ONNX check for
// this format), show the backend in status and answer JSON infer requests with python's logits.
#include "tests/integration/agent_fixture.hpp"
#include "tests/integration/golden_bundle.hpp"

namespace edgefleet {
namespace {

const fs::path kModels = EDGEFLEET_TORCHSCRIPT_DIR;

// Python and the plugin run the same libtorch kernels; this covers summation order only.
constexpr double kAtol = 1e-4;
constexpr double kRtol = 1e-3;

class AgentTorch : public AgentE2E {
 protected:
  static testing::GoldenModel Model(const std::string& model) {
    return {kModels / model, "model.pt"};
  }
  // A bundle whose only variant is `model`'s TorchScript file, served by torch 1.x.
  Bundle MakeTorchBundle(const std::string& model, const std::string& name) {
    const json input = {{"name", "input"}, {"dtype", "float32"}, {"shape", {-1, 3, 224, 224}}};
    const json logits = {{"name", "logits"}, {"dtype", "float32"}, {"shape", {-1, 1000}}};
    const json variant = {
        {"id", "torchscript"}, {"format", "torchscript"},
        {"opset", 1},          {"backends", {{{"name", "torch"}, {"version", ">=1.13.0 <2.0.0"}}}},
        {"inputs", {input}},   {"outputs", {logits}}};
    return testing::MakeGoldenBundle(fleet_, tmp_.path(), Model(model), name, variant, kAtol,
                                     kRtol);
  }
  void ExpectServedLikePython(const std::string& model, const std::string& name) {
    testing::ExpectAgentServesGolden(port_, name, Model(model), kAtol, kRtol);
  }
};

TEST_F(AgentTorch, MobileNetV2AndResNet18InstallPassParityAndServeThroughTorch) {
  WriteConfig({}, {{"backends", {"torch", "opencv"}}});
  const std::vector<std::pair<std::string, std::string>> models = {{"mobilenet_v2", "mobilenetv2"},
                                                                   {"resnet18", "resnet18"}};
  for (const auto& [model, name] : models) {
    const Bundle bundle = MakeTorchBundle(model, name);
    const auto installed = Install(bundle.path, seconds(240));
    ASSERT_EQ(installed.exit_code, 0) << model << "\n" << installed.out << installed.err;
    // Installed through the agent's own parity run on both golden rows.
    const std::string log = installed.out + installed.err;
    EXPECT_NE(log.find("pass=true samples=2 top1=1"), std::string::npos) << log;
  }

  StartAgent();
  EXPECT_NE(LogText().find("event=backend_loaded name=torch"), std::string::npos) << LogText();
  const json status = Status();
  ASSERT_TRUE(status.contains("backends")) << status.dump();
  bool listed = false;
  for (const auto& b : status["backends"]) {
    if (b.value("name", "") != "torch") continue;
    listed = true;
    EXPECT_EQ(b["formats"], json({"torchscript"}));
    EXPECT_EQ(b["devices"], json({"cpu"}));
    EXPECT_NE(b.value("engine", "").find("libtorch"), std::string::npos) << b.dump();
  }
  EXPECT_TRUE(listed) << status.dump();

  for (const auto& [model, name] : models) {
    SCOPED_TRACE(model);
    ASSERT_NO_FATAL_FAILURE(ExpectServedLikePython(model, name));
  }
  StopAgent();
}

// `bundle create` lists a TorchScript file's operators from its code; a box whose torch backend
// does not claim one (aten::cumsum) refuses the bundle before downloading a byte, naming it.
TEST_F(AgentTorch, AnOperatorOutsideTheTableIsRefusedBeforeDownloadByName) {
  WriteConfig({}, {{"backends", {"torch"}}});
  StartAgent();
  const fs::path dir = tmp_ / "cumsum";
  fs::create_directories(dir / "golden");
  fs::copy_file(fs::path(EDGEFLEET_TEST_DATA_DIR) / "torchscript/cumsum.pt", dir / "model.pt");
  // Golden files of the right shapes; never read, the bundle is refused before download.
  const std::vector<float> in(64, 0.0F), out(64, 0.0F);
  testing::WriteFile(
      dir / "golden/input_0.pb",
      *runtime::SerializeTensorProto(*runtime::Tensor::FromFloats("input", {1, 1, 8, 8}, in)));
  testing::WriteFile(
      dir / "golden/output_0.pb",
      *runtime::SerializeTensorProto(*runtime::Tensor::FromFloats("output", {1, 64}, out)));
  const json variant = {
      {"id", "torchscript"},
      {"backends", {{{"name", "torch"}, {"version", ">=1.13.0 <2.0.0"}}}},
      {"inputs", {{{"name", "input"}, {"dtype", "float32"}, {"shape", {-1, 1, 8, 8}}}}},
      {"outputs", {{{"name", "output"}, {"dtype", "float32"}, {"shape", {-1, 64}}}}}};
  const Bundle bundle = testing::MakeGoldenBundle(fleet_, tmp_.path(), {dir, "model.pt"},
                                                  "running-sum", variant, kAtol, kRtol);
  server_.Add("/running-sum.efb", bundle.bytes);
  Deploy({testing::DesiredModel(bundle, server_.Url("/running-sum.efb"))});
  const std::string line = AwaitDesiredModelLine("running-sum");
  EXPECT_NE(line.find("result=refused"), std::string::npos) << line;
  EXPECT_NE(line.find("operator aten:cumsum is not supported by torch"), std::string::npos) << line;
  EXPECT_EQ(server_.BytesSent("/running-sum.efb"), 0U) << "downloaded before refusing";
  StopAgent();
}

}  // namespace
}  // namespace edgefleet
