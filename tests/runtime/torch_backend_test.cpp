// The torch backend plugin (runtime/torch) through the real plugin loader, on TorchScript
// MobileNetV2 and ResNet-18 that tests/data/make_torchscript.py traced, froze and ran in python
// at build time: outputs match python's within tolerance, concurrent runs match a single run,
// and models or manifests the plugin cannot serve are refused with a reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "runtime/plugin_backend.hpp"
#include "tests/support/logits.hpp"
#include "tests/support/opencv_plugin.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path kModels = EDGEFLEET_TORCHSCRIPT_DIR;

// Python's frozen module and this plugin run the same libtorch kernels; the tolerance only
// covers a different thread count's summation order.
constexpr double kAtol = 1e-4;
constexpr double kRtol = 1e-3;

std::unique_ptr<Backend> MakeBackend() {
  auto backend = testing::LoadBuiltPlugin("torch");
  EXPECT_TRUE(backend) << backend.error().message;
  return backend ? std::move(backend).value() : nullptr;
}

// The variant a bundle would declare for one of the generated models.
manifests::Variant TorchVariant(const std::string& model) {
  manifests::Variant v;
  v.id = model + "-torchscript";
  v.file = "model/" + model + ".pt";
  v.format = "torchscript";
  v.opset = 1;
  v.inputs = {{"input", "float32", {-1, 3, 224, 224}}};
  v.outputs = {{"logits", "float32", {-1, 1000}}};
  return v;
}

Tensor Golden(const std::string& model, const std::string& file) {
  auto t = ReadTensorProto(kModels / model / "golden" / file);
  EXPECT_TRUE(t) << t.error().message;
  return t ? *t : Tensor{};
}

std::unique_ptr<Session> Load(Backend& backend, const std::string& model,
                              SessionOptions options = {}) {
  auto session = backend.Load(kModels / model / "model.pt", TorchVariant(model), options);
  EXPECT_TRUE(session) << session.error().message;
  return session ? std::move(session).value() : nullptr;
}

void ExpectClose(const Tensor& got, const Tensor& expected) {
  testing::ExpectLogitsClose(got, expected, kAtol, kRtol);
}

TEST(TorchBackend, DescribesItselfAsLibtorchForTorchScriptOnCpu) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  const auto& caps = backend->capabilities();
  EXPECT_EQ(caps.name, "torch");
  EXPECT_EQ(caps.version.major, 1U);
  EXPECT_EQ(caps.version.minor, 13U);
  EXPECT_NE(caps.engine.find("libtorch " + caps.version.ToString()), std::string::npos)
      << caps.engine;
  EXPECT_EQ(caps.formats, std::vector<std::string>{"torchscript"});
  EXPECT_EQ(caps.targets, std::vector<std::string>{"cpu"});
}

class TorchModels : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchModels, MatchPythonWithinTolerance) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  for (const int threads : {1, 2}) {
    SessionOptions options;
    options.threads = threads;
    auto session = Load(*backend, GetParam(), options);
    ASSERT_TRUE(session);
    auto out = session->Run({Golden(GetParam(), "input_0.pb")});
    ASSERT_TRUE(out) << out.error().message;
    ASSERT_EQ(out->size(), 1U);
    EXPECT_EQ((*out)[0].name, "logits");
    SCOPED_TRACE("threads " + std::to_string(threads));
    ExpectClose((*out)[0], Golden(GetParam(), "output_0.pb"));
  }
}

INSTANTIATE_TEST_SUITE_P(MobileNetV2AndResNet18, TorchModels,
                         ::testing::Values("mobilenet_v2", "resnet18"));

// Concurrent forward() on one Module is what the plugin relies on instead of a pool: four
// threads running at once must each get what a run alone gets.
TEST(TorchBackend, ConcurrentRunsGiveTheSingleRunResult) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  SessionOptions options;
  options.parallel_runs = 4;
  auto session = Load(*backend, "resnet18", options);
  ASSERT_TRUE(session);
  const Tensor input = Golden("resnet18", "input_0.pb");
  const auto alone = session->Run({input});
  ASSERT_TRUE(alone) << alone.error().message;
  std::vector<std::vector<float>> results(4);
  std::vector<std::string> errors(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) {
        auto out = session->Run({input});
        if (!out) {
          errors[t] = out.error().message;
          return;
        }
        const auto v = (*out)[0].As<float>();
        if (i == 0) results[t].assign(v.begin(), v.end());
        if (!std::equal(v.begin(), v.end(), results[t].begin())) errors[t] = "runs differ";
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto expected = (*alone)[0].As<float>();
  for (std::size_t t = 0; t < 4; ++t) {
    EXPECT_EQ(errors[t], "") << "thread " << t;
    ASSERT_EQ(results[t].size(), expected.size());
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), results[t].begin())) << t;
  }
}

