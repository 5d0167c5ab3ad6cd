// The timing helpers the in-process engine benchmarks share (torch_overhead, tflite_overhead,
// opencv_concurrency): a nearest-rank percentile and a loop that times each call of a function.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace edgefleet::bench {

// The p-quantile (0..1) of `v` by nearest rank; 0 for an empty sample.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// Calls `fn` `runs` times and appends each call's wall time in milliseconds to `out`.
template <typename Fn>
void Time(int runs, std::vector<double>& out, Fn&& fn) {
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    out.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
}

}  // namespace edgefleet::bench
