// ServingStats, the one home of serving numbers: what the local API records is what the watch
// (Stats), the telemetry windows (TakeWindows) and /metrics (PrometheusText) read.
#include "agent/serving_stats.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace edgefleet::agent {
namespace {

TEST(ServingStatsTest, StatsCountEachOutcomeOfOneVersionOnly) {
  ServingStats stats;
  stats.RecordSuccess("digits", "1.0.0", {1, 2, 3, 6}, "a", std::nullopt);
  stats.RecordSuccess("digits", "1.0.0", {1, 2, 3, 6}, "b", std::nullopt);
  stats.RecordFailure("digits", "1.0.0", 400);
  stats.RecordFailure("digits", "1.0.0", 500);
  stats.RecordFailure("digits", "1.1.0", 503);
  const VersionStats s = stats.Stats("digits", "1.0.0");
  EXPECT_EQ(s.requests, 4u);
  EXPECT_EQ(s.client_errors, 1u);
  EXPECT_EQ(s.server_errors, 1u);
  EXPECT_EQ(s.latency.count, 2u) << "only successful requests have a latency";
  EXPECT_DOUBLE_EQ(s.latency.sum_ms, 12);
  EXPECT_EQ(stats.Stats("digits", "1.1.0").server_errors, 1u);
  const VersionStats none = stats.Stats("digits", "9.9.9");
  EXPECT_EQ(none.requests, 0u);
  EXPECT_EQ(stats.Stats("other", "1.0.0").requests, 0u);
}

TEST(ServingStatsTest, EachRequestBelongsToExactlyOneWindow) {
  ServingStats stats;
  stats.RecordSuccess("digits", "1.0.0", {1, 2, 3, 6}, "a", telemetry::Top1{3, 0.5});
  stats.RecordFailure("digits", "1.0.0", 400);
  auto first = stats.TakeWindows();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].requests, 2u);
  EXPECT_EQ(first[0].client_errors, 1u);
  EXPECT_EQ(first[0].latency.count, 1u);
  EXPECT_DOUBLE_EQ(first[0].infer_ms, 2);
  EXPECT_EQ(first[0].predictions, 1u);
  EXPECT_DOUBLE_EQ(first[0].confidence_mean, 0.5);

  auto quiet = stats.TakeWindows();
  ASSERT_EQ(quiet.size(), 1u) << "a version with nothing in the window is still reported";
  EXPECT_EQ(quiet[0].requests, 0u);
  EXPECT_EQ(quiet[0].latency.count, 0u);
  EXPECT_EQ(quiet[0].predictions, 0u);

  stats.RecordSuccess("digits", "1.0.0", {0, 1, 0, 1}, "b", telemetry::Top1{1, 0.9});
  stats.RecordSuccess("digits", "1.0.0", {0, 1, 0, 1}, "c", telemetry::Top1{1, 0.7});
  ASSERT_EQ(stats.Feedback("digits", "a", 3).outcome, FeedbackResult::Outcome::kCorrect);
  auto third = stats.TakeWindows();
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0].requests, 2u);
  EXPECT_EQ(third[0].labeled, 1u) << "feedback counts in the window it arrived in";
  EXPECT_EQ(third[0].correct, 1u);
  EXPECT_NEAR(third[0].confidence_mean, 0.8, 1e-9) << "the window's predictions only";
  EXPECT_NEAR(third[0].confidence_std, 0.1, 1e-9);
  // The watch's view is cumulative and unaffected by windows.
  EXPECT_EQ(stats.Stats("digits", "1.0.0").requests, 4u);
}

