// The opencv backend on the real digits models: golden parity and accuracy at both opsets,
// precise refusals of wrong inputs, models OpenCV cannot import, dtype conversion, and
// concurrent runs against serial ones (for both a pool of nets and a single locked net).
#include "tests/support/opencv_plugin.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "manifests/json_fields.hpp"
#include "runtime/compat.hpp"
#include "runtime/node_cases.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

const std::filesystem::path kV1 = std::filesystem::path(EDGEFLEET_TEST_DATA_DIR) / "digits" / "v1";

nlohmann::json ReadJson(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// The variant exactly as bundle.json declares it (read with the manifest code, not retyped).
manifests::Variant DigitsVariant(std::string_view id) {
  const auto bundle = ReadJson(kV1 / "bundle.json");
  for (const auto& v : bundle.at("variants")) {
    if (v.at("id") != id) continue;
    manifests::FieldReader reader("bundle.json");
    auto variant = manifests::ReadVariant(reader, v, "variants[]", /*with_file=*/true);
    EXPECT_TRUE(variant.has_value());
    return variant.value_or(manifests::Variant{});
  }
  ADD_FAILURE() << "no variant " << id;
  return {};
}

std::vector<int> Labels() { return ReadJson(kV1 / "golden" / "labels.json").at("heldout"); }

std::unique_ptr<Backend> MakeBackend() {
  auto backend = testing::LoadOpenCvPlugin();
  EXPECT_TRUE(backend);
  return std::move(backend).value();
}

std::unique_ptr<Session> LoadDigits(Backend& backend, std::string_view id,
                                    SessionOptions options = {}) {
  const auto variant = DigitsVariant(id);
  auto session = backend.Load(kV1 / variant.file, variant, options);
  EXPECT_TRUE(session) << session.error().message;
  return session ? std::move(session).value() : nullptr;
}

Tensor GoldenInput() { return *ReadTensorProto(kV1 / "golden" / "heldout" / "input_0.pb"); }
Tensor GoldenOutput() { return *ReadTensorProto(kV1 / "golden" / "heldout" / "output_0.pb"); }

// Row `row` of a [N, ...] float tensor as a [1, ...] tensor.
Tensor Row(const Tensor& batch, std::int64_t row) {
  std::vector<std::int64_t> shape = batch.shape;
  shape[0] = 1;
  const std::size_t per = batch.As<float>().size() / static_cast<std::size_t>(batch.shape[0]);
  return *Tensor::FromFloats(batch.name, shape,
                             batch.As<float>().subspan(static_cast<std::size_t>(row) * per, per));
}

int ArgMax(std::span<const float> v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(OpenCvBackend, Capabilities) {
  auto backend = MakeBackend();
  const auto& caps = backend->capabilities();
  EXPECT_EQ(caps.name, "opencv");
  EXPECT_EQ(caps.version.ToString(), "4.6.0");
  EXPECT_EQ(caps.formats, std::vector<std::string>{"onnx"});
  EXPECT_EQ(caps.targets, std::vector<std::string>{"cpu"});
  EXPECT_EQ(caps.min_opset, 1);
  EXPECT_EQ(caps.max_opset, 17);
  for (const auto& op : caps.operators) {
    EXPECT_FALSE(op.op.empty());
    EXPECT_LE(caps.min_opset, op.min_opset) << op.op;
    EXPECT_LE(op.min_opset, op.max_opset) << op.op;
    EXPECT_LE(op.max_opset, caps.max_opset) << op.op;
  }
}

class DigitsOpset : public ::testing::TestWithParam<std::string> {};

// The whole held-out batch in one run, and every row alone: golden within the manifest's
// tolerances, and accuracy against labels.json.
TEST_P(DigitsOpset, ReproducesGoldenOutputsAndAccuracy) {
  auto backend = MakeBackend();
  auto session = LoadDigits(*backend, GetParam());
  ASSERT_NE(session, nullptr);
  ASSERT_EQ(session->inputs().size(), 1u);
  EXPECT_EQ(session->inputs()[0].name, "input");
  EXPECT_EQ(session->inputs()[0].dtype, DType::kFloat32);
  EXPECT_EQ(session->inputs()[0].shape, (std::vector<std::int64_t>{-1, 1, 8, 8}));
  ASSERT_EQ(session->outputs().size(), 1u);
  EXPECT_EQ(session->outputs()[0].name, "logits");

  const Tensor input = GoldenInput();
  const Tensor golden = GoldenOutput();
  const auto labels = Labels();
  ASSERT_EQ(labels.size(), 360u);
  constexpr double kAtol = 1e-4, kRtol = 1e-3;

  auto out = session->Run({input});
  ASSERT_TRUE(out) << out.error().message;
  ASSERT_EQ(out->size(), 1u);
  const Tensor& logits = (*out)[0];
  EXPECT_EQ(logits.name, "logits");
  EXPECT_EQ(logits.dtype, DType::kFloat32);
  ASSERT_EQ(logits.shape, (std::vector<std::int64_t>{360, 10}));
  const auto got = logits.As<float>();
  const auto want = golden.As<float>();
  ASSERT_EQ(got.size(), want.size());
  double max_diff = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double diff = std::abs(double{got[i]} - want[i]);
    max_diff = std::max(max_diff, diff);
    ASSERT_LE(diff, kAtol + kRtol * std::abs(want[i])) << "element " << i;
  }
  int correct = 0;
  for (std::size_t r = 0; r < 360; ++r) {
    correct += ArgMax(got.subspan(r * 10, 10)) == labels[r];
  }
  EXPECT_GE(correct, 342) << "accuracy " << correct << "/360";  // >= 95 %
  RecordProperty("max_abs_diff", std::to_string(max_diff));
  RecordProperty("correct", correct);

  // Batch 1, every row (OpenCV reshapes its net for the new batch size).
  for (std::int64_t r = 0; r < 360; ++r) {
    auto one = session->Run({Row(input, r)});
    ASSERT_TRUE(one) << one.error().message;
    ASSERT_EQ((*one)[0].shape, (std::vector<std::int64_t>{1, 10}));
    const auto row = (*one)[0].As<float>();
    for (std::size_t k = 0; k < 10; ++k) {
      const float w = want[static_cast<std::size_t>(r) * 10 + k];
      ASSERT_LE(std::abs(row[k] - w), kAtol + kRtol * std::abs(w)) << "row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, DigitsOpset, ::testing::Values("onnx-op10", "onnx-op13"));

void ExpectRefused(Session& session, const std::vector<Tensor>& inputs,
                   const std::string& message) {
  auto r = session.Run(inputs);
  ASSERT_FALSE(r) << "accepted; wanted: " << message;
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message, message);
}

TEST(OpenCvBackend, RefusesWrongInputsPrecisely) {
  auto backend = MakeBackend();
  auto session = LoadDigits(*backend, "onnx-op10");
  ASSERT_NE(session, nullptr);
  const std::vector<float> zeros(3 * 64 * 3, 0.0f);

  ExpectRefused(*session, {*Tensor::FromFloats("input", {3, 3, 8, 8}, zeros)},
                "input \"input\": expected shape [-1,1,8,8], found [3,3,8,8]");
  ExpectRefused(*session, {*Tensor::FromFloats("input", {1, 64}, {zeros.data(), 64})},
                "input \"input\": expected shape [-1,1,8,8], found [1,64]");
  // Batch 0: the client's mistake (400), not an engine failure that counts against the model.
  ExpectRefused(*session, {*Tensor::FromFloats("input", {0, 1, 8, 8}, {})},
                "input \"input\": dimension 0 is 0 (shape [0,1,8,8]); at least 1 is needed");
  Tensor wrong_type;
  wrong_type.name = "input";
  wrong_type.dtype = DType::kFloat64;
  wrong_type.shape = {1, 1, 8, 8};
  wrong_type.data.resize(64 * 8);
  ExpectRefused(*session, {wrong_type}, "input \"input\": expected dtype float32, found float64");
  ExpectRefused(*session, {*Tensor::FromFloats("pixels", {1, 1, 8, 8}, {zeros.data(), 64})},
                "input \"pixels\": not an input of this model (expected \"input\")");
  ExpectRefused(*session, {}, "expected 1 input(s), found 0");
  const Tensor ok = *Tensor::FromFloats("input", {1, 1, 8, 8}, {zeros.data(), 64});
  ExpectRefused(*session, {ok, ok}, "expected 1 input(s), found 2");
  Tensor short_data = ok;
  short_data.data.resize(100);
  ExpectRefused(
      *session, {short_data},
      "input \"input\": tensor \"input\": float32 [1,1,8,8] needs 64 x 4 bytes, found 100");

  // An unnamed tensor is matched by position; the session keeps working after refusals.
  Tensor unnamed = ok;
  unnamed.name.clear();
  auto r = session->Run({unnamed});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)[0].shape, (std::vector<std::int64_t>{1, 10}));
}

TEST(OpenCvBackend, RefusesModelsItCannotImport) {
  auto backend = MakeBackend();
  edgefleet::testing::TempDir dir;
  const auto variant = DigitsVariant("onnx-op10");

  const auto garbage = dir / "garbage.onnx";
  edgefleet::testing::WriteFile(garbage, "this is not an onnx model \x01\x02\x03");
  auto r = backend->Load(garbage, variant, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(r.error().message.find("opencv: cannot import " + garbage.string() + ": "),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("Failed to parse onnx model"), std::string::npos)
      << r.error().message;

  // A truncated real model.
  std::ifstream in(kV1 / variant.file, std::ios::binary);
  std::string model((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto truncated = dir / "truncated.onnx";
  edgefleet::testing::WriteFile(truncated, model.substr(0, model.size() / 2));
  auto t = backend->Load(truncated, variant, {});
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, ErrorCode::kUnsupported) << t.error().message;

  const auto empty = dir / "empty.onnx";
  edgefleet::testing::WriteFile(empty, "");
  auto e = backend->Load(empty, variant, {});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::kUnsupported) << e.error().message;

  auto missing = backend->Load(dir / "missing.onnx", variant, {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kIo);

  // Names the graph does not have.
  auto wrong_out = variant;
  wrong_out.outputs[0].name = "probabilities";
  auto o = backend->Load(kV1 / variant.file, wrong_out, {});
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(o.error().message.find("no output \"probabilities\""), std::string::npos)
      << o.error().message;
  auto wrong_in = variant;
  wrong_in.inputs[0].name = "image";
  auto i = backend->Load(kV1 / variant.file, wrong_in, {});
  ASSERT_FALSE(i);
  EXPECT_NE(i.error().message.find("the graph has no input \"image\""), std::string::npos)
      << i.error().message;

  auto tflite = variant;
  tflite.format = "tflite";
  auto f = backend->Load(kV1 / variant.file, tflite, {});
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, ErrorCode::kUnsupported);

  auto bad_options = backend->Load(kV1 / variant.file, variant, {.threads = 1, .parallel_runs = 0});
  ASSERT_FALSE(bad_options);
  EXPECT_EQ(bad_options.error().code, ErrorCode::kInvalidArgument);
}

// Declared dtypes other than float32 are converted to and from the float32 OpenCV computes in.
TEST(OpenCvBackend, ConvertsOtherDTypes) {
  auto backend = MakeBackend();
  auto variant = DigitsVariant("onnx-op10");
  const Tensor input = Row(GoldenInput(), 7);
  auto reference = LoadDigits(*backend, "onnx-op10")->Run({input});
  ASSERT_TRUE(reference);
  const auto ref = (*reference)[0].As<float>();

  variant.inputs[0].dtype = "float64";
  variant.outputs[0].dtype = "float64";
  auto session = backend->Load(kV1 / variant.file, variant, {});
  ASSERT_TRUE(session) << session.error().message;
  Tensor in64;
  in64.name = "input";
  in64.dtype = DType::kFloat64;
  in64.shape = input.shape;
  in64.data.resize(64 * 8);
  for (std::size_t i = 0; i < 64; ++i) in64.AsMutable<double>()[i] = input.As<float>()[i];
  auto out = (*session)->Run({in64});
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ((*out)[0].dtype, DType::kFloat64);
  for (std::size_t k = 0; k < 10; ++k) EXPECT_EQ((*out)[0].As<double>()[k], double{ref[k]});

  // int64 pixels: exact when small, refused when float32 cannot hold them.
  variant.inputs[0].dtype = "int64";
  variant.outputs[0].dtype = "float32";
  auto int_session = backend->Load(kV1 / variant.file, variant, {});
  ASSERT_TRUE(int_session) << int_session.error().message;
  Tensor ints;
  ints.name = "input";
  ints.dtype = DType::kInt64;
  ints.shape = {1, 1, 8, 8};
  ints.data.resize(64 * 8);
  EXPECT_TRUE((*int_session)->Run({ints}));
  ints.AsMutable<std::int64_t>()[5] = (std::int64_t{1} << 24) + 1;
  auto big = (*int_session)->Run({ints});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(big.error().message,
            "opencv: input \"input\": value 16777217 at index 5 has no exact float32, which "
            "OpenCV computes in");

  // Logits are not integers: declaring them int32 is a backend result the dtype cannot carry.
  variant.inputs[0].dtype = "float32";
  variant.outputs[0].dtype = "int32";
  auto int_out = backend->Load(kV1 / variant.file, variant, {});
  ASSERT_TRUE(int_out) << int_out.error().message;
  auto lossy = (*int_out)->Run({input});
  ASSERT_FALSE(lossy);
  EXPECT_EQ(lossy.error().code, ErrorCode::kInternal);
  EXPECT_NE(lossy.error().message.find("is not a int32"), std::string::npos)
      << lossy.error().message;
}

// 4 threads hammering one session give exactly the serial results, with a pool of nets and with
// one net (parallel_runs = 1, every run behind the one lock).
class Concurrency : public ::testing::TestWithParam<int> {};

TEST_P(Concurrency, FourThreadsMatchSerial) {
  auto backend = MakeBackend();
  auto session = LoadDigits(*backend, "onnx-op13", {.threads = 1, .parallel_runs = GetParam()});
  ASSERT_NE(session, nullptr);
  const Tensor batch = GoldenInput();
  constexpr int kRows = 60;
  std::vector<Tensor> inputs;
  std::vector<std::vector<float>> serial;
  for (int r = 0; r < kRows; ++r) {
    inputs.push_back(Row(batch, r));
    auto out = session->Run({inputs.back()});
    ASSERT_TRUE(out) << out.error().message;
    serial.emplace_back((*out)[0].As<float>().begin(), (*out)[0].As<float>().end());
  }
  std::vector<std::string> failures(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < kRows; ++i) {
          const int r = (i * 7 + t * 13 + round) % kRows;  // threads interleave different rows
          auto out = session->Run({inputs[static_cast<std::size_t>(r)]});
          if (!out) {
            failures[static_cast<std::size_t>(t)] = out.error().message;
            return;
          }
          const auto got = (*out)[0].As<float>();
          if (!std::equal(got.begin(), got.end(), serial[static_cast<std::size_t>(r)].begin(),
                          serial[static_cast<std::size_t>(r)].end())) {
            failures[static_cast<std::size_t>(t)] = "row " + std::to_string(r) + " differs";
            return;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t)
    EXPECT_EQ(failures[static_cast<std::size_t>(t)], "") << "thread " << t;
}

INSTANTIATE_TEST_SUITE_P(PoolSizes, Concurrency, ::testing::Values(1, 2, 4));

// OpenCV 4.6 writes past its buffers when a Dropout node has its mask output (valgrind on the
// conformance case below: an invalid write of 4 bytes after a 96-byte blob; in the test process it
// crashed once the heap layout changed). The backend refuses such a node before OpenCV imports it,
// naming the node, and the agent's graph check refuses it before loading (CheckGraph).
TEST(OpenCvBackend, RefusesDropoutWithItsMaskBeforeOpenCvRunsIt) {
  auto backend = MakeBackend();
  const std::filesystem::path node_dir = EDGEFLEET_ONNX_TESTDATA_DIR "/node";
  auto masked = RunNodeCase(*backend, node_dir / "test_dropout_default_mask");
  EXPECT_EQ(masked.outcome, NodeCaseOutcome::kLoadFailed) << masked.detail;
  EXPECT_NE(masked.detail.find("Dropout with 2 outputs is not supported by opencv 4.6.0"),
            std::string::npos)
      << masked.detail;
  // Without the mask the same operator runs and matches.
  auto plain = RunNodeCase(*backend, node_dir / "test_dropout_default");
  EXPECT_EQ(plain.outcome, NodeCaseOutcome::kPass) << plain.detail;

  // The agent's graph check (after download, before loading) names the node too.
  auto graph = InspectOnnx(node_dir / "test_dropout_default_mask" / "model.onnx");
  ASSERT_TRUE(graph) << graph.error().message;
  auto checked = CheckGraph(*graph, manifests::Variant{}, backend->capabilities(), "masked");
  ASSERT_FALSE(checked);
  EXPECT_NE(checked.error().message.find("Dropout with 2 outputs is not supported by opencv"),
            std::string::npos)
      << checked.error().message;

  GraphNode two{"drop", "", "Dropout", 1, 2, ""};
  GraphNode one{"", "", "Dropout", 1, 1, ""};
  const auto problems =
      OutputLimitProblems({one, two}, backend->capabilities().output_limits, "opencv 4.6.0");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].rfind("node 'drop' (#1): Dropout with 2 outputs", 0), 0u) << problems[0];
}

}  // namespace
}  // namespace edgefleet::runtime
