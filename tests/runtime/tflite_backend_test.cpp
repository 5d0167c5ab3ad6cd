// The tflite backend plugin (runtime/tflite, Arm NN 20.08) through the real plugin loader, on the
// digits CNN that tests/data/make_tflite.py wrote from the ONNX model's weights: its logits match
// torch's golden outputs (the reference is torch, not Arm NN), a batch of N rows runs as N
// batch-1 runs, concurrent runs match a single run, and what it cannot serve is refused with a
// reason (a custom operator, a wrong input name, a wrong row shape).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "runtime/plugin_backend.hpp"
#include "tests/support/logits.hpp"
#include "tests/support/opencv_plugin.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path kData = EDGEFLEET_TEST_DATA_DIR;
const fs::path kTflite = kData / "tflite";
const fs::path kGolden = kData / "digits/v1/golden/heldout";

// Torch ran the same weights in another layout (NCHW) and summation order.
constexpr double kAtol = 1e-4;
constexpr double kRtol = 1e-3;

std::unique_ptr<Backend> MakeBackend() {
  auto backend = testing::LoadBuiltPlugin("tflite");
  EXPECT_TRUE(backend) << backend.error().message;
  return backend ? std::move(backend).value() : nullptr;
}

manifests::Variant DigitsVariant() {
  manifests::Variant v;
  v.id = "tflite";
  v.file = "model/digits.tflite";
  v.format = "tflite";
  v.opset = 3;
  v.inputs = {{"input", "float32", {-1, 1, 8, 8}}};
  v.outputs = {{"logits", "float32", {-1, 10}}};
  return v;
}

Tensor Golden(const std::string& file) {
  auto t = ReadTensorProto(kGolden / file);
  EXPECT_TRUE(t) << t.error().message;
  return t ? *t : Tensor{};
}

// The first `rows` rows of a batch tensor.
Tensor FirstRows(const Tensor& t, std::int64_t rows) {
  Tensor out = t;
  const std::size_t row_bytes = t.data.size() / static_cast<std::size_t>(t.shape[0]);
  out.shape[0] = rows;
  out.data.resize(row_bytes * static_cast<std::size_t>(rows));
  return out;
}

TEST(TfliteBackend, DescribesArmNnOnCpuRefWithItsMeasuredOperators) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  const auto& caps = backend->capabilities();
  EXPECT_EQ(caps.name, "tflite");
  EXPECT_EQ(caps.version.major, 22U);  // Debian's Arm NN 20.08 is library version 22
  EXPECT_NE(caps.engine.find("Arm NN"), std::string::npos) << caps.engine;
  EXPECT_EQ(caps.formats, std::vector<std::string>{"tflite"});
  // This box is x86-64: no CpuAcc (NEON), so the reference backend runs.
  EXPECT_EQ(caps.targets, (std::vector<std::string>{"cpu", "armnn:CpuRef"}));
  std::vector<std::string> ops;
  for (const auto& op : caps.operators) ops.push_back(op.op);
  for (const char* op : {"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE"}) {
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op;
  }
}

TEST(TfliteBackend, DigitsMatchTorchsLogitsRowByRow) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  auto session = backend->Load(kTflite / "digits.tflite", DigitsVariant(), {});
  ASSERT_TRUE(session) << session.error().message;
  const Tensor input = Golden("input_0.pb");
  const Tensor expected = Golden("output_0.pb");
  ASSERT_EQ(input.shape[0], 360);
  // The whole golden batch (360 batch-1 runs), then one row alone.
  auto out = (*session)->Run({input});
  ASSERT_TRUE(out) << out.error().message;
  ASSERT_EQ(out->size(), 1U);
  EXPECT_EQ((*out)[0].name, "logits");
  testing::ExpectLogitsClose((*out)[0], expected, kAtol, kRtol);
  auto one = (*session)->Run({FirstRows(input, 1)});
  ASSERT_TRUE(one) << one.error().message;
  testing::ExpectLogitsClose((*one)[0], FirstRows(expected, 1), kAtol, kRtol);
}

TEST(TfliteBackend, ConcurrentRunsGiveTheSingleRunResult) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  SessionOptions options;
  options.parallel_runs = 4;
  auto session = backend->Load(kTflite / "digits.tflite", DigitsVariant(), options);
  ASSERT_TRUE(session) << session.error().message;
  const Tensor input = FirstRows(Golden("input_0.pb"), 16);
  auto alone = (*session)->Run({input});
  ASSERT_TRUE(alone) << alone.error().message;
  std::vector<std::string> errors(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        auto out = (*session)->Run({input});
        if (!out) {
          errors[t] = out.error().message;
        } else if ((*out)[0].data != (*alone)[0].data) {
          errors[t] = "run " + std::to_string(i) + " differs from the single run";
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
}

// The plugin refuses it at load with Arm NN's reason (which says CUSTOM, not the name); the
// agent refuses it earlier, before download, by the name `bundle create` read from the file.
TEST(TfliteBackend, ACustomOperatorIsRefusedAtLoad) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  manifests::Variant v = DigitsVariant();
  v.inputs = {{"input", "float32", {1, 4, 4, 1}}};
  v.outputs = {{"output", "float32", {1, 8, 8, 1}}};
  auto session = backend->Load(kTflite / "custom_op.tflite", v, {});
  ASSERT_FALSE(session);
  EXPECT_NE(session.error().message.find("Operator not supported"), std::string::npos)
      << session.error().message;
  EXPECT_NE(session.error().message.find("CUSTOM"), std::string::npos) << session.error().message;
}

TEST(TfliteBackend, ManifestsThatDoNotFitTheFileAreRefused) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  manifests::Variant renamed = DigitsVariant();
  renamed.inputs[0].name = "image";
  auto a = backend->Load(kTflite / "digits.tflite", renamed, {});
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("input \"image\" is not in the model"), std::string::npos)
      << a.error().message;
  manifests::Variant reshaped = DigitsVariant();
  reshaped.inputs[0].shape = {-1, 1, 28, 28};
  auto b = backend->Load(kTflite / "digits.tflite", reshaped, {});
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("[-1,1,28,28]"), std::string::npos) << b.error().message;
  manifests::Variant retyped = DigitsVariant();
  retyped.inputs[0].dtype = "int32";
  auto d = backend->Load(kTflite / "digits.tflite", retyped, {});
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find(
                "input \"input\": the manifest says int32, the model has Arm NN type Float32"),
            std::string::npos)
      << d.error().message;
  auto c = backend->Load(kData / "digits/v1/model/digits_op10.onnx", DigitsVariant(), {});
  ASSERT_FALSE(c) << "an ONNX file parsed as TFLite";
}

TEST(TfliteBackend, ARequestWithAnotherRowShapeIsRefused) {
  auto backend = MakeBackend();
  ASSERT_TRUE(backend);
  auto session = backend->Load(kTflite / "digits.tflite", DigitsVariant(), {});
  ASSERT_TRUE(session) << session.error().message;
  Tensor wrong = FirstRows(Golden("input_0.pb"), 2);
  wrong.shape = {2, 1, 4, 16};
  auto out = (*session)->Run({wrong});
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message.find("[2,1,4,16]"), std::string::npos) << out.error().message;
}

}  // namespace
}  // namespace edgefleet::runtime
