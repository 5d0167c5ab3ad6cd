// End-to-end: TorchScript models served by the real agent through the build's `torch` backend
// plugin (issue 12, item 2). Bundles of MobileNetV2 and ResNet-18 with only a torchscript
// variant, made by the real CLI from the models and golden data tests/data/make_torchscript.py
// wrote into the build tree, must install (the agent's load + golden parity, no ONNX check for
// this format), show the backend in status and answer JSON infer requests with python's logits.
#include <cmath>

#include "runtime/tensor.hpp"
#include "tests/integration/agent_fixture.hpp"

namespace edgefleet {
namespace {

const fs::path kModels = EDGEFLEET_TORCHSCRIPT_DIR;

// Python and the plugin run the same libtorch kernels; this covers summation order only.
constexpr double kAtol = 1e-4;
constexpr double kRtol = 1e-3;

class AgentTorch : public AgentE2E {
 protected:
  // A bundle whose only variant is `model`'s TorchScript file, served by torch 1.x.
  Bundle MakeTorchBundle(const std::string& model, const std::string& name) {
    return testing::MakeBundle(fleet_, "v1", tmp_.path(), [&](json& body, const fs::path& dir) {
      fs::remove_all(dir / "model");
      fs::remove_all(dir / "golden");
      fs::create_directories(dir / "model");
      fs::create_directories(dir / "golden" / "g");
      fs::copy_file(kModels / model / "model.pt", dir / "model" / (model + ".pt"));
      for (const std::string file : {"input_0.pb", "output_0.pb"}) {
        fs::copy_file(kModels / model / "golden" / file, dir / "golden" / "g" / file);
      }
      const json input = {{"name", "input"}, {"dtype", "float32"}, {"shape", {-1, 3, 224, 224}}};
      const json logits = {{"name", "logits"}, {"dtype", "float32"}, {"shape", {-1, 1000}}};
      body = {{"name", name},
              {"version", "1.0.0"},
              {"description", model + " (random weights) as TorchScript"},
              {"variants",
               {{{"id", "torchscript"},
                 {"file", "model/" + model + ".pt"},
                 {"format", "torchscript"},
                 {"opset", 1},
                 {"operators", json::array()},
                 {"backends", {{{"name", "torch"}, {"version", ">=1.13.0 <2.0.0"}}}},
                 {"inputs", {input}},
                 {"outputs", {logits}}}}},
              {"golden",
               {{{"name", "g"},
                 {"inputs", {"golden/g/input_0.pb"}},
                 {"outputs", {"golden/g/output_0.pb"}}}}},
              {"parity",
               {{"atol", kAtol},
                {"rtol", kRtol},
                {"min_top1_agreement", 1.0},
                {"max_latency_factor", 3.0}}},
              {"watch", testing::ShortWatch()}};
    });
  }

  // Sends golden row 0 as a JSON FP32 tensor and checks the logits against python's row 0.
  void ExpectServedLikePython(const std::string& model, const std::string& name) {
    const auto input = runtime::ReadTensorProto(kModels / model / "golden" / "input_0.pb");
    const auto output = runtime::ReadTensorProto(kModels / model / "golden" / "output_0.pb");
    ASSERT_TRUE(input && output);
    const auto x = input->As<float>().subspan(0, 3 * 224 * 224);
    const auto expected = output->As<float>().subspan(0, 1000);
    const json request = {{"inputs",
                           {{{"name", "input"},
                             {"shape", {1, 3, 224, 224}},
                             {"datatype", "FP32"},
                             {"data", std::vector<float>(x.begin(), x.end())}}}}};
    auto r = Api()->Post("/v2/models/" + name + "/infer", request.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body.substr(0, 2000);
    const json body = json::parse(r->body);
    const json& logits = body["outputs"][0];
    EXPECT_EQ(logits["name"], "logits");
    EXPECT_EQ(logits["shape"], json({1, 1000}));
    ASSERT_EQ(logits["data"].size(), expected.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const double got = logits["data"][i].get<double>();
      if (std::abs(got - expected[i]) > kAtol + kRtol * std::abs(expected[i])) ++bad;
    }
    EXPECT_EQ(bad, 0U) << name;
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

}  // namespace
}  // namespace edgefleet
