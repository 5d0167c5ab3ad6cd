// Latency histograms for per-model-version telemetry windows and /metrics.
//
// Fixed bucket bounds (kLatencyBoundsMs) shared by every box, so cumulative `le_*` counts with
// their sum and count can be added across windows and across the fleet (the Prometheus /
// Telegraf convention); percentiles alone cannot be merged, so they are always derived from the
// buckets. Record() is a handful of relaxed atomic operations and never takes a lock, because
// it sits on every inference's path (issue 5's budget is < 100 ns per sample).
//
// Thread safety: LatencyHistogram's methods may be called from any number of threads at once.
// A Snapshot() taken while other threads record is not a single instant: a sample recorded
// concurrently may be in the buckets but not yet in the sum (or the reverse). count always equals
// the +inf bucket. SnapshotAndReset() moves every sample to exactly one window, so totals over
// consecutive windows are exact. LatencySnapshot is a plain value.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace edgefleet::telemetry {

// Upper bounds in milliseconds (inclusive, like Prometheus `le`), plus an implicit +inf bucket.
// A 1-2.5-5 series, roughly x2.5 per step: 0.1 ms resolves tiny models (the digits CNN runs in
// ~0.1 ms) and 10 s still separates a large model on a slow ARM box from a hung one. The ratio
// bounds the error of an interpolated percentile to one bucket's width; 17 buckets keep a
// telemetry window small. The bounds never change: changing them would make windows from
// different agent versions impossible to merge.
inline constexpr std::array<double, 16> kLatencyBoundsMs = {
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
inline constexpr std::size_t kLatencyBuckets = kLatencyBoundsMs.size() + 1;  // with +inf

struct LatencySnapshot {
  std::uint64_t count = 0;
  double sum_ms = 0;
  double max_ms = 0;
  // Cumulative: buckets[i] counts samples <= kLatencyBoundsMs[i]; the last is +inf (== count).
  std::array<std::uint64_t, kLatencyBuckets> buckets{};
  // Estimated from the buckets by linear interpolation inside the bucket that holds the rank
  // (as Prometheus' histogram_quantile does), capped at max_ms; within the +inf bucket the
  // estimate runs from the last bound up to max_ms. 0 when count is 0.
  double p50 = 0;
  double p90 = 0;
  double p95 = 0;
  double p99 = 0;

  // Quantile q in [0, 1] estimated as above (q outside is clamped).
  double Quantile(double q) const;
  // Adds `other` as if every sample of both had been recorded into one histogram: counts, sum
  // and buckets add exactly, max is the larger, percentiles are recomputed from the buckets.
  void Merge(const LatencySnapshot& other);
  // Recomputes p50..p99 from the buckets (after editing buckets by hand, e.g. when decoding).
  void UpdatePercentiles();

  // "le_0.1", "le_2.5", ..., "le_inf": the key of bucket i in telemetry payloads.
  static std::string BucketKey(std::size_t i);
};

class LatencyHistogram {
 public:
  static constexpr double kMaxSampleMs = 1e9;

  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  // Records one sample in milliseconds. Negative values and NaN count as 0 (a clock that stepped
  // back must not vanish from the count); values above kMaxSampleMs (11.5 days, including +inf)
  // count as kMaxSampleMs, so the integer nanosecond sum cannot overflow in practice.
  void Record(double ms);
  LatencySnapshot Snapshot() const;
  // Returns the samples since the last reset and starts an empty window.
  LatencySnapshot SnapshotAndReset();

 private:
  // Not cumulative: counts_[i] holds the samples of bucket i only, so Record touches one counter.
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets> counts_{};
  // Integer nanoseconds, so concurrent sums are exact and independent of the order of adds.
  std::atomic<std::uint64_t> sum_ns_{0};
  std::atomic<std::uint64_t> max_ns_{0};
};

}  // namespace edgefleet::telemetry
