#include "telemetry/accuracy_tracker.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace edgefleet::telemetry {
namespace {

TEST(ComputeTop1, SoftmaxOfLargestLogit) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f};
  Top1 top = ComputeTop1(logits);
  EXPECT_EQ(top.label, 1);
  const double expected = std::exp(3.0) / (std::exp(1.0) + std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(top.confidence, expected, 1e-9);
}

TEST(ComputeTop1, LargeLogitsDoNotOverflow) {
  const std::vector<float> logits = {1000.0f, 1000.0f, -1000.0f};
  Top1 top = ComputeTop1(logits);
  EXPECT_EQ(top.label, 0);  // first of equal maxima
  EXPECT_NEAR(top.confidence, 0.5, 1e-9);
}

TEST(ComputeTop1, EmptyAndNaN) {
  EXPECT_EQ(ComputeTop1({}).label, -1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {nan, 2.0f, nan};
  Top1 top = ComputeTop1(logits);
  EXPECT_EQ(top.label, 1);
  EXPECT_NEAR(top.confidence, 1.0, 1e-12);
}

TEST(AccuracyTracker, CountsLabeledAndCorrect) {
  AccuracyTracker t;
  t.RecordPrediction("a", {3, 0.9});
  t.RecordPrediction("b", {5, 0.7});
  t.RecordPrediction("c", {1, 0.8});
  EXPECT_EQ(t.Feedback("a", 3), FeedbackOutcome::kCorrect);
  EXPECT_EQ(t.Feedback("b", 4), FeedbackOutcome::kWrong);
  AccuracySnapshot s = t.Snapshot();
  EXPECT_EQ(s.predictions, 3u);
  EXPECT_EQ(s.labeled, 2u);
  EXPECT_EQ(s.correct, 1u);
  EXPECT_DOUBLE_EQ(s.accuracy(), 0.5);
  EXPECT_NEAR(s.confidence_mean, 0.8, 1e-12);
  EXPECT_NEAR(s.confidence_std, std::sqrt(((0.1 * 0.1) * 2) / 3), 1e-12);
}

TEST(AccuracyTracker, UnknownAndDuplicateIdsAreRefusedAndCounted) {
  AccuracyTracker t;
  t.RecordPrediction("a", {3, 0.9});
  EXPECT_EQ(t.Feedback("nope", 3), FeedbackOutcome::kUnknownId);
  EXPECT_EQ(t.Feedback("a", 3), FeedbackOutcome::kCorrect);
  EXPECT_EQ(t.Feedback("a", 3), FeedbackOutcome::kDuplicate);
  EXPECT_EQ(t.Feedback("a", 2), FeedbackOutcome::kDuplicate);  // no second chance either
  AccuracySnapshot s = t.Snapshot();
  EXPECT_EQ(s.labeled, 1u);
  EXPECT_EQ(s.correct, 1u);
  EXPECT_EQ(s.unknown_feedback, 1u);
  EXPECT_EQ(s.duplicate_feedback, 2u);
}

TEST(AccuracyTracker, OldestIdsAreEvictedAndCounted) {
  AccuracyTracker t(3);
  t.RecordPrediction("1", {1, 1});
  t.RecordPrediction("2", {2, 1});
  EXPECT_EQ(t.Feedback("2", 2), FeedbackOutcome::kCorrect);
  t.RecordPrediction("3", {3, 1});
  t.RecordPrediction("4", {4, 1});  // evicts "1" (unlabeled: counted)
  t.RecordPrediction("5", {5, 1});  // evicts "2" (labeled: not an eviction of pending work)
  EXPECT_FALSE(t.Knows("1"));
  EXPECT_FALSE(t.Knows("2"));
  EXPECT_TRUE(t.Knows("3"));
  EXPECT_EQ(t.Feedback("1", 1), FeedbackOutcome::kUnknownId);
  EXPECT_EQ(t.Feedback("5", 5), FeedbackOutcome::kCorrect);
  AccuracySnapshot s = t.Snapshot();
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_EQ(s.predictions, 5u);
}

TEST(AccuracyTracker, DefaultCapacityHoldsTenThousandIds) {
  AccuracyTracker t;
  for (int i = 0; i < 10001; ++i) t.RecordPrediction(std::to_string(i), {0, 0.5});
  EXPECT_FALSE(t.Knows("0"));
  EXPECT_TRUE(t.Knows("1"));
  EXPECT_TRUE(t.Knows("10000"));
  EXPECT_EQ(t.Snapshot().evicted, 1u);
}

TEST(AccuracyTracker, RepeatedIdReplacesPrediction) {
  AccuracyTracker t(2);
  t.RecordPrediction("x", {1, 1});
  EXPECT_EQ(t.Feedback("x", 1), FeedbackOutcome::kCorrect);
  t.RecordPrediction("x", {2, 1});  // the client reused the id: the new prediction counts
  EXPECT_EQ(t.Feedback("x", 2), FeedbackOutcome::kCorrect);
  t.RecordPrediction("y", {0, 1});
  EXPECT_TRUE(t.Knows("x"));  // one entry, not two
  EXPECT_EQ(t.Snapshot().labeled, 2u);
}

TEST(AccuracyTracker, ConcurrentPredictionsAndFeedback) {
  AccuracyTracker t(1000000);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&t, th] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = std::to_string(th) + "-" + std::to_string(i);
        t.RecordPrediction(id, {i % 10, 0.5});
        t.Feedback(id, i % 2 == 0 ? i % 10 : (i + 1) % 10);
      }
    });
  }
  for (auto& th : threads) th.join();
  AccuracySnapshot s = t.Snapshot();
  EXPECT_EQ(s.predictions, static_cast<std::uint64_t>(kThreads) * kPerThread);
  EXPECT_EQ(s.labeled, static_cast<std::uint64_t>(kThreads) * kPerThread);
  EXPECT_EQ(s.correct, static_cast<std::uint64_t>(kThreads) * kPerThread / 2);
  EXPECT_NEAR(s.confidence_mean, 0.5, 1e-9);
  EXPECT_NEAR(s.confidence_std, 0.0, 1e-9);
}

}  // namespace
}  // namespace edgefleet::telemetry
