#include "agent/watch_judge.hpp"

#include <fmt/format.h>

#include <utility>

#include "agent/update_machine_internal.hpp"

namespace edgefleet::agent {

std::optional<std::string> LatencyBreach(double p95_ms, double previous_p95_ms, double factor,
                                         double min_increase_ms) {
  if (p95_ms <= factor * previous_p95_ms || p95_ms - previous_p95_ms < min_increase_ms) {
    return std::nullopt;
  }
  return fmt::format("p95 latency {} ms > {} x previous {} ms (and {} ms above it, floor {} ms)",
                     Fmt(p95_ms), Fmt(factor), Fmt(previous_p95_ms), Fmt(p95_ms - previous_p95_ms),
                     Fmt(min_increase_ms));
}

std::string WatchNumbers::Text() const {
  return fmt::format(
      "requests={} errors={} client_errors={} error_rate={} p95_ms={} previous_p95_ms={} "
      "accuracy={} labeled={}",
      requests, server_errors, client_errors, Fmt(error_rate), Fmt(p95_ms),
      previous_p95_ms ? Fmt(*previous_p95_ms) : "none", labeled ? Fmt(accuracy) : "none", labeled);
}

WatchNumbers WindowNumbers(const VersionStats& base, const VersionStats& now,
                           std::optional<double> previous_p95_ms, double elapsed_s) {
  WatchNumbers n;
  n.requests = now.requests - base.requests;
  n.server_errors = now.server_errors - base.server_errors;
  n.client_errors = now.client_errors - base.client_errors;
  telemetry::LatencySnapshot lat = now.latency;
  for (std::size_t i = 0; i < lat.buckets.size(); ++i) lat.buckets[i] -= base.latency.buckets[i];
  lat.count -= base.latency.count;
  lat.sum_ms -= base.latency.sum_ms;
  lat.UpdatePercentiles();
  n.p95_ms = lat.p95;
  n.latency_count = lat.count;
  n.labeled = now.labeled - base.labeled;
  n.correct = now.correct - base.correct;
  n.error_rate = n.requests ? static_cast<double>(n.server_errors) / n.requests : 0.0;
  n.accuracy = n.labeled ? static_cast<double>(n.correct) / n.labeled : 0.0;
  n.previous_p95_ms = previous_p95_ms;
  n.elapsed_s = elapsed_s;
  return n;
}

WatchVerdict JudgeWatch(const WatchNumbers& n, const WatchRules& rules) {
  const manifests::WatchPolicy& policy = rules.policy;
  WatchVerdict v;
  v.numbers = n;
  const double window_s = static_cast<double>(policy.window_s);
  if (n.requests < static_cast<std::uint64_t>(policy.min_requests)) {
    if (n.elapsed_s >= window_s * rules.max_extension_factor) {
      v.kind = WatchVerdict::Kind::kPassedOnParity;
      v.reason = fmt::format(
          "watch extended to {}s with only {} of {} requests: committed on the parity evidence",
          Fmt(n.elapsed_s), n.requests, policy.min_requests);
    }
    return v;
  }
  if (n.error_rate > policy.max_error_rate) {
    v.kind = WatchVerdict::Kind::kBreach;
    v.reason =
        fmt::format("server-error rate {} > {}", Fmt(n.error_rate), Fmt(policy.max_error_rate));
    return v;
  }
  if (n.previous_p95_ms && n.latency_count > 0) {
    if (auto slow = LatencyBreach(n.p95_ms, *n.previous_p95_ms, policy.max_p95_latency_factor,
                                  rules.min_p95_increase_ms)) {
      v.kind = WatchVerdict::Kind::kBreach;
      v.reason = std::move(*slow);
      return v;
    }
  }
  if (policy.min_online_accuracy && n.labeled >= 10 && n.accuracy < *policy.min_online_accuracy) {
    v.kind = WatchVerdict::Kind::kBreach;
    v.reason = fmt::format("online accuracy {} < {} ({} of {} labeled)", Fmt(n.accuracy),
                           Fmt(*policy.min_online_accuracy), n.correct, n.labeled);
    return v;
  }
  if (n.elapsed_s >= window_s) {
    v.kind = WatchVerdict::Kind::kPassed;
    v.reason = fmt::format("watch passed after {}s", Fmt(n.elapsed_s));
  }
  return v;
}

WatchWindow::WatchWindow(const manifests::Clock& clock, VersionStats base,
                         std::optional<double> previous_p95_ms, WatchRules rules)
    : clock_(clock),
      start_(clock.Now()),
      base_(std::move(base)),
      previous_p95_ms_(previous_p95_ms),
      rules_(std::move(rules)) {}

WatchVerdict WatchWindow::Check(const VersionStats& now) const {
  const double elapsed = std::chrono::duration<double>(clock_.Now() - start_).count();
  return JudgeWatch(WindowNumbers(base_, now, previous_p95_ms_, elapsed), rules_);
}

}  // namespace edgefleet::agent
