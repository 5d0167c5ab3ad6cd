// The decisions of a rollout (`edgefleet rollout`), kept free of MQTT and SQLite so they can be
// tested on their own: parsing waves and thresholds, which devices each wave releases, and what
// to do next given what the released devices reported.
//
// A rollout releases the group's devices (sorted by name) in cumulative waves: "10%,50%,100%"
// releases ceil(10% of N) devices first (the canary, at least one), then up to ceil(50% of N),
// then all. A wave that would release nobody new is dropped. The rollout
//   - halts when failed / released > error_threshold (checked at every report, in every wave,
//     also while paused: the safety stop never waits),
//   - moves to the next wave when succeeded / released >= success_threshold,
//   - completes when the last wave reaches the success threshold,
//   - on a wave's timeout counts the devices still updating as failed, then decides as above;
//     a wave that still misses the success threshold halts.
// (hawkBit's rollout groups with success and error conditions; AWS IoT Jobs' abort criteria.)
//
// Thread safety: free functions on plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

// A device's place in a rollout.
enum class DeviceState {
  kWaiting,    // not released yet
  kUpdating,   // its desired state was published; no verdict yet
  kSucceeded,  // committed (or activated, with success_on activated) the rollout's version
  kFailed,     // failed, rolled back, refused the document, or timed out
  kRestoring,  // the previous desired state was published again (halt or abort)
  kRestored,   // reports the previous version active again
};
std::string_view ToString(DeviceState state);
Result<DeviceState> ParseDeviceState(std::string_view text);

enum class RolloutState { kRunning, kPaused, kCompleted, kHalted, kAborted };
std::string_view ToString(RolloutState state);
Result<RolloutState> ParseRolloutState(std::string_view text);
bool IsFinal(RolloutState state);

// "10%,50%,100%" (or "10,50,100"): strictly increasing percentages in (0, 100], the last 100.
// kInvalidArgument naming the text and the problem otherwise.
Result<std::vector<double>> ParseWaves(std::string_view text);
// "90%", "90" or "0.9" style is not accepted: a percentage 0..100 with an optional '%'.
// Returns a fraction in [0, 1]. kInvalidArgument naming `flag` otherwise.
Result<double> ParsePercent(std::string_view flag, std::string_view text);

// The cumulative number of devices released by each wave for `devices` devices; waves that add
// nobody are dropped (so the result may be shorter than `percents`). Empty for 0 devices.
struct WavePlan {
  double percent = 0;          // as given
  std::size_t cumulative = 0;  // devices released once this wave started
};
std::vector<WavePlan> PlanWaves(const std::vector<double>& percents, std::size_t devices);

struct Thresholds {
  double success = 0.9;  // fraction of released devices that must have succeeded to move on
  double error = 0.1;    // failed / released above this halts
};

struct Tally {
  std::size_t released = 0;
  std::size_t succeeded = 0;
  std::size_t failed = 0;
  std::size_t updating = 0;
};

enum class Verdict { kWait, kNextWave, kComplete, kHalt };
struct Decision {
  Verdict verdict = Verdict::kWait;
  std::string reason;  // for kHalt and kComplete: the numbers behind it
};
// What to do after the released devices reported `tally` during wave `wave` (1-based) of
// `waves`. `paused` stops kNextWave and kComplete, never kHalt. `timed_out`: the wave's time is
// up (the caller has already counted its still-updating devices as failed).
Decision Decide(const Tally& tally, const Thresholds& thresholds, std::size_t wave,
                std::size_t waves, bool paused, bool timed_out);

// "12.5%" style for messages.
std::string FormatPercent(double fraction);

}  // namespace edgefleet::deploy
