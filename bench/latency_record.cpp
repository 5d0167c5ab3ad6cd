// Telemetry (issue 5, acceptance 5): the cost of LatencyHistogram::Record per sample, on one
// thread and with 2 threads recording into the same histogram (as concurrent requests of one
// model version do), against peers in the same run: a relaxed atomic fetch_add on one shared
// counter (the floor of any lock-free counter) and a std::mutex-protected increment (what a
// locked histogram would cost at least). Run through bench/latency_record.sh, which checks the
// median against the budget of 100 ns per sample.
#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "telemetry/latency_histogram.hpp"

namespace {

using edgefleet::telemetry::LatencyHistogram;

// Samples spread over the buckets (0.05 ms to 20 s, log-uniform-ish), so the bucket search and
// the counters touched vary as in real traffic instead of hitting one cache line.
const std::array<double, 64>& Samples() {
  static const std::array<double, 64> samples = [] {
    std::array<double, 64> s{};
    double ms = 0.05;
    for (auto& v : s) {
      v = ms;
      ms *= 1.2;
    }
    return s;
  }();
  return samples;
}

LatencyHistogram& SharedHistogram() {
  static LatencyHistogram histogram;
  return histogram;
}

void BM_LatencyRecord(benchmark::State& state) {
  LatencyHistogram& histogram = SharedHistogram();
  const auto& samples = Samples();
  // Threads start at different samples so they do not walk the buckets in lockstep.
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 17;
  for (auto _ : state) {
    histogram.Record(samples[i++ & (samples.size() - 1)]);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LatencyRecord)->UseRealTime();
BENCHMARK(BM_LatencyRecord)->Threads(2)->UseRealTime();

std::atomic<std::uint64_t> g_counter{0};

void BM_AtomicFetchAdd(benchmark::State& state) {
  for (auto _ : state) {
    g_counter.fetch_add(1, std::memory_order_relaxed);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AtomicFetchAdd)->UseRealTime();
BENCHMARK(BM_AtomicFetchAdd)->Threads(2)->UseRealTime();

std::mutex g_mutex;
std::uint64_t g_locked_counter = 0;  // guarded by g_mutex

void BM_MutexIncrement(benchmark::State& state) {
  for (auto _ : state) {
    std::lock_guard<std::mutex> lock(g_mutex);
    ++g_locked_counter;
    benchmark::DoNotOptimize(g_locked_counter);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MutexIncrement)->UseRealTime();
BENCHMARK(BM_MutexIncrement)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
