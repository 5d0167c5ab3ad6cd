// The watch window's judgement, as a pure function over serving-stats snapshots: after a
// candidate starts serving, its numbers since the window began decide whether it is rolled back
// (a breach), committed (the window passed), or watched on. UpdateMachine::Watch polls it; time
// reaches it through a Clock (WatchWindow), so every rule is unit-tested with a fake clock.
//
// The rules, in order, once the window has `policy.min_requests` requests:
//   1. server-error rate (5xx / requests) above `policy.max_error_rate`: breach. Client errors
//      (4xx: malformed input, batch 0, unknown version) never count against the model.
//   2. p95 latency above `max_p95_latency_factor` x the previous model's p95 AND at least
//      `min_p95_increase_ms` above it (LatencyBreach): breach. Only when the previous model
//      served requests in this run of the agent and the candidate has successful ones.
//   3. online accuracy below `policy.min_online_accuracy`, with at least 10 labeled: breach.
//   4. otherwise, after `policy.window_s`: passed.
// Before `policy.min_requests`: watched on until `window_s x max_extension_factor`, then
// committed on the parity evidence (a quiet box must not keep a candidate unjudged forever).
//
// Thread safety: pure functions; a WatchWindow is used by one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "agent/serving_stats.hpp"
#include "manifests/clock.hpp"
#include "manifests/manifest.hpp"

namespace edgefleet::agent {

struct WatchRules {
  manifests::WatchPolicy policy;     // from the candidate's signed manifest
  double max_extension_factor = 10;  // agent config watch.max_extension_factor
  double min_p95_increase_ms = 1.0;  // agent config watch.min_p95_increase_ms
};

// The latency rule: a breach when the candidate's p95 is above `factor` x the previous model's AND
// at least `min_increase_ms` above it. The floor keeps scheduler noise on a sub-millisecond model
// (0.2 ms -> 0.5 ms is 2.5x) from rolling back a good candidate. Returns the breach text, or
// nullopt.
std::optional<std::string> LatencyBreach(double p95_ms, double previous_p95_ms, double factor,
                                         double min_increase_ms);

// The candidate's numbers in the window so far.
struct WatchNumbers {
  std::uint64_t requests = 0;
  std::uint64_t server_errors = 0;
  std::uint64_t client_errors = 0;
  double error_rate = 0;  // server errors / requests
  double p95_ms = 0;      // successful requests in the window
  std::uint64_t latency_count = 0;
  std::uint64_t labeled = 0;
  std::uint64_t correct = 0;
  double accuracy = 0;  // correct / labeled (0 without labels)
  std::optional<double> previous_p95_ms;
  double elapsed_s = 0;

  // "requests=.. errors=.. client_errors=.. error_rate=.. p95_ms=.. previous_p95_ms=.. ...", for
  // logs and the journal.
  std::string Text() const;
};

struct WatchVerdict {
  enum class Kind {
    kWatching,        // no decision yet
    kBreach,          // roll back
    kPassed,          // the window passed: commit
    kPassedOnParity,  // extended to its limit without min_requests: commit on the parity evidence
  };
  Kind kind = Kind::kWatching;
  std::string reason;  // for kBreach: the rule broken; for the passes, what passed
  WatchNumbers numbers;
};

// The candidate's window from `base` (its stats when the window began) to `now`.
WatchNumbers WindowNumbers(const VersionStats& base, const VersionStats& now,
                           std::optional<double> previous_p95_ms, double elapsed_s);

// The judgement of one poll.
WatchVerdict JudgeWatch(const WatchNumbers& numbers, const WatchRules& rules);

// One watch window: begins at construction (the clock's now), with the candidate's stats then.
class WatchWindow {
 public:
  WatchWindow(const manifests::Clock& clock, VersionStats base,
              std::optional<double> previous_p95_ms, WatchRules rules);
  // The judgement with the candidate's stats `now`, at the clock's now.
  WatchVerdict Check(const VersionStats& now) const;

 private:
  const manifests::Clock& clock_;
  const manifests::Clock::TimePoint start_;
  const VersionStats base_;
  const std::optional<double> previous_p95_ms_;
  const WatchRules rules_;
};

}  // namespace edgefleet::agent
