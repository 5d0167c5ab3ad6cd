#include "telemetry/accuracy_tracker.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace edgefleet::telemetry {

Top1 ComputeTop1(std::span<const float> logits) {
  Top1 top;
  float best = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) continue;
    if (top.label < 0 || logits[i] > best) {
      best = logits[i];
      top.label = static_cast<std::int64_t>(i);
    }
  }
  if (top.label < 0) return top;
  if (std::isinf(best)) {
    top.confidence = best > 0 ? 1.0 : 1.0 / static_cast<double>(logits.size());
    return top;
  }
  // Shifting by the maximum keeps exp() in [0, 1]: no overflow for large logits.
  double denominator = 0;
  for (float logit : logits) {
    if (std::isnan(logit)) continue;
    denominator += std::exp(static_cast<double>(logit) - static_cast<double>(best));
  }
  top.confidence = 1.0 / denominator;
  return top;
}

double AccuracySnapshot::accuracy() const {
  return labeled == 0 ? 0.0 : static_cast<double>(correct) / static_cast<double>(labeled);
}

AccuracyTracker::AccuracyTracker(std::size_t capacity)
    : capacity_(std::max<std::size_t>(capacity, 1)) {}

void AccuracyTracker::RecordPrediction(std::string_view request_id, const Top1& top1) {
  std::lock_guard lock(mu_);
  ++counts_.predictions;
  const double n = static_cast<double>(counts_.predictions);
  const double delta = top1.confidence - conf_mean_;
  conf_mean_ += delta / n;
  conf_m2_ += delta * (top1.confidence - conf_mean_);

  auto [it, inserted] = entries_.try_emplace(std::string(request_id));
  it->second = Entry{top1.label, false};
  if (!inserted) return;
  order_.emplace_back(request_id);
  if (order_.size() > capacity_) {
    auto oldest = entries_.find(order_.front());
    if (oldest != entries_.end()) {
      if (!oldest->second.labeled) ++counts_.evicted;
      entries_.erase(oldest);
    }
    order_.pop_front();
  }
}

FeedbackOutcome AccuracyTracker::Feedback(std::string_view request_id, std::int64_t label) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(std::string(request_id));
  if (it == entries_.end()) {
    ++counts_.unknown_feedback;
    return FeedbackOutcome::kUnknownId;
  }
  if (it->second.labeled) {
    ++counts_.duplicate_feedback;
    return FeedbackOutcome::kDuplicate;
  }
  it->second.labeled = true;
  ++counts_.labeled;
  if (it->second.predicted == label) {
    ++counts_.correct;
    return FeedbackOutcome::kCorrect;
  }
  return FeedbackOutcome::kWrong;
}

bool AccuracyTracker::Knows(std::string_view request_id) const {
  std::lock_guard lock(mu_);
  return entries_.find(std::string(request_id)) != entries_.end();
}

AccuracySnapshot AccuracyTracker::Snapshot() const {
  std::lock_guard lock(mu_);
  AccuracySnapshot s = counts_;
  s.confidence_mean = conf_mean_;
  s.confidence_std = counts_.predictions == 0
                         ? 0.0
                         : std::sqrt(conf_m2_ / static_cast<double>(counts_.predictions));
  return s;
}

}  // namespace edgefleet::telemetry
