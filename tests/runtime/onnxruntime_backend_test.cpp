// The onnxruntime backend plugin (runtime/onnxruntime) through the real plugin loader, on the
// ONNX exports tests/data/make_onnx_zoo.py made at build time (MobileNetV2 and ResNet-18 at
// opsets 10 and 17, EfficientNet-B0 and ShuffleNetV2 at 13 and 17): outputs match PyTorch's
// within tolerance with 1 and 2 threads and with the arena off, concurrent runs match a single
// run, the measured operator table holds against the conformance cases, and options, libraries
// and models it cannot use are refused with a reason.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/compat.hpp"
#include "runtime/node_cases.hpp"
#include "runtime/plugin_backend.hpp"
#include "tests/support/logits.hpp"
#include "tests/support/opencv_plugin.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path kZoo = EDGEFLEET_ONNX_ZOO_DIR;
const fs::path kPlugin = testing::BuildBackendsDir() / "libedgefleet_backend_onnxruntime.so";

// PyTorch and ONNX Runtime run different kernels (and ORT fuses batch norms and activations):
// the same tolerance the parity check of a bundle would use for a float model.
constexpr double kAtol = 1e-3;
constexpr double kRtol = 1e-3;

std::unique_ptr<Backend> MakeBackend(const std::string& options = "{}") {
  auto backend = LoadBackendPlugin(kPlugin, options);
  EXPECT_TRUE(backend) << backend.error().message;
  return backend ? std::move(backend).value() : nullptr;
}

manifests::Variant ZooVariant(const std::string& model) {
  manifests::Variant v;
  v.id = model;
  v.file = "model/" + model + ".onnx";
  v.format = "onnx";
  v.opset = std::stoi(model.substr(model.rfind("_op") + 3));
  v.inputs = {{"input", "float32", {-1, 3, 224, 224}}};
  v.outputs = {{"logits", "float32", {-1, 1000}}};
  return v;
}

Tensor Golden(const std::string& model, const std::string& file) {
  auto t = ReadTensorProto(kZoo / model / "golden" / file);
  EXPECT_TRUE(t) << t.error().message;
  return t ? *t : Tensor{};
}

void ExpectClose(const Tensor& got, const Tensor& expected) {
  testing::ExpectLogitsClose(got, expected, kAtol, kRtol);
}

TEST(OnnxRuntimeBackend, DescribesTheLibraryItLoaded) {
  ASSERT_TRUE(fs::exists(EDGEFLEET_ORT_COPY)) << "the build copies ORT beside the backends";
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  const auto& caps = backend->capabilities();
  EXPECT_EQ(caps.name, "onnxruntime");
  EXPECT_EQ(caps.version.major, 1U);
  EXPECT_GE(caps.version.minor, 29U);  // the headers' API version (ORT_API_VERSION 29)
  EXPECT_NE(caps.engine.find("ONNX Runtime " + caps.version.ToString()), std::string::npos)
      << caps.engine;
  EXPECT_NE(caps.engine.find("CPUExecutionProvider"), std::string::npos) << caps.engine;
  // The probe found an opset above the claimed 17 (ORT 1.29+ imports at least opset 21).
  const auto at = caps.engine.find("imports opsets to ");
  ASSERT_NE(at, std::string::npos) << caps.engine;
  EXPECT_GE(std::stoi(caps.engine.substr(at + 18)), 21) << caps.engine;
  EXPECT_EQ(caps.formats, std::vector<std::string>{"onnx"});
  EXPECT_EQ(caps.targets, std::vector<std::string>{"cpu"});
  EXPECT_EQ(caps.max_opset, 17);
  EXPECT_GT(caps.operators.size(), 100U);
}

class OrtZoo : public ::testing::TestWithParam<std::string> {};

TEST_P(OrtZoo, MatchesPyTorchWithOneAndTwoThreadsAndWithoutTheArena) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  struct Case {
    int threads;
    std::string options;
  };
  for (const Case& c : {Case{1, "{}"}, Case{2, "{}"}, Case{1, R"({"memory_arena":false})"},
                        Case{1, R"({"graph_optimization":"disable"})"}}) {
    SCOPED_TRACE("threads " + std::to_string(c.threads) + " options " + c.options);
    SessionOptions options;
    options.threads = c.threads;
    options.backend_options_json = c.options;
    auto session = backend->Load(kZoo / GetParam() / "model.onnx", ZooVariant(GetParam()), options);
    ASSERT_TRUE(session) << session.error().message;
    auto out = (*session)->Run({Golden(GetParam(), "input_0.pb")});
    ASSERT_TRUE(out) << out.error().message;
    ASSERT_EQ(out->size(), 1U);
    EXPECT_EQ((*out)[0].name, "logits");
    ExpectClose((*out)[0], Golden(GetParam(), "output_0.pb"));
  }
}

