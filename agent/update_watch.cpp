// The watch window of the update machine: the candidate serves, its numbers are compared with the
// previous model's, and a breach switches back.
#include <chrono>

#include <spdlog/spdlog.h>

#include "agent/log_value.hpp"
#include "agent/update_machine.hpp"
#include "agent/update_machine_internal.hpp"
#include "agent/watch_judge.hpp"
#include "manifests/clock.hpp"

namespace edgefleet::agent {

std::optional<DeploymentState> UpdateMachine::Watch(Run& run) {
  const std::string& model = run.dep.request.model;
  const std::string& version = run.dep.request.version;
  if (!run.active) {
    if (!Step(run, Event::kWatchPassed,
              "first model: no previous model to compare with or roll back to"))
      return std::nullopt;
    return DeploymentState::kCommitted;
  }
  manifests::Clock& clock = ctx_.clock ? *ctx_.clock : manifests::SteadyClock();
  auto stats = [&](const std::string& v) {
    return ctx_.stats ? ctx_.stats->Stats(model, v) : VersionStats{};
  };
  // The previous model's p95 from the requests it served in this run of the agent; without any,
  // the parity run already judged latency (candidate vs active median) and the watch does not.
  std::optional<double> previous_p95;
  if (const VersionStats prev = stats(run.active->version); prev.latency.count > 0) {
    previous_p95 = prev.latency.p95;
  }
  const WatchRules rules{run.manifest.watch, ctx_.config->watch.max_extension_factor,
                         ctx_.config->watch.min_p95_increase_ms};
  const WatchWindow window(clock, stats(version), previous_p95, rules);
  auto last_log = clock.Now() - std::chrono::seconds(2);
  while (true) {
    if (Cancelled()) {
      // Left in watching: the next start rolls back (an unwatched candidate never commits).
      spdlog::info("event=watch_interrupted id={}", run.dep.id);
      return std::nullopt;
    }
    const WatchVerdict verdict = window.Check(stats(version));
    const WatchNumbers& n = verdict.numbers;
    if (clock.Now() - last_log >= std::chrono::seconds(1)) {
      // Once a second, with the window's counts: a flood of bad requests shows here as a count,
      // not as a line per request.
      last_log = clock.Now();
      spdlog::info("event=watch id={} requests={} errors={} client_errors={} p95_ms={} accuracy={}",
                   run.dep.id, n.requests, n.server_errors, n.client_errors, Fmt(n.p95_ms),
                   n.labeled ? Fmt(n.accuracy) : "none");
    }
    switch (verdict.kind) {
      case WatchVerdict::Kind::kWatching:
        break;
      case WatchVerdict::Kind::kBreach: {
        const std::string reason = "watch breach: " + verdict.reason + " (" + n.Text() + ")";
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
      case WatchVerdict::Kind::kPassed:
        if (!Step(run, Event::kWatchPassed, verdict.reason + ": " + n.Text())) return std::nullopt;
        return DeploymentState::kCommitted;
      case WatchVerdict::Kind::kPassedOnParity:
        if (!Step(run, Event::kWatchPassed, verdict.reason + " (" + n.Text() + ")"))
          return std::nullopt;
        return DeploymentState::kCommitted;
    }
    clock.SleepFor(std::chrono::milliseconds(250));
  }
}

}  // namespace edgefleet::agent
