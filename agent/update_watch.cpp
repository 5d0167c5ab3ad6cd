// The watch window of the update machine: the candidate serves, its numbers are compared with the
// previous model's, and a breach switches back.
#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/log_value.hpp"
#include "agent/update_machine.hpp"
#include "agent/update_machine_internal.hpp"

namespace edgefleet::agent {

using Clock = std::chrono::steady_clock;

std::optional<std::string> LatencyBreach(double p95_ms, double previous_p95_ms, double factor,
                                         double min_increase_ms) {
  if (p95_ms <= factor * previous_p95_ms || p95_ms - previous_p95_ms < min_increase_ms) {
    return std::nullopt;
  }
  return fmt::format("p95 latency {} ms > {} x previous {} ms (and {} ms above it, floor {} ms)",
                     Fmt(p95_ms), Fmt(factor), Fmt(previous_p95_ms), Fmt(p95_ms - previous_p95_ms),
                     Fmt(min_increase_ms));
}

std::optional<DeploymentState> UpdateMachine::Watch(Run& run) {
  const std::string& model = run.dep.request.model;
  const std::string& version = run.dep.request.version;
  if (!run.active) {
    if (!Step(run, Event::kWatchPassed,
              "first model: no previous model to compare with or roll back to"))
      return std::nullopt;
    return DeploymentState::kCommitted;
  }
  const manifests::WatchPolicy& policy = run.manifest.watch;
  const VersionStats base = ctx_.api ? ctx_.api->Stats(model, version) : VersionStats{};
  // The previous model's p95 from the requests it served in this run of the agent; without any,
  // the parity run already judged latency (candidate vs active median) and the watch does not.
  std::optional<double> previous_p95;
  if (ctx_.api) {
    const VersionStats prev = ctx_.api->Stats(model, run.active->version);
    if (prev.latency.count > 0) previous_p95 = prev.latency.p95;
  }
  const auto start = Clock::now();
  const double window_s = static_cast<double>(policy.window_s);
  const double max_s = window_s * ctx_.config->watch.max_extension_factor;
  auto last_log = Clock::now() - std::chrono::seconds(2);
  while (true) {
    if (Cancelled()) {
      // Left in watching: the next start rolls back (an unwatched candidate never commits).
      spdlog::info("event=watch_interrupted id={}", run.dep.id);
      return std::nullopt;
    }
    const VersionStats now = ctx_.api ? ctx_.api->Stats(model, version) : VersionStats{};
    const std::uint64_t requests = now.requests - base.requests;
    const std::uint64_t errors = now.server_errors - base.server_errors;
    telemetry::LatencySnapshot lat = now.latency;
    for (std::size_t i = 0; i < lat.buckets.size(); ++i) lat.buckets[i] -= base.latency.buckets[i];
    lat.count -= base.latency.count;
    lat.sum_ms -= base.latency.sum_ms;
    lat.UpdatePercentiles();
    const std::uint64_t labeled = now.labeled - base.labeled;
    const std::uint64_t correct = now.correct - base.correct;
    const double error_rate = requests ? static_cast<double>(errors) / requests : 0.0;
    const double accuracy = labeled ? static_cast<double>(correct) / labeled : 0.0;
    const std::string accuracy_text = labeled ? Fmt(accuracy) : "none";
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const std::string numbers = fmt::format(
        "requests={} errors={} error_rate={} p95_ms={} previous_p95_ms={} accuracy={} labeled={}",
        requests, errors, Fmt(error_rate), Fmt(lat.p95), previous_p95 ? Fmt(*previous_p95) : "none",
        accuracy_text, labeled);
    if (Clock::now() - last_log >= std::chrono::seconds(1)) {
      last_log = Clock::now();
      spdlog::info("event=watch id={} requests={} errors={} p95_ms={} accuracy={}", run.dep.id,
                   requests, errors, Fmt(lat.p95), accuracy_text);
    }
    if (requests >= static_cast<std::uint64_t>(policy.min_requests)) {
      std::string breach;
      if (error_rate > policy.max_error_rate) {
        breach =
            fmt::format("server-error rate {} > {}", Fmt(error_rate), Fmt(policy.max_error_rate));
      } else if (auto slow =
                     previous_p95 && lat.count > 0
                         ? LatencyBreach(lat.p95, *previous_p95, policy.max_p95_latency_factor,
                                         ctx_.config->watch.min_p95_increase_ms)
                         : std::nullopt) {
        breach = *slow;
      } else if (policy.min_online_accuracy && labeled >= 10 &&
                 accuracy < *policy.min_online_accuracy) {
        breach = fmt::format("online accuracy {} < {} ({} of {} labeled)", Fmt(accuracy),
                             Fmt(*policy.min_online_accuracy), correct, labeled);
      }
      if (!breach.empty()) {
        const std::string reason = "watch breach: " + breach + " (" + numbers + ")";
        if (!Step(run, Event::kBreach, reason)) return std::nullopt;
        const auto previous = ToRuntimeSlot(run.active->slot);
        if (auto ok = ctx_.host->Activate(model, previous); !ok) {
          spdlog::error("event=rollback_switch_failed id={} error={}", run.dep.id,
                        LogValue(ok.error().message));
        }
        (void)ctx_.host->Unload(model, ToRuntimeSlot(run.dep.slot));
        if (!Step(run, Event::kSwitchedBack,
                  fmt::format("{}; back to {} in slot {}", reason, run.active->version,
                              updater::ToString(run.active->slot))))
          return std::nullopt;
        DiscardCandidate(run);
        return DeploymentState::kRolledBack;
      }
      if (elapsed >= window_s) {
        if (!Step(run, Event::kWatchPassed,
                  fmt::format("watch passed after {}s: {}", Fmt(elapsed), numbers)))
          return std::nullopt;
        return DeploymentState::kCommitted;
      }
    } else if (elapsed >= max_s) {
      if (!Step(run, Event::kWatchPassed,
                fmt::format("watch extended to {}s with only {} of {} requests: committed on "
                            "the parity evidence ({})",
                            Fmt(elapsed), requests, policy.min_requests, numbers)))
        return std::nullopt;
      return DeploymentState::kCommitted;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace edgefleet::agent
