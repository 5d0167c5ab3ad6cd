// Benchmark (Runtime issue, acceptance 5): what the model host and the local HTTP API add to an
// inference, against a bare cv::dnn forward on the same model, input and thread count, measured
// in one run with the three measurements interleaved in blocks (see main), so that drift in
// machine load hits all three alike.
//
//   inference_overhead <model.onnx> <input shape, e.g. 1x3x224x224> [runs=300] [threads=1]
//                      [backend=opencv|onnxruntime]
//
// The peer is the backend's engine called directly in this process: a bare cv::dnn::Net for
// opencv, an ONNX Runtime session through its C API (bench/ort_direct) for onnxruntime.
//
// Two HTTP paths, both on one keep-alive connection: the KServe binary tensor extension (the
// input bytes in the request body; the JSON of 150k numbers alone would cost milliseconds), and
// the system shared memory extension (the client copies each input into a registered POSIX shm
// region, which the request names; the copy is inside the timed request). Both ask for binary
// outputs (raw bytes after a JSON header) rather than JSON numbers.
// Limits (exit 1 on a breach): median(host) <= 1.03 x median(direct); the better HTTP path's
// median <= median(direct) + 0.5 ms. Both HTTP paths are printed with their own verdict.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include "agent/local_api.hpp"
#ifdef EDGEFLEET_BENCH_ORT
#include "bench/ort_direct.hpp"
#endif
#include "runtime/model_host.hpp"
#include "runtime/plugin_backend.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using edgefleet::runtime::Tensor;

double Ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

std::vector<std::int64_t> ParseShape(const std::string& text) {
  std::vector<std::int64_t> shape;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, 'x')) shape.push_back(std::stoll(part));
  return shape;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "inference_overhead: %s\n", what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    return Fail(
        "usage: inference_overhead <model.onnx> <shape like 1x3x224x224> [runs] [threads] "
        "[opencv|onnxruntime]");
  }
  const std::string engine = argc > 5 ? argv[5] : "opencv";
  if (engine != "opencv" && engine != "onnxruntime") return Fail("unknown backend " + engine);
  const std::string model = argv[1];
  const std::vector<std::int64_t> shape = ParseShape(argv[2]);
  const int runs = argc > 3 ? std::atoi(argv[3]) : 300;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;

  // The input: the same random values for all three paths.
  std::size_t count = 1;
  for (auto d : shape) count *= static_cast<std::size_t>(d);
  std::vector<float> values(count);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  for (auto& v : values) v = uniform(rng);

  // Ours: the model host with the backend plugin, and the local API over loopback.
  auto backend = edgefleet::runtime::LoadBackendPlugin(std::string(EDGEFLEET_BACKENDS_DIR) +
                                                       "/libedgefleet_backend_" + engine + ".so");
  if (!backend) return Fail(backend.error().message);

  // Peer: the engine without edgefleet, as an app would run it.
  std::function<bool()> run_direct;
  cv::dnn::Net net;
  std::vector<int> dims(shape.begin(), shape.end());
  cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F, values.data());
  if (engine == "opencv") {
    cv::setNumThreads(threads);
    net = cv::dnn::readNetFromONNX(model);
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    run_direct = [&] {
      net.setInput(blob, "input");
      cv::Mat out = net.forward();
      return out.total() > 0;
    };
  }
#ifdef EDGEFLEET_BENCH_ORT
  std::unique_ptr<edgefleet::bench::OrtDirect> ort;
  if (engine == "onnxruntime") {
    std::string error;
    ort = edgefleet::bench::OrtDirect::Open(EDGEFLEET_ORT_COPY, model, threads, error);
    if (!ort) return Fail("direct ONNX Runtime: " + error);
    run_direct = [&] { return ort->Run(values, shape); };
  }
