#include "telemetry/latency_histogram.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <vector>

namespace edgefleet::telemetry {
namespace {

TEST(LatencyHistogram, EmptySnapshotIsZero) {
  LatencyHistogram h;
  LatencySnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.sum_ms, 0);
  EXPECT_EQ(s.max_ms, 0);
  EXPECT_EQ(s.p50, 0);
  EXPECT_EQ(s.p99, 0);
  for (auto b : s.buckets) EXPECT_EQ(b, 0u);
}

TEST(LatencyHistogram, BoundsAreInclusiveAndBucketsCumulative) {
  LatencyHistogram h;
  h.Record(0.1);     // le_0.1 (inclusive upper bound)
  h.Record(0.1001);  // le_0.25
  h.Record(1.0);     // le_1
  h.Record(10000);   // le_10000
  h.Record(10001);   // +inf only
  LatencySnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 5u);
  EXPECT_EQ(s.buckets[0], 1u);   // le_0.1
  EXPECT_EQ(s.buckets[1], 2u);   // le_0.25
  EXPECT_EQ(s.buckets[2], 2u);   // le_0.5
  EXPECT_EQ(s.buckets[3], 3u);   // le_1
  EXPECT_EQ(s.buckets[15], 4u);  // le_10000
  EXPECT_EQ(s.buckets[16], 5u);  // le_inf
  EXPECT_NEAR(s.sum_ms, 0.1 + 0.1001 + 1 + 10000 + 10001, 1e-6);
  EXPECT_DOUBLE_EQ(s.max_ms, 10001);
  for (std::size_t i = 1; i < kLatencyBuckets; ++i) EXPECT_GE(s.buckets[i], s.buckets[i - 1]);
}

TEST(LatencyHistogram, BucketKeys) {
  EXPECT_EQ(LatencySnapshot::BucketKey(0), "le_0.1");
  EXPECT_EQ(LatencySnapshot::BucketKey(1), "le_0.25");
  EXPECT_EQ(LatencySnapshot::BucketKey(4), "le_2.5");
  EXPECT_EQ(LatencySnapshot::BucketKey(15), "le_10000");
  EXPECT_EQ(LatencySnapshot::BucketKey(16), "le_inf");
}

TEST(LatencyHistogram, OddSamplesAreCountedNotLost) {
  LatencyHistogram h;
  h.Record(-3);  // a clock that stepped back
  h.Record(std::numeric_limits<double>::quiet_NaN());
  h.Record(std::numeric_limits<double>::infinity());
  LatencySnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.buckets[0], 2u);
  EXPECT_EQ(s.buckets[16], 3u);
  EXPECT_DOUBLE_EQ(s.max_ms, LatencyHistogram::kMaxSampleMs);
  EXPECT_TRUE(std::isfinite(s.p99));
}

// Uniform on [0, 10] ms: the true quantiles are 10q; buckets there are 0.1..10 wide, and
// interpolation inside a bucket is exact for a uniform density, so estimates are close.
TEST(LatencyHistogram, PercentilesOfUniformDistribution) {
  LatencyHistogram h;
  const int n = 100000;
  for (int i = 0; i < n; ++i) h.Record(10.0 * (i + 0.5) / n);
  LatencySnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, static_cast<std::uint64_t>(n));
  EXPECT_NEAR(s.p50, 5.0, 0.01);
  EXPECT_NEAR(s.p90, 9.0, 0.01);
  EXPECT_NEAR(s.p95, 9.5, 0.01);
  EXPECT_NEAR(s.p99, 9.9, 0.01);
  EXPECT_NEAR(s.sum_ms, 10.0 * n / 2, 1e-3);
  EXPECT_LE(s.p99, s.max_ms);
}

// A constant latency: every estimate must stay inside the one bucket and never pass the max.
TEST(LatencyHistogram, PercentilesOfConstantStayInItsBucketAndBelowMax) {
  LatencyHistogram h;
  for (int i = 0; i < 1000; ++i) h.Record(3.0);
  LatencySnapshot s = h.Snapshot();
  for (double p : {s.p50, s.p90, s.p95, s.p99}) {
    EXPECT_GT(p, 2.5);
    EXPECT_LE(p, 3.0);
  }
  // Interpolation runs from the bucket's lower bound to the observed max, not to le_5.
  EXPECT_NEAR(s.p50, 2.75, 1e-9);
  EXPECT_NEAR(s.p99, 2.995, 1e-9);
}