TEST(TorchBackend, AFileThatIsNotTorchScriptIsRefusedAtLoad) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  testing::TempDir tmp;
  const fs::path bogus = tmp.path() / "model.pt";
  testing::WriteFile(bogus, "not a zip archive");
  auto session = backend->Load(bogus, TorchVariant("bogus"), {});
  ASSERT_FALSE(session);
  EXPECT_EQ(session.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(session.error().message.find(bogus.string()), std::string::npos)
      << session.error().message;

  auto missing = backend->Load(tmp.path() / "absent.pt", TorchVariant("absent"), {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kIo) << missing.error().message;
}

// The plugin claims the aten operators its models proved, and its load checks the graph again:
// a module calling another one (aten::cumsum) is refused naming the operator and the node.
TEST(TorchBackend, AModuleCallingAnOperatorOutsideTheTableIsRefusedNamingIt) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  const auto& ops = backend->capabilities().operators;
  const auto claims = [&](const std::string& op) {
    return std::any_of(ops.begin(), ops.end(),
                       [&](const auto& o) { return o.domain == "aten" && o.op == op; });
  };
  EXPECT_TRUE(claims("_convolution") && claims("linear") && claims("hardtanh_"));
  EXPECT_FALSE(claims("cumsum"));
  manifests::Variant v = TorchVariant("cumsum");
  v.inputs = {{"input", "float32", {-1, 1, 8, 8}}};
  v.outputs = {{"output", "float32", {-1, 64}}};
  const fs::path file = fs::path(EDGEFLEET_TEST_DATA_DIR) / "torchscript/cumsum.pt";
  auto session = backend->Load(file, v, {});
  ASSERT_FALSE(session);
  EXPECT_EQ(session.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(session.error().message.find("operator aten:cumsum is not in the torch backend's "
                                         "measured table (node: "),
            std::string::npos)
      << session.error().message;
  EXPECT_NE(session.error().message.find("aten::cumsum("), std::string::npos)
      << session.error().message;
  // The digits module, from the same script, calls only claimed operators.
  manifests::Variant digits = TorchVariant("digits");
  digits.inputs = {{"input", "float32", {-1, 1, 8, 8}}};
  digits.outputs = {{"logits", "float32", {-1, 10}}};
  auto ok = backend->Load(fs::path(EDGEFLEET_TEST_DATA_DIR) / "torchscript/digits.pt", digits, {});
  EXPECT_TRUE(ok) << ok.error().message;
}

TEST(TorchBackend, AManifestDeclaringOtherInputsThanForwardTakesIsRefusedAtLoad) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  auto variant = TorchVariant("mobilenet_v2");
  variant.inputs.push_back({"mask", "float32", {-1, 1}});
  auto session = backend->Load(kModels / "mobilenet_v2" / "model.pt", variant, {});
  ASSERT_FALSE(session);
  EXPECT_EQ(session.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(session.error().message.find("forward() takes 1 input(s), the manifest declares 2"),
            std::string::npos)
      << session.error().message;
}

TEST(TorchBackend, AManifestDeclaringMoreOutputsThanForwardReturnsFailsTheRun) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  auto variant = TorchVariant("mobilenet_v2");
  variant.outputs.push_back({"features", "float32", {-1, 1280}});
  auto session = backend->Load(kModels / "mobilenet_v2" / "model.pt", variant, {});
  ASSERT_TRUE(session) << session.error().message;
  auto out = (*session)->Run({Golden("mobilenet_v2", "input_0.pb")});
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message.find("forward() returned 1 tensor(s), the manifest declares 2"),
            std::string::npos)
      << out.error().message;
}

TEST(TorchBackend, ARunWithTheWrongShapeFailsWithLibtorchsReason) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  auto variant = TorchVariant("resnet18");
  variant.inputs[0].shape = {-1, -1, -1, -1};  // lets a 1-channel image through to libtorch
  auto session = backend->Load(kModels / "resnet18" / "model.pt", variant, {});
  ASSERT_TRUE(session) << session.error().message;
  std::vector<float> gray(1 * 1 * 32 * 32, 0.5F);
  auto out = (*session)->Run({*Tensor::FromFloats("input", {1, 1, 32, 32}, gray)});
  ASSERT_FALSE(out);
  // libtorch's reason first, then the TorchScript line that raised it.
  EXPECT_NE(out.error().message.find("torch: RuntimeError: Given groups=1, weight of size"),
            std::string::npos)
      << out.error().message;
  EXPECT_NE(out.error().message.find("to have 3 channels, but got 1 channels instead (in "
                                     "TorchScript: input = torch._convolution("),
            std::string::npos)
      << out.error().message;
  // The session survives a failed run.
  auto again = (*session)->Run({Golden("resnet18", "input_0.pb")});
  EXPECT_TRUE(again) << again.error().message;
}

}  // namespace
}  // namespace edgefleet::runtime
