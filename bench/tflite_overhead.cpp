// Benchmark: what the tflite backend plugin adds to a bare Arm NN run (issue 12, acceptance 5).
//
// In one process, on one thread, alternating in rounds so background load hits both alike:
//   plugin  runtime::LoadBackendPlugin + Session::Run (the agent's path: input checks, the C
//           ABI, Arm NN's EnqueueWorkload, the output written into the agent's buffer)
//   direct  Arm NN's own API: TfLiteParser, Optimize for CpuRef, LoadNetwork, EnqueueWorkload
//           into preallocated outputs
// Both load the same bytes: the model file with its float16 weights folded to float32, which is
// what the plugin hands Arm NN (runtime/tflite/fp16_fold.hpp; a model without them is unchanged).
// The input is fixed pseudo-random values in [-1, 1] of the model's first input's shape, batch
// 1, or with --golden DIR, DIR/golden/input_0.pb; then the plugin's first output is also
// compared with DIR/golden/output_0.pb (a reference other than Arm NN: torch's logits) and the
// run fails when a value is off by more than 1e-3 + 1e-3 x |expected|. Prints the median and
// p90 per path, in milliseconds.
//
//   tflite_overhead MODEL.tflite [--runs N=30] [--rounds R=5] [--golden DIR]
#include <armnn/ArmNN.hpp>
#include <armnn/Utils.hpp>
#include <armnnTfLiteParser/ITfLiteParser.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "bench/bench_stats.hpp"
#include "runtime/plugin_backend.hpp"
#include "runtime/tensor.hpp"
#include "runtime/tflite/fp16_fold.hpp"
#include "runtime/tflite_model.hpp"