// Exponential latencies (mean 20 ms): the estimate must fall inside the bucket that holds the
// true quantile, which is the guarantee bucketed percentiles give.
TEST(LatencyHistogram, PercentilesOfExponentialFallInTheTrueBucket) {
  LatencyHistogram h;
  std::mt19937_64 rng(7);
  std::exponential_distribution<double> exp_dist(1.0 / 20.0);
  std::vector<double> samples(200000);
  for (double& v : samples) {
    v = exp_dist(rng);
    h.Record(v);
  }
  std::sort(samples.begin(), samples.end());
  LatencySnapshot s = h.Snapshot();
  auto bucket_of = [](double ms) {
    return std::lower_bound(kLatencyBoundsMs.begin(), kLatencyBoundsMs.end(), ms) -
           kLatencyBoundsMs.begin();
  };
  for (auto [q, estimate] : {std::pair{0.5, s.p50}, {0.9, s.p90}, {0.95, s.p95}, {0.99, s.p99}}) {
    const double truth = samples[static_cast<std::size_t>(q * samples.size())];
    EXPECT_EQ(bucket_of(estimate), bucket_of(truth))
        << "q=" << q << " est=" << estimate << " truth=" << truth;
    EXPECT_NEAR(estimate, truth, 0.25 * truth) << "q=" << q;
  }
}

TEST(LatencyHistogram, MergeEqualsRecordingEverythingInOne) {
  LatencyHistogram a, b, both;
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> dist(1.0, 1.5);
  for (int i = 0; i < 5000; ++i) {
    const double v = dist(rng);
    (i % 3 == 0 ? a : b).Record(v);
    both.Record(v);
  }
  LatencySnapshot merged = a.Snapshot();
  merged.Merge(b.Snapshot());
  LatencySnapshot expected = both.Snapshot();
  EXPECT_EQ(merged.count, expected.count);
  EXPECT_EQ(merged.buckets, expected.buckets);
  EXPECT_NEAR(merged.sum_ms, expected.sum_ms, 1e-6);
  EXPECT_DOUBLE_EQ(merged.max_ms, expected.max_ms);
  EXPECT_DOUBLE_EQ(merged.p50, expected.p50);
  EXPECT_DOUBLE_EQ(merged.p99, expected.p99);
}

TEST(LatencyHistogram, SnapshotAndResetStartsANewWindow) {
  LatencyHistogram h;
  h.Record(1);
  h.Record(2);
  LatencySnapshot first = h.SnapshotAndReset();
  EXPECT_EQ(first.count, 2u);
  EXPECT_DOUBLE_EQ(first.max_ms, 2);
  h.Record(0.2);
  LatencySnapshot second = h.Snapshot();
  EXPECT_EQ(second.count, 1u);
  EXPECT_DOUBLE_EQ(second.max_ms, 0.2);
  EXPECT_NEAR(second.sum_ms, 0.2, 1e-9);
}

// Four threads record known values; every count, bucket and the sum must be exact.
TEST(LatencyHistogram, ConcurrentRecordingLosesNothing) {
  LatencyHistogram h;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h, t] {
      // Thread t records t+1 ms (1, 2, 3, 4): buckets le_1, le_2.5 (x2), le_5.
      for (int i = 0; i < kPerThread; ++i) h.Record(t + 1.0);
    });
  }
  for (auto& th : threads) th.join();
  LatencySnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, static_cast<std::uint64_t>(kThreads) * kPerThread);
  EXPECT_EQ(s.buckets[3], static_cast<std::uint64_t>(kPerThread));      // le_1
  EXPECT_EQ(s.buckets[4], static_cast<std::uint64_t>(2 * kPerThread));  // le_2.5
  EXPECT_EQ(s.buckets[5], static_cast<std::uint64_t>(4 * kPerThread));  // le_5
  EXPECT_DOUBLE_EQ(s.sum_ms, 10.0 * kPerThread);
  EXPECT_DOUBLE_EQ(s.max_ms, 4);
}

// Windows taken while threads record: nothing is lost or counted twice across windows.
TEST(LatencyHistogram, WindowsUnderConcurrencyAddUp) {
  LatencyHistogram h;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < kPerThread; ++i) h.Record(0.5);
    });
  }
  LatencySnapshot total;
  for (int i = 0; i < 50; ++i) total.Merge(h.SnapshotAndReset());
  for (auto& th : threads) th.join();
  total.Merge(h.SnapshotAndReset());
  EXPECT_EQ(total.count, static_cast<std::uint64_t>(kThreads) * kPerThread);
  EXPECT_NEAR(total.sum_ms, 0.5 * kThreads * kPerThread, 1e-6);
}

}  // namespace
}  // namespace edgefleet::telemetry
