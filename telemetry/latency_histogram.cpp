#include "telemetry/latency_histogram.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace edgefleet::telemetry {
namespace {

constexpr double kNsPerMs = 1e6;

std::size_t BucketOf(double ms) {
  // lower_bound: the first bound >= ms, because buckets are inclusive upper bounds (`le`).
  auto it = std::lower_bound(kLatencyBoundsMs.begin(), kLatencyBoundsMs.end(), ms);
  return static_cast<std::size_t>(it - kLatencyBoundsMs.begin());
}

}  // namespace

double LatencySnapshot::Quantile(double q) const {
  if (count == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const double rank = q * static_cast<double>(count);
  std::size_t i = 0;
  while (i + 1 < kLatencyBuckets && static_cast<double>(buckets[i]) < rank) ++i;
  const double below = i == 0 ? 0.0 : static_cast<double>(buckets[i - 1]);
  const double in_bucket = static_cast<double>(buckets[i]) - below;
  const double lower = i == 0 ? 0.0 : kLatencyBoundsMs[i - 1];
  // The +inf bucket has no upper bound; the largest sample is the best one we know.
  double upper = i < kLatencyBoundsMs.size() ? kLatencyBoundsMs[i] : std::max(max_ms, lower);
  upper = std::min(upper, std::max(max_ms, lower));
  if (in_bucket <= 0) return upper;
  const double estimate = lower + (upper - lower) * ((rank - below) / in_bucket);
  return std::min(estimate, max_ms);
}

void LatencySnapshot::UpdatePercentiles() {
  p50 = Quantile(0.50);
  p90 = Quantile(0.90);
  p95 = Quantile(0.95);
  p99 = Quantile(0.99);
}

void LatencySnapshot::Merge(const LatencySnapshot& other) {
  count += other.count;
  sum_ms += other.sum_ms;
  max_ms = std::max(max_ms, other.max_ms);
  for (std::size_t i = 0; i < kLatencyBuckets; ++i) buckets[i] += other.buckets[i];
  UpdatePercentiles();
}

std::string LatencySnapshot::BucketKey(std::size_t i) {
  if (i >= kLatencyBoundsMs.size()) return "le_inf";
  char text[32];
  std::snprintf(text, sizeof(text), "le_%g", kLatencyBoundsMs[i]);
  return text;
}

void LatencyHistogram::Record(double ms) {
  if (!(ms > 0)) ms = 0;  // also catches NaN
  if (ms > kMaxSampleMs) ms = kMaxSampleMs;
  counts_[BucketOf(ms)].fetch_add(1, std::memory_order_relaxed);
  const auto ns = static_cast<std::uint64_t>(std::llround(ms * kNsPerMs));
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  // Usually one relaxed load: the CAS loop only runs when this sample is a new maximum.
  std::uint64_t seen = max_ns_.load(std::memory_order_relaxed);
  while (ns > seen && !max_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
}

namespace {

LatencySnapshot Build(const std::array<std::uint64_t, kLatencyBuckets>& counts,
                      std::uint64_t sum_ns, std::uint64_t max_ns) {
  LatencySnapshot s;
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < kLatencyBuckets; ++i) {
    running += counts[i];
    s.buckets[i] = running;
  }
  s.count = running;
  s.sum_ms = static_cast<double>(sum_ns) / kNsPerMs;
  s.max_ms = static_cast<double>(max_ns) / kNsPerMs;
  s.UpdatePercentiles();
  return s;
}

}  // namespace

LatencySnapshot LatencyHistogram::Snapshot() const {
  std::array<std::uint64_t, kLatencyBuckets> counts{};
  for (std::size_t i = 0; i < kLatencyBuckets; ++i) {
    counts[i] = counts_[i].load(std::memory_order_relaxed);
  }
  return Build(counts, sum_ns_.load(std::memory_order_relaxed),
               max_ns_.load(std::memory_order_relaxed));
}

LatencySnapshot LatencyHistogram::SnapshotAndReset() {
  std::array<std::uint64_t, kLatencyBuckets> counts{};
  for (std::size_t i = 0; i < kLatencyBuckets; ++i) {
    counts[i] = counts_[i].exchange(0, std::memory_order_relaxed);
  }
  return Build(counts, sum_ns_.exchange(0, std::memory_order_relaxed),
               max_ns_.exchange(0, std::memory_order_relaxed));
}

}  // namespace edgefleet::telemetry
