// Benchmark: how the opencv backend should serve concurrent Run calls, measured.
//
// A cv::dnn::Net must not run on two threads at once. The two designs:
//   lock  one net behind one lock (the opencv session with parallel_runs = 1)
//   pool  N nets, a request takes a free one (parallel_runs = N)
// Both go through the real Session (runtime/opencv/opencv_backend.cpp), whose pool of one net
// is exactly the locked design. The peer in the same run is a bare cv::dnn forward on one
// thread (setInput + forward, no checks, no lock): the ceiling for one client.
//
// For 1, 2 and 4 client threads, each sending batch-1 digits images back to back for a fixed
// time, it prints throughput and p50/p99 latency; OpenCV's own thread count (cv::setNumThreads,
// SessionOptions::threads) is varied too because OpenCV parallelises inside one forward.
// Every configuration runs `reps` times, interleaved with the others (so background load hits
// all designs alike); the table shows the median repetition by throughput.
//
//   opencv_concurrency [--model FILE] [--seconds S=0.5] [--reps R=7]
#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/dnn.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_stats.hpp"
#include "runtime/plugin_backend.hpp"
#include "runtime/tensor.hpp"

namespace {

using edgefleet::bench::Percentile;

using Clock = std::chrono::steady_clock;
using edgefleet::runtime::Session;
using edgefleet::runtime::Tensor;

struct Config {
  std::string design;  // "direct", "lock", "pool2", "pool4"
  int parallel_runs = 1;
  int cv_threads = 1;
  int clients = 1;
};

struct Sample {
  double seconds = 0;
  std::vector<double> latencies_us;
  int errors = 0;
  double Throughput() const { return static_cast<double>(latencies_us.size()) / seconds; }
};

// `run` is called by `clients` threads until `seconds` pass (after a warm-up of a fifth of that
// with the same threads, so every net in a pool has set itself up for batch 1).
template <typename Fn>
Sample Measure(int clients, double seconds, Fn&& run) {
  auto phase = [&](double secs, bool record) {
    Sample sample;
    std::vector<std::vector<double>> lat(static_cast<std::size_t>(clients));
    std::atomic<int> errors{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    const auto start = Clock::now();
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        auto& mine = lat[static_cast<std::size_t>(c)];
        while (!stop.load(std::memory_order_relaxed)) {
          const auto t0 = Clock::now();
          if (!run()) errors.fetch_add(1);
          const auto t1 = Clock::now();
          if (record) mine.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
    stop = true;
    for (auto& t : threads) t.join();
    sample.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    for (auto& l : lat) sample.latencies_us.insert(sample.latencies_us.end(), l.begin(), l.end());
    sample.errors = errors.load();
    return sample;
  };
  phase(seconds / 5, false);
  return phase(seconds, true);
}

// The machine is shared (2 cores, other builds): the load average goes into the output so a
// noisy run can be recognised.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = EDGEFLEET_SOURCE_DIR "/tests/data/digits/v1/model/digits_op10.onnx";
  std::string golden = EDGEFLEET_SOURCE_DIR "/tests/data/digits/v1/golden/heldout/input_0.pb";
  double seconds = 0.5;
  int reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--model") {
      model = argv[i + 1];
    } else if (flag == "--seconds") {
      seconds = std::atof(argv[i + 1]);
    } else if (flag == "--reps") {
      reps = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: %s [--model FILE] [--seconds S] [--reps R]\n", argv[0]);
      return 2;
    }
  }

  // One batch-1 image per request, cycling through the held-out set.
  auto batch = edgefleet::runtime::ReadTensorProto(golden);
  if (!batch) {
    std::fprintf(stderr, "%s\n", batch.error().message.c_str());
    return 1;
  }
  std::vector<Tensor> images;
  for (std::int64_t r = 0; r < batch->shape[0]; ++r) {
    images.push_back(*Tensor::FromFloats(
        "input", {1, 1, 8, 8}, batch->As<float>().subspan(static_cast<std::size_t>(r) * 64, 64)));
  }

  edgefleet::manifests::Variant variant;
  variant.id = "bench";
  variant.file = model;
  variant.format = "onnx";
  variant.inputs = {{"input", "float32", {-1, 1, 8, 8}}};
  variant.outputs = {{"logits", "float32", {-1, 10}}};
  auto backend = edgefleet::runtime::LoadBackendPlugin(EDGEFLEET_BACKENDS_DIR
                                                       "/libedgefleet_backend_opencv.so");
  if (!backend) return 1;
  const std::string model_bytes = ReadFile(model);

  std::vector<Config> configs;
  for (int cv_threads : {1, 2}) {
    configs.push_back({"direct", 0, cv_threads, 1});
    for (int clients : {1, 2, 4}) {
      configs.push_back({"lock", 1, cv_threads, clients});
      configs.push_back({"pool2", 2, cv_threads, clients});
      configs.push_back({"pool4", 4, cv_threads, clients});
    }
  }

  const std::string load_before = LoadAverage();
  std::vector<std::vector<Sample>> samples(configs.size());
  for (int rep = 0; rep < reps; ++rep) {
    for (std::size_t c = 0; c < configs.size(); ++c) {
      const Config& cfg = configs[c];
      std::atomic<std::size_t> next{0};
      if (cfg.design == "direct") {
        cv::setNumThreads(cfg.cv_threads);
        cv::dnn::Net net = cv::dnn::readNetFromONNX(model_bytes.data(), model_bytes.size());
        net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
        net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
        const int sizes[] = {1, 1, 8, 8};
        samples[c].push_back(Measure(1, seconds, [&] {
          const Tensor& img = images[next++ % images.size()];
          cv::Mat blob(4, sizes, CV_32F, const_cast<float*>(img.As<float>().data()));
          net.setInput(blob);
          cv::Mat out = net.forward();
          return out.total() == 10;
        }));
        continue;
      }
      auto session = (*backend)->Load(
          model, variant, {.threads = cfg.cv_threads, .parallel_runs = cfg.parallel_runs});
      if (!session) {
        std::fprintf(stderr, "%s\n", session.error().message.c_str());
        return 1;
      }
      Session& s = **session;
      samples[c].push_back(Measure(cfg.clients, seconds, [&] {
        auto out = s.Run({images[next++ % images.size()]});
        return out.has_value();
      }));
    }
  }

  std::printf("model %s, batch 1, %.1f s per run, median of %d runs by throughput\n", model.c_str(),
              seconds, reps);
  std::printf("load average before %s, after %s\n", load_before.c_str(), LoadAverage().c_str());
  std::printf("| cv threads | design | clients | req/s | p50 us | p99 us | errors |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (std::size_t c = 0; c < configs.size(); ++c) {
    auto& runs = samples[c];
    std::sort(runs.begin(), runs.end(),
              [](const Sample& a, const Sample& b) { return a.Throughput() < b.Throughput(); });
    const Sample& m = runs[runs.size() / 2];
    std::printf("| %d | %s | %d | %.0f | %.1f | %.1f | %d |\n", configs[c].cv_threads,
                configs[c].design.c_str(), configs[c].clients, m.Throughput(),
                Percentile(m.latencies_us, 0.50), Percentile(m.latencies_us, 0.99), m.errors);
  }
  return 0;
}
