// Online accuracy from feedback, and the top-1 confidence of served predictions (a drift proxy).
//
// The tracker remembers the top-1 class of the last `capacity` request ids (oldest evicted and
// counted) so that ground truth arriving later (POST .../feedback) can be scored once per id.
// Memory is bounded by capacity x (id length + ~100 bytes); callers cap the id length.
//
// Thread safety: all methods may be called from any number of threads; one mutex guards the
// state (feedback is rare and the critical sections are a hash lookup).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace edgefleet::telemetry {

struct Top1 {
  std::int64_t label = -1;  // index of the largest logit; -1 for no logits
  double confidence = 0;    // its softmax probability
};

// Softmax of `logits` at the largest one, computed stably (shifted by the maximum). NaN logits
// are skipped; a +inf maximum gets confidence 1. Empty (or all-NaN) logits give label -1.
Top1 ComputeTop1(std::span<const float> logits);

struct AccuracySnapshot {
  std::uint64_t predictions = 0;         // RecordPrediction calls
  std::uint64_t labeled = 0;             // feedback accepted
  std::uint64_t correct = 0;             // ... whose label was the top-1 class
  std::uint64_t unknown_feedback = 0;    // feedback for an id never seen or already evicted
  std::uint64_t duplicate_feedback = 0;  // feedback for an id that was already labeled
  std::uint64_t evicted = 0;             // ids dropped unlabeled because capacity was reached
  double confidence_mean = 0;            // of top-1 confidence over all predictions
  double confidence_std = 0;             // population standard deviation

  // correct / labeled, 0 when nothing is labeled.
  double accuracy() const;
};

enum class FeedbackOutcome { kCorrect, kWrong, kUnknownId, kDuplicate };

class AccuracyTracker {
 public:
  static constexpr std::size_t kDefaultCapacity = 10000;
  explicit AccuracyTracker(std::size_t capacity = kDefaultCapacity);
  AccuracyTracker(const AccuracyTracker&) = delete;
  AccuracyTracker& operator=(const AccuracyTracker&) = delete;

  // Remembers `top1.label` for `request_id` and adds `top1.confidence` to the statistics. A
  // repeated id replaces the earlier prediction (and its labeled mark) in place; it keeps its
  // position in the eviction order.
  void RecordPrediction(std::string_view request_id, const Top1& top1);
  // Scores `label` against the prediction of `request_id`, once per id.
  FeedbackOutcome Feedback(std::string_view request_id, std::int64_t label);
  // True when `request_id` is remembered (labeled or not).
  bool Knows(std::string_view request_id) const;
  AccuracySnapshot Snapshot() const;

 private:
  struct Entry {
    std::int64_t predicted = -1;
    bool labeled = false;
  };

  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // guarded by mu_
  std::deque<std::string> order_;                   // guarded by mu_; oldest first
  AccuracySnapshot counts_;                         // guarded by mu_; mean/std filled on read
  // Welford's running moments of the confidence; guarded by mu_.
  double conf_mean_ = 0;
  double conf_m2_ = 0;
};

}  // namespace edgefleet::telemetry