// Every file of the zoo, at every opset, including those OpenCV 4.6 refuses (MobileNetV2 at 17,
// EfficientNet-B0 and ShuffleNetV2 at 13 and 17).
INSTANTIATE_TEST_SUITE_P(Exports, OrtZoo,
                         ::testing::Values("mobilenet_v2_op10", "mobilenet_v2_op17",
                                           "resnet18_op10", "resnet18_op17", "efficientnet_b0_op13",
                                           "efficientnet_b0_op17", "shufflenet_v2_x1_0_op13",
                                           "shufflenet_v2_x1_0_op17"));

// The measured table claims every operator of each zoo file at its opset, so the agent accepts
// them before download; OpenCV's table does not claim them all for the ones OpenCV cannot load.
TEST(OnnxRuntimeBackend, ItsTableAcceptsEveryZooFileThatOpenCvsRefuses) {
  auto ort = MakeBackend();
  auto opencv = testing::LoadOpenCvPlugin();
  ASSERT_TRUE(ort);
  ASSERT_TRUE(opencv) << opencv.error().message;
  for (const std::string model :
       {"mobilenet_v2_op17", "efficientnet_b0_op13", "efficientnet_b0_op17",
        "shufflenet_v2_x1_0_op13", "shufflenet_v2_x1_0_op17"}) {
    SCOPED_TRACE(model);
    auto graph = InspectOnnx(kZoo / model / "model.onnx");
    ASSERT_TRUE(graph) << graph.error().message;
    manifests::Variant v = ZooVariant(model);
    v.operators = OperatorKeys(*graph);
    const auto any = manifests::VersionRange::Parse("*");
    ASSERT_TRUE(any);
    v.backends = {{"onnxruntime", *any}, {"opencv", *any}};
    EXPECT_EQ(CompatibilityProblems(v, ort->capabilities()), std::vector<std::string>{});
    EXPECT_FALSE(CompatibilityProblems(v, (*opencv)->capabilities()).empty());
  }
}

TEST(OnnxRuntimeBackend, ConcurrentRunsOnOneSessionGiveTheSingleRunResult) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  SessionOptions options;
  options.parallel_runs = 4;
  const std::string model = "mobilenet_v2_op17";
  auto session = backend->Load(kZoo / model / "model.onnx", ZooVariant(model), options);
  ASSERT_TRUE(session) << session.error().message;
  const Tensor input = Golden(model, "input_0.pb");
  const auto alone = (*session)->Run({input});
  ASSERT_TRUE(alone) << alone.error().message;
  const auto expected = (*alone)[0].As<float>();
  std::vector<std::string> errors(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) {
        auto out = (*session)->Run({input});
        if (!out) {
          errors[t] = out.error().message;
          return;
        }
        const auto v = (*out)[0].As<float>();
        if (!std::equal(v.begin(), v.end(), expected.begin(), expected.end())) {
          errors[t] = "run " + std::to_string(i) + " differs from the single run";
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (std::size_t t = 0; t < 4; ++t) EXPECT_EQ(errors[t], "") << "thread " << t;
}

// With optimized_model_cache, the first load leaves ORT's optimised graph in the directory the
// agent names for the slot, keyed by the model's SHA-256; a second load reads that file instead
// of the model (shown by handing it a model path whose bytes are not a model at all) and gives
// the same answer.
TEST(OnnxRuntimeBackend, TheOptimisedModelCacheIsWrittenOnceAndServesTheNextLoad) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  testing::TempDir dir;
  const std::string sha(64, 'a');
  const std::string model = "mobilenet_v2_op17";
  SessionOptions options;
  options.backend_options_json = nlohmann::json{
      {"optimized_model_cache", true},
      {"edgefleet_cache_dir", (dir / "cache").string()},
      {"edgefleet_model_sha256",
       sha}}.dump();
  auto first = backend->Load(kZoo / model / "model.onnx", ZooVariant(model), options);
  ASSERT_TRUE(first) << first.error().message;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir / "cache")) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1U);
  const std::string name = files[0].filename().string();
  EXPECT_EQ(name.rfind("optimized-" + backend->capabilities().version.ToString() + "-all-", 0), 0U)
      << name;
  EXPECT_NE(name.find(sha), std::string::npos) << name;

  const fs::path not_a_model = dir / "model.onnx";
  std::ofstream(not_a_model) << "not the model: the cache must be what is loaded";
  auto second = backend->Load(not_a_model, ZooVariant(model), options);
  ASSERT_TRUE(second) << second.error().message;
  const Tensor input = Golden(model, "input_0.pb");
  auto a = (*first)->Run({input});
  auto b = (*second)->Run({input});
  ASSERT_TRUE(a && b);
  ExpectClose((*b)[0], Golden(model, "output_0.pb"));
  ExpectClose((*b)[0], (*a)[0]);

  // A damaged cache entry never fails a load: it is dropped, the model's own file is loaded and
  // the entry written again.
  std::ofstream(files[0], std::ios::trunc) << "damaged";
  auto third = backend->Load(kZoo / model / "model.onnx", ZooVariant(model), options);
  ASSERT_TRUE(third) << third.error().message;
  auto c = (*third)->Run({input});
  ASSERT_TRUE(c);
  ExpectClose((*c)[0], Golden(model, "output_0.pb"));
  EXPECT_GT(fs::file_size(files[0]), 1000U) << "the entry was written again";
}

