#include "deploy/rollout/rollout_plan.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iomanip>
#include <optional>
#include <sstream>

namespace edgefleet::deploy {
namespace {

std::string_view Trim(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

// "12.5" or "12.5%" -> 12.5; nullopt when not a plain decimal number.
std::optional<double> PercentNumber(std::string_view text) {
  text = Trim(text);
  if (!text.empty() && text.back() == '%') text.remove_suffix(1);
  if (text.empty()) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

std::string_view ToString(DeviceState state) {
  switch (state) {
    case DeviceState::kWaiting:
      return "waiting";
    case DeviceState::kUpdating:
      return "updating";
    case DeviceState::kSucceeded:
      return "succeeded";
    case DeviceState::kFailed:
      return "failed";
    case DeviceState::kRestoring:
      return "restoring";
    case DeviceState::kRestored:
      return "restored";
  }
  return "?";
}

Result<DeviceState> ParseDeviceState(std::string_view text) {
  for (DeviceState s : {DeviceState::kWaiting, DeviceState::kUpdating, DeviceState::kSucceeded,
                        DeviceState::kFailed, DeviceState::kRestoring, DeviceState::kRestored}) {
    if (ToString(s) == text) return s;
  }
  return Fail(ErrorCode::kParse,
              "device state: expected waiting, updating, succeeded, failed, "
              "restoring or restored, found '" +
                  std::string(text) + "'");
}

std::string_view ToString(RolloutState state) {
  switch (state) {
    case RolloutState::kRunning:
      return "running";
    case RolloutState::kPaused:
      return "paused";
    case RolloutState::kCompleted:
      return "completed";
    case RolloutState::kHalted:
      return "halted";
    case RolloutState::kAborted:
      return "aborted";
  }
  return "?";
}

Result<RolloutState> ParseRolloutState(std::string_view text) {
  for (RolloutState s : {RolloutState::kRunning, RolloutState::kPaused, RolloutState::kCompleted,
                         RolloutState::kHalted, RolloutState::kAborted}) {
    if (ToString(s) == text) return s;
  }
  return Fail(ErrorCode::kParse,
              "rollout state: expected running, paused, completed, halted or "
              "aborted, found '" +
                  std::string(text) + "'");
}

bool IsFinal(RolloutState state) {
  return state == RolloutState::kCompleted || state == RolloutState::kHalted ||
         state == RolloutState::kAborted;
}

Result<std::vector<double>> ParseWaves(std::string_view text) {
  const std::string quoted = "--waves '" + std::string(text) + "'";
  std::vector<double> waves;
  std::string_view rest = text;
  while (true) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const auto value = PercentNumber(item);
    if (!value) {
      return Fail(ErrorCode::kInvalidArgument,
                  quoted + ": expected percentages like 10%,50%,100%, found '" +
                      std::string(Trim(item)) + "'");
    }
    if (*value <= 0 || *value > 100) {
      return Fail(ErrorCode::kInvalidArgument,
                  quoted + ": each wave must be above 0% and at most 100%, found '" +
                      std::string(Trim(item)) + "'");
    }
    if (!waves.empty() && *value <= waves.back()) {
      return Fail(ErrorCode::kInvalidArgument,
                  quoted + ": waves are cumulative and must increase, found " +
                      FormatPercent(*value / 100) + " after " + FormatPercent(waves.back() / 100));
    }
    waves.push_back(*value);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (waves.back() != 100) {
    return Fail(ErrorCode::kInvalidArgument,
                quoted + ": the last wave must be 100% (every device of the group), found " +
                    FormatPercent(waves.back() / 100));
  }
  return waves;
}

Result<double> ParsePercent(std::string_view flag, std::string_view text) {
  const auto value = PercentNumber(text);
  if (!value || *value < 0 || *value > 100) {
    return Fail(
        ErrorCode::kInvalidArgument,
        std::string(flag) + ": expected a percentage 0%..100%, found '" + std::string(text) + "'");
  }
  return *value / 100;
}

std::vector<WavePlan> PlanWaves(const std::vector<double>& percents, std::size_t devices) {
  std::vector<WavePlan> plan;
  if (devices == 0) return plan;
  for (double p : percents) {
    // ceil, less a hair so 30% of 10 is 3 even when the product rounds to 3.0000000000000004.
    std::size_t n =
        static_cast<std::size_t>(std::ceil(p / 100 * static_cast<double>(devices) - 1e-9));
    n = std::min(std::max<std::size_t>(n, 1), devices);
    if (!plan.empty() && n <= plan.back().cumulative) continue;
    plan.push_back({p, n});
  }
  return plan;
}

Decision Decide(const Tally& tally, const Thresholds& thresholds, std::size_t wave,
                std::size_t waves, bool paused, bool timed_out) {
  if (tally.released == 0) return {};
  const double released = static_cast<double>(tally.released);
  const double failed = static_cast<double>(tally.failed) / released;
  const double succeeded = static_cast<double>(tally.succeeded) / released;
  const std::string counts = std::to_string(tally.succeeded) + " succeeded, " +
                             std::to_string(tally.failed) + " failed of " +
                             std::to_string(tally.released) + " released";
  if (tally.failed > 0 && failed > thresholds.error) {
    return {Verdict::kHalt, counts + ": failures " + FormatPercent(failed) +
                                " passed the error threshold " + FormatPercent(thresholds.error)};
  }
  if (succeeded + 1e-12 >= thresholds.success) {
    if (paused) return {};
    if (wave >= waves) {
      return {Verdict::kComplete, counts + ": success " + FormatPercent(succeeded) +
                                      " reached the threshold " +
                                      FormatPercent(thresholds.success)};
    }
    return {Verdict::kNextWave, counts};
  }
  if (timed_out) {
    return {Verdict::kHalt, "wave " + std::to_string(wave) + " timed out: " + counts +
                                ", success " + FormatPercent(succeeded) + " below the threshold " +
                                FormatPercent(thresholds.success)};
  }
  return {};
}

std::string FormatPercent(double fraction) {
  std::ostringstream s;
  const double pct = fraction * 100;
  if (std::abs(pct - std::round(pct)) < 1e-9) {
    s << static_cast<long long>(std::llround(pct)) << "%";
  } else {
    s << std::fixed << std::setprecision(1) << pct << "%";
  }
  return s.str();
}

}  // namespace edgefleet::deploy