TEST(ServingStatsTest, FeedbackFindsTheVersionThatServedTheRequest) {
  ServingStats stats;
  stats.RecordSuccess("digits", "1.0.0", {}, "old", telemetry::Top1{7, 0.8});
  stats.RecordSuccess("digits", "1.1.0", {}, "new", telemetry::Top1{2, 0.6});
  stats.RecordSuccess("digits", "1.1.0", {}, "no-top1", std::nullopt);

  FeedbackResult fb = stats.Feedback("digits", "old", 7);
  EXPECT_EQ(fb.outcome, FeedbackResult::Outcome::kCorrect);
  EXPECT_EQ(fb.version, "1.0.0");
  EXPECT_EQ(fb.accuracy.labeled, 1u);
  fb = stats.Feedback("digits", "new", 5);
  EXPECT_EQ(fb.outcome, FeedbackResult::Outcome::kWrong);
  EXPECT_EQ(fb.version, "1.1.0");
  EXPECT_EQ(stats.Feedback("digits", "new", 2).outcome, FeedbackResult::Outcome::kDuplicate);
  EXPECT_EQ(stats.Feedback("digits", "no-top1", 2).outcome, FeedbackResult::Outcome::kUnknownId);
  EXPECT_EQ(stats.Feedback("other", "old", 7).outcome, FeedbackResult::Outcome::kUnknownId);

  const VersionStats s = stats.Stats("digits", "1.1.0");
  EXPECT_EQ(s.labeled, 1u);
  EXPECT_EQ(s.correct, 0u);
  const std::string text = stats.PrometheusText();
  EXPECT_NE(text.find("edgefleet_feedback_unknown_total 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("edgefleet_feedback_duplicate_total{model=\"digits\",version=\"1.1.0\"} 1"),
            std::string::npos)
      << text;
}

TEST(ServingStatsTest, PrometheusTextEscapesLabelsAndListsEveryFamily) {
  ServingStats stats;
  stats.RecordSuccess("a\"b\\c\nd", "1.0.0", {0, 0.2, 0, 0.3}, "x", std::nullopt);
  stats.RecordFailure("a\"b\\c\nd", "1.0.0", 502);
  const std::string text = stats.PrometheusText();
  EXPECT_NE(text.find("edgefleet_inference_requests_total{model=\"a\\\"b\\\\c\\nd\",version=\"1."
                      "0.0\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("class=\"server\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("le=\"0.0005\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("stage=\"infer\"} 0.0002\n"), std::string::npos) << text;
  for (const char* family :
       {"edgefleet_inference_requests_total", "edgefleet_inference_errors_total",
        "edgefleet_inference_latency_seconds", "edgefleet_inference_stage_seconds_total",
        "edgefleet_predictions_total", "edgefleet_feedback_labeled_total",
        "edgefleet_feedback_unknown_total", "edgefleet_top1_confidence_mean"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
  }
  EXPECT_EQ(text.find('\r'), std::string::npos);
}

TEST(ServingStatsTest, ConcurrentRecordingLosesNothing) {
  ServingStats stats;
  constexpr int kThreads = 4;
  constexpr int kEach = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&stats, t] {
      const std::string version = t % 2 ? "1.0.0" : "1.1.0";
      for (int i = 0; i < kEach; ++i) {
        if (i % 10 == 0) {
          stats.RecordFailure("digits", version, 400);
        } else {
          stats.RecordSuccess("digits", version, {0, 1, 0, 1},
                              std::to_string(t) + "-" + std::to_string(i), telemetry::Top1{1, 1});
        }
      }
    });
  }
  std::uint64_t windowed = 0;
  for (int i = 0; i < 50; ++i) {
    for (const WindowStats& w : stats.TakeWindows()) windowed += w.requests;
  }
  for (auto& t : threads) t.join();
  for (const WindowStats& w : stats.TakeWindows()) windowed += w.requests;
  const VersionStats a = stats.Stats("digits", "1.0.0");
  const VersionStats b = stats.Stats("digits", "1.1.0");
  EXPECT_EQ(a.requests + b.requests, std::uint64_t{kThreads} * kEach);
  EXPECT_EQ(a.client_errors + b.client_errors, std::uint64_t{kThreads} * kEach / 10);
  EXPECT_EQ(windowed, std::uint64_t{kThreads} * kEach);
}

}  // namespace
}  // namespace edgefleet::agent