TEST(OnnxRuntimeBackend, AnUnknownOrMistypedOptionIsRefusedNamingIt) {
  auto refused = LoadBackendPlugin(kPlugin, R"({"onnxruntime":{"memory_arnea":false}})");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("unknown option \"memory_arnea\""), std::string::npos)
      << refused.error().message;
  auto wrong = LoadBackendPlugin(kPlugin, R"({"onnxruntime":{"graph_optimization":"max"}})");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("graph_optimization: expected"), std::string::npos)
      << wrong.error().message;
  // Per load too: the model's options are checked before the session is made.
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  SessionOptions options;
  options.backend_options_json = R"({"intra_op_threads":0})";
  const std::string model = "resnet18_op10";
  auto session = backend->Load(kZoo / model / "model.onnx", ZooVariant(model), options);
  ASSERT_FALSE(session);
  EXPECT_NE(session.error().message.find("intra_op_threads: expected an integer 1..256, found 0"),
            std::string::npos)
      << session.error().message;
}

// A library that is not ONNX Runtime, or one that others may write, is never used (checked before
// the rule that a process keeps the first ORT it opened).
TEST(OnnxRuntimeBackend, ALibraryThatIsNotOrtOrIsWritableByOthersIsRefused) {
  testing::TempDir dir;
  const fs::path safe = dir.path() / "lib";
  fs::create_directories(safe);
  ::chmod(safe.c_str(), 0755);
  const fs::path not_ort = safe / "libnotort.so";
  fs::copy_file(testing::OpenCvPluginPath(), not_ort);
  ::chmod(not_ort.c_str(), 0644);
  auto refused =
      LoadBackendPlugin(kPlugin, R"({"onnxruntime":{"library":")" + not_ort.string() + R"("}})");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("has no OrtGetApiBase"), std::string::npos)
      << refused.error().message;

  const fs::path writable = safe / "libonnxruntime.so.1";
  fs::copy_file(EDGEFLEET_ORT_COPY, writable);
  ::chmod(writable.c_str(), 0666);
  auto open =
      LoadBackendPlugin(kPlugin, R"({"onnxruntime":{"library":")" + writable.string() + R"("}})");
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().message.find("writable by group or others"), std::string::npos)
      << open.error().message;
}

TEST(OnnxRuntimeBackend, AManifestNamingAnInputTheGraphLacksIsRefusedAtLoad) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  const std::string model = "resnet18_op10";
  manifests::Variant v = ZooVariant(model);
  v.inputs[0].name = "image";
  auto session = backend->Load(kZoo / model / "model.onnx", v, SessionOptions{});
  ASSERT_FALSE(session);
  EXPECT_NE(session.error().message.find("\"input\" is not in the model spec"), std::string::npos)
      << session.error().message;
}

TEST(OnnxRuntimeBackend, AFileThatIsNotOnnxIsRefusedAtLoadWithOrtsReason) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  testing::TempDir dir;
  const fs::path file = dir.path() / "model.onnx";
  std::ofstream(file) << "this is not a protobuf";
  auto session = backend->Load(file, ZooVariant("resnet18_op10"), SessionOptions{});
  ASSERT_FALSE(session);
  EXPECT_NE(session.error().message.find("cannot load " + file.string()), std::string::npos)
      << session.error().message;
}

// The claim against the truth, as for opencv (tests/runtime/op_table_test.cpp): every
// conformance case whose operators the table claims passes on this library.
TEST(OnnxRuntimeBackend, EveryCaseTheTableCoversPasses) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  std::size_t covered = 0;
  for (const fs::path& root : {fs::path(EDGEFLEET_ONNX_TESTDATA_DIR) / "node",
                               fs::path(EDGEFLEET_TEST_DATA_DIR) / "onnx/node"}) {
    auto cases = ListNodeCases(root);
    ASSERT_TRUE(cases) << cases.error().message;
    for (const auto& dir : *cases) {
      const auto result = RunNodeCase(*backend, dir);
      if (!ClaimCovers(backend->capabilities().operators, result)) continue;
      ++covered;
      EXPECT_EQ(result.outcome, NodeCaseOutcome::kPass)
          << result.name << ": " << ToString(result.outcome) << ": " << result.detail;
    }
  }
  EXPECT_GT(covered, 700U);
}

}  // namespace
}  // namespace edgefleet::runtime
