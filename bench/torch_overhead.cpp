// Benchmark: what the torch backend plugin adds to a bare libtorch forward (issue 12, item 2).
//
// In one process, on one thread, alternating in rounds so background load hits both alike:
//   plugin  runtime::LoadBackendPlugin + Session::Run (the agent's path: input checks, the C
//           ABI, from_blob, forward, the output copy into the agent's buffer)
//   direct  torch::jit::load + forward under c10::InferenceMode, the output made contiguous
// Both run the same file with the same intra-op thread count. Prints the median and p90 per
// path, in milliseconds.
//
//   torch_overhead MODEL.pt INPUT_0.pb [--threads T=1] [--runs N=30] [--rounds R=5]
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_stats.hpp"
#include "runtime/plugin_backend.hpp"
#include "runtime/tensor.hpp"

namespace {

using edgefleet::bench::Percentile;
using edgefleet::bench::Time;

int Fail(const std::string& message) {
  std::fprintf(stderr, "torch_overhead: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  namespace rt = edgefleet::runtime;
  if (argc < 3) return Fail("usage: torch_overhead MODEL.pt INPUT_0.pb [--threads T] [--runs N]");
  int threads = 1;
  int runs = 30;
  int rounds = 5;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--threads") threads = value;
    if (flag == "--runs") runs = value;
    if (flag == "--rounds") rounds = value;
  }
  auto golden = rt::ReadTensorProto(argv[2]);
  if (!golden) return Fail(golden.error().message);
  // Row 0 of the golden batch: batch 1, what one request carries.
  rt::Tensor input = *golden;
  const std::size_t per = input.As<float>().size() / static_cast<std::size_t>(input.shape[0]);
  std::vector<std::int64_t> shape = input.shape;
  shape[0] = 1;
  input = *rt::Tensor::FromFloats("input", shape, input.As<float>().subspan(0, per));

  auto backend =
      rt::LoadBackendPlugin(std::string(EDGEFLEET_BACKENDS_DIR) + "/libedgefleet_backend_torch.so");
  if (!backend) return Fail(backend.error().message);
  edgefleet::manifests::Variant variant;
  variant.id = "bench";
  variant.format = "torchscript";
  variant.opset = 1;
  variant.inputs = {{"input", "float32", {-1, 3, 224, 224}}};
  variant.outputs = {{"logits", "float32", {-1, 1000}}};
  rt::SessionOptions options;
  options.threads = threads;
  auto session = (*backend)->Load(argv[1], variant, options);
  if (!session) return Fail(session.error().message);

  at::set_num_threads(threads);
  torch::jit::Module module = torch::jit::load(argv[1]);
  module.eval();
  std::vector<float> data(input.As<float>().begin(), input.As<float>().end());

  auto plugin_run = [&] {
    auto out = (*session)->Run({input});
    if (!out) std::abort();
  };
  auto direct_run = [&] {
    c10::InferenceMode guard;
    std::vector<c10::IValue> args{torch::from_blob(data.data(), shape, torch::kFloat)};
    const at::Tensor y = module.forward(std::move(args)).toTensor().contiguous();
    if (y.numel() != 1000) std::abort();
  };
  // Warm-up: the profiling executor optimises the graph over the first runs.
  std::vector<double> ignored;
  Time(5, ignored, plugin_run);
  Time(5, ignored, direct_run);

  std::vector<double> plugin_ms;
  std::vector<double> direct_ms;
  for (int r = 0; r < rounds; ++r) {
    Time(runs, plugin_ms, plugin_run);
    Time(runs, direct_ms, direct_run);
  }
  std::printf("threads %d, %d runs each, batch 1\n", threads, runs * rounds);
  std::printf("%-8s %10s %10s\n", "path", "p50 ms", "p90 ms");
  std::printf("%-8s %10.2f %10.2f\n", "direct", Percentile(direct_ms, 0.5),
              Percentile(direct_ms, 0.9));
  std::printf("%-8s %10.2f %10.2f\n", "plugin", Percentile(plugin_ms, 0.5),
              Percentile(plugin_ms, 0.9));
  return 0;
}