#endif
  if (!run_direct) return Fail("this build has no " + engine + " peer");
  edgefleet::manifests::Variant variant;
  variant.id = "bench";
  variant.file = model;
  variant.format = "onnx";
  variant.inputs = {{"input", "float32", shape}};
  variant.outputs = {{"logits", "float32", {-1, -1}}};
  edgefleet::runtime::ModelHost host;
  edgefleet::runtime::LoadRequest load;
  load.name = "bench";
  load.version = edgefleet::manifests::SemVer{1, 0, 0, ""};
  load.model_file = model;
  load.variant = variant;
  load.backend = backend->get();
  load.options.threads = threads;
  load.options.parallel_runs = 1;
  if (auto s = host.Load(load); !s) return Fail(s.error().message);
  if (auto s = host.Activate("bench", edgefleet::runtime::Slot::kA); !s) {
    return Fail(s.error().message);
  }
  auto input = Tensor::FromFloats("input", shape, values);
  if (!input) return Fail(input.error().message);
  const std::vector<Tensor> inputs = {*input};

  edgefleet::agent::LocalApiOptions api_options;
  api_options.max_body_bytes = 64u << 20;
  api_options.max_elements = 64u << 20;
  edgefleet::agent::ServingStats stats;
  auto api = edgefleet::agent::LocalApi::Start(host, stats, api_options);
  if (!api) return Fail(api.error().message);
  httplib::Client client("127.0.0.1", (*api)->port());
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);  // as any latency-minded client does; else Nagle adds ~40 ms
  // Both HTTP routes ask for the outputs as raw bytes (binary_data_output), as a client that
  // cares about latency does: MobileNetV2's 1000 logits as JSON numbers cost ~0.1 ms to write.
  nlohmann::json header = {{"parameters", {{"binary_data_output", true}}},
                           {"inputs",
                            {{{"name", "input"},
                              {"shape", shape},
                              {"datatype", "FP32"},
                              {"parameters", {{"binary_data_size", count * sizeof(float)}}}}}}};
  const std::string header_text = header.dump();
  std::string body = header_text;
  body.append(reinterpret_cast<const char*>(values.data()), count * sizeof(float));
  const httplib::Headers http_headers = {
      {"Inference-Header-Content-Length", std::to_string(header_text.size())}};

  // The shared memory path: one region holding one input, as a camera app would keep a frame.
  const std::string shm_key = "/edgefleet-bench-" + std::to_string(::getpid());
  const std::size_t input_bytes = count * sizeof(float);
  const int shm_fd = ::shm_open(shm_key.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (shm_fd < 0) return Fail("cannot create shared memory " + shm_key);
  if (::ftruncate(shm_fd, static_cast<off_t>(input_bytes)) != 0) {
    ::close(shm_fd);
    ::shm_unlink(shm_key.c_str());
    return Fail("cannot size shared memory " + shm_key);
  }
  void* shm_map = ::mmap(nullptr, input_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
  ::close(shm_fd);
  struct ShmCleanup {
    std::string key;
    void* map;
    std::size_t bytes;
    ~ShmCleanup() {
      if (map != MAP_FAILED) ::munmap(map, bytes);
      ::shm_unlink(key.c_str());
    }
  } shm_cleanup{shm_key, shm_map, input_bytes};
  if (shm_map == MAP_FAILED) return Fail("cannot map shared memory " + shm_key);
  {
    auto res = client.Post("/v2/systemsharedmemory/region/input/register",
                           nlohmann::json{{"key", shm_key}, {"byte_size", input_bytes}}.dump(),
                           "application/json");
    if (!res || res->status != 200) return Fail("cannot register the shared memory region");
  }
  const std::string shm_body =
      nlohmann::json{
          {"parameters", {{"binary_data_output", true}}},
          {"inputs",
           {{{"name", "input"},
             {"shape", shape},
             {"datatype", "FP32"},
             {"parameters",
              {{"shared_memory_region", "input"}, {"shared_memory_byte_size", input_bytes}}}}}}}
          .dump();

  auto run_host = [&] { return static_cast<bool>(host.Infer("bench", inputs)); };
  auto run_http = [&] {
    auto res =
        client.Post("/v2/models/bench/infer", http_headers, body, "application/octet-stream");
    return res && res->status == 200 && res->has_header("Inference-Header-Content-Length");
  };
  auto run_shm = [&] {
    std::memcpy(shm_map, values.data(), input_bytes);  // the client writes its frame
    auto res = client.Post("/v2/models/bench/infer", shm_body, "application/json");
    return res && res->status == 200 && res->has_header("Inference-Header-Content-Length");
  };
  for (int i = 0; i < 10; ++i) {  // warm-up: allocations, caches, the connection
    if (!run_direct() || !run_host() || !run_http() || !run_shm()) {
      return Fail("warm-up inference failed");
    }
  }
  // Blocks of kBlock runs per path, the blocks interleaved (direct, host, HTTP, direct, ...):
  // drift in machine load hits all three alike, and within a block each path runs in its steady
  // state, as an app calling it in a loop would (a forward that just ran on this core finds its
  // weights and activations in the core's cache; alternating single runs would give the
  // same-thread paths that cache and the HTTP worker thread a cold one).
  constexpr int kBlock = 10;
  std::vector<double> direct, hosted, http, shm;
  auto timed = [](auto&& run, std::vector<double>& into) {
    auto t = Clock::now();
    if (!run()) return false;
    into.push_back(Ms(t));
    return true;
  };
  for (int block = 0; block * kBlock < runs; ++block) {
    for (int i = 0; i < kBlock; ++i) {
      if (!timed(run_direct, direct)) return Fail("direct forward failed");
    }
    for (int i = 0; i < kBlock; ++i) {
      if (!timed(run_host, hosted)) return Fail("host inference failed");
    }
    for (int i = 0; i < kBlock; ++i) {
      if (!timed(run_http, http)) return Fail("HTTP inference failed");
    }
    for (int i = 0; i < kBlock; ++i) {
      if (!timed(run_shm, shm)) return Fail("HTTP shared memory inference failed");
    }
  }
  if (std::getenv("EDGEFLEET_BENCH_VERBOSE") != nullptr) {
    // Transport alone: the same body to a model that does not exist (404 after the body read).
    std::vector<double> transport;
    for (int i = 0; i < runs; ++i) {
      auto t = Clock::now();
      auto res =
          client.Post("/v2/models/none/infer", http_headers, body, "application/octet-stream");
      transport.push_back(Ms(t));
    }
    std::printf("transport only (404): median %.3f ms\n", Median(transport));
    // The host driven from another thread, handed over like a server's worker does: separates
    // the cost of running on a different thread from the cost of HTTP.
    std::mutex mu;
    std::condition_variable cv;
    int pending = 0;
    bool done = false, stop = false;
    std::thread worker([&] {
      std::unique_lock lock(mu);
      while (true) {
        cv.wait(lock, [&] { return pending > 0 || stop; });
        if (stop) return;
        lock.unlock();
        (void)run_host();
        lock.lock();
        pending = 0;
        done = true;
        cv.notify_all();
      }
    });
    std::vector<double> handoff;
    for (int i = 0; i < runs; ++i) {
      auto t = Clock::now();
      std::unique_lock lock(mu);
      pending = 1;
      done = false;
      cv.notify_all();
      cv.wait(lock, [&] { return done; });
      handoff.push_back(Ms(t));
    }
    {
      std::lock_guard lock(mu);
      stop = true;
      cv.notify_all();
    }
    worker.join();
    std::printf("host on a worker thread: median %.3f ms\n", Median(handoff));
    auto mean = [](const std::vector<double>& v) {
      double sum = 0;
      for (double x : v) sum += x;
      return sum / static_cast<double>(v.size());
    };
    std::printf("means: direct %.3f host %.3f http %.3f shm %.3f ms\n", mean(direct), mean(hosted),
                mean(http), mean(shm));
  }
  (*api)->Stop();

  const double d = Median(direct), h = Median(hosted), w = Median(http), m = Median(shm);
  const bool host_ok = h <= 1.03 * d;
  const bool http_ok = std::min(w, m) <= d + 0.5;
  std::printf(
      "%s: model %s input %s, %zu runs per path in interleaved blocks of %d, %d thread(s)\n",
      engine.c_str(), model.c_str(), argv[2], direct.size(), kBlock, threads);
  std::printf("%-22s %10s %10s\n", "path", "median_ms", "p90_ms");
  std::printf("%-22s %10.3f %10.3f\n", engine == "opencv" ? "direct cv::dnn" : "direct ORT C API",
              d, Percentile(direct, 0.9));
  std::printf("%-22s %10.3f %10.3f\n", "model host", h, Percentile(hosted, 0.9));
  std::printf("%-22s %10.3f %10.3f\n", "HTTP (binary tensor)", w, Percentile(http, 0.9));
  std::printf("%-22s %10.3f %10.3f\n", "HTTP (shared memory)", m, Percentile(shm, 0.9));
  std::printf("host/direct = %.3fx (limit 1.03x): %s\n", h / d, host_ok ? "PASS" : "FAIL");
  std::printf("HTTP binary - direct = %+.3f ms (limit +0.5 ms): %s\n", w - d,
              w <= d + 0.5 ? "pass" : "over");
  std::printf("HTTP shm - direct = %+.3f ms (limit +0.5 ms): %s\n", m - d,
              m <= d + 0.5 ? "pass" : "over");
  std::printf("best HTTP path - direct = %+.3f ms (limit +0.5 ms): %s\n", std::min(w, m) - d,
              http_ok ? "PASS" : "FAIL");
  return host_ok && http_ok ? 0 : 1;
}
