// The progress a rollout reports: its waves, its tallies and the status message `edgefleet
// rollout` publishes retained on rollout/<id>/status (the collector reads it; its shape is in
// deploy/collector/collector.hpp). Split from the driver, which publishes it, and the commands,
// which print it.
//
// Thread safety: free functions on plain values.
#pragma once

#include <cstddef>
#include <vector>

#include <nlohmann/json.hpp>

#include "deploy/rollout/rollout_plan.hpp"
#include "deploy/rollout/rollout_store.hpp"

namespace edgefleet::deploy {

// The highest wave any device is in.
std::size_t MaxWave(const std::vector<RolloutDevice>& devices);
Tally Count(const std::vector<RolloutDevice>& devices, std::size_t up_to_wave);
// The rollout status message (topic rollout/<id>/status; `status --json` adds the devices);
// at most kMaxRolloutFailures failures listed.
nlohmann::json StatusJson(const RolloutRecord& r, const std::vector<RolloutDevice>& devices);

}  // namespace edgefleet::deploy