namespace {

using edgefleet::bench::Percentile;
using edgefleet::bench::Time;

int Fail(const std::string& message) {
  std::fprintf(stderr, "tflite_overhead: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  namespace rt = edgefleet::runtime;
  if (argc < 2) return Fail("usage: tflite_overhead MODEL.tflite [--runs N] [--rounds R]");
  int runs = 30;
  int rounds = 5;
  std::string golden;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--runs") runs = value;
    if (flag == "--rounds") rounds = value;
    if (flag == "--golden") golden = argv[i + 1];
  }
  auto info = rt::InspectTflite(std::filesystem::path(argv[1]));
  if (!info) return Fail(info.error().message);
  if (info->inputs.size() != 1) return Fail("only models with one input are measured");
  std::vector<std::int64_t> shape = info->inputs[0].shape;
  if (!shape.empty() && shape[0] == -1) shape[0] = 1;
  std::size_t count = 1;
  for (const auto d : shape) count *= static_cast<std::size_t>(std::max<std::int64_t>(d, 1));
  std::vector<float> values(count);
  std::uint32_t seed = 1;
  for (auto& v : values) {
    seed = seed * 1664525U + 1013904223U;
    v = static_cast<float>(seed >> 8) / static_cast<float>(1U << 23) - 1.0F;
  }
  if (!golden.empty()) {
    auto given = rt::ReadTensorProto(golden + "/golden/input_0.pb");
    if (!given) return Fail(given.error().message);
    if (given->shape != shape) return Fail("the golden input's shape is not the model's");
    values.assign(given->As<float>().begin(), given->As<float>().end());
  }
  auto input = rt::Tensor::FromFloats(info->inputs[0].name, shape, values);
  if (!input) return Fail(input.error().message);

  auto backend = rt::LoadBackendPlugin(std::string(EDGEFLEET_BACKENDS_DIR) +
                                       "/libedgefleet_backend_tflite.so");
  if (!backend) return Fail(backend.error().message);
  edgefleet::manifests::Variant variant;
  variant.id = "bench";
  variant.format = "tflite";
  variant.opset = 3;
  for (const auto& t : info->inputs) variant.inputs.push_back({t.name, "float32", t.shape});
  for (const auto& t : info->outputs) variant.outputs.push_back({t.name, "float32", t.shape});
  auto session = (*backend)->Load(argv[1], variant, {});
  if (!session) return Fail(session.error().message);

  // The direct path, on the bytes the plugin gives Arm NN.
  std::ifstream in(argv[1], std::ios::binary);
  std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in),
                                  std::istreambuf_iterator<char>()};
  rt::tflite::FoldFloat16Weights(bytes);
  armnn::ConfigureLogging(false, false, armnn::LogSeverity::Fatal);
  armnn::IRuntime::CreationOptions creation;
  creation.m_DynamicBackendsPath = EDGEFLEET_ARMNN_BACKENDS_DIR;
  armnn::IRuntimePtr runtime = armnn::IRuntime::Create(creation);
  auto parser = armnnTfLiteParser::ITfLiteParser::Create();
  armnn::INetworkPtr network = parser->CreateNetworkFromBinary(bytes);
  const auto in_binding = parser->GetNetworkInputBindingInfo(0, info->inputs[0].name);
  std::vector<armnn::BindingPointInfo> out_bindings;
  std::vector<std::vector<float>> out_data;
  for (const auto& t : info->outputs) {
    out_bindings.push_back(parser->GetNetworkOutputBindingInfo(0, t.name));
    out_data.emplace_back(out_bindings.back().second.GetNumElements());
  }
  armnn::IOptimizedNetworkPtr optimized =
      armnn::Optimize(*network, {armnn::BackendId("CpuRef")}, runtime->GetDeviceSpec());
  armnn::NetworkId id = 0;
  if (!optimized || runtime->LoadNetwork(id, std::move(optimized)) != armnn::Status::Success) {
    return Fail("Arm NN cannot load the network on CpuRef");
  }
  const armnn::InputTensors inputs{
      {in_binding.first, armnn::ConstTensor(in_binding.second, values.data())}};
  armnn::OutputTensors outputs;
  for (std::size_t i = 0; i < out_bindings.size(); ++i) {
    outputs.emplace_back(out_bindings[i].first,
                         armnn::Tensor(out_bindings[i].second, out_data[i].data()));
  }

  auto plugin_run = [&] {
    auto out = (*session)->Run({*input});
    if (!out) std::abort();
  };
  auto direct_run = [&] {
    if (runtime->EnqueueWorkload(id, inputs, outputs) != armnn::Status::Success) std::abort();
  };
  std::vector<double> ignored;
  Time(3, ignored, plugin_run);
  Time(3, ignored, direct_run);
  std::vector<double> plugin_ms;
  std::vector<double> direct_ms;
  for (int r = 0; r < rounds; ++r) {
    Time(runs, plugin_ms, plugin_run);
    Time(runs, direct_ms, direct_run);
  }
  if (!golden.empty()) {
    auto expected = rt::ReadTensorProto(golden + "/golden/output_0.pb");
    auto got = (*session)->Run({*input});
    if (!expected || !got) return Fail("cannot compare with the golden output");
    const auto e = expected->As<float>();
    const auto g = (*got)[0].As<float>();
    if (e.size() != g.size()) return Fail("the output's size is not the golden output's");
    double worst = 0;
    std::size_t off = 0;
    for (std::size_t i = 0; i < e.size(); ++i) {
      const double d = std::abs(static_cast<double>(g[i]) - e[i]);
      worst = std::max(worst, d);
      if (d > 1e-3 + 1e-3 * std::abs(e[i])) ++off;
    }
    const auto top = [](std::span<const float> v) {
      return std::max_element(v.begin(), v.end()) - v.begin();
    };
    std::printf("against %s/golden/output_0.pb: max |diff| %.3g, %zu of %zu values off, top-1 %s\n",
                golden.c_str(), worst, off, e.size(), top(e) == top(g) ? "agrees" : "DIFFERS");
    if (off > 0 || top(e) != top(g)) return 1;
  }
  std::printf("%d runs each, batch 1, Arm NN CpuRef\n", runs * rounds);
  std::printf("%-8s %10s %10s\n", "path", "p50 ms", "p90 ms");
  std::printf("%-8s %10.3f %10.3f\n", "direct", Percentile(direct_ms, 0.5),
              Percentile(direct_ms, 0.9));
  std::printf("%-8s %10.3f %10.3f\n", "plugin", Percentile(plugin_ms, 0.5),
              Percentile(plugin_ms, 0.9));
  return 0;
}
