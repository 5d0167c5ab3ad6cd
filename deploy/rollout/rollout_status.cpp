// The progress a rollout reports: see rollout_status.hpp.
#include "deploy/rollout/rollout_status.hpp"

#include <algorithm>

#include "deploy/collector/collector_store.hpp"
#include "manifests/time.hpp"

namespace edgefleet::deploy {

using manifests::NowMs;
using nlohmann::json;

std::size_t MaxWave(const std::vector<RolloutDevice>& devices) {
  std::size_t w = 0;
  for (const auto& d : devices) w = std::max(w, d.wave);
  return w;
}

Tally Count(const std::vector<RolloutDevice>& devices, std::size_t up_to_wave) {
  Tally t;
  for (const RolloutDevice& d : devices) {
    if (d.wave > up_to_wave) continue;
    ++t.released;
    if (d.outcome == "succeeded") {
      ++t.succeeded;
    } else if (d.outcome == "failed") {
      ++t.failed;
    } else {
      ++t.updating;
    }
  }
  return t;
}

json StatusJson(const RolloutRecord& r, const std::vector<RolloutDevice>& devices) {
  const std::size_t waves = MaxWave(devices);
  json wave_list = json::array();
  for (std::size_t w = 1; w <= waves; ++w) {
    std::size_t n = 0, ok = 0, bad = 0;
    double percent = 0;
    for (const RolloutDevice& d : devices) {
      if (d.wave != w) continue;
      ++n;
      ok += d.outcome == "succeeded";
      bad += d.outcome == "failed";
    }
    if (w - 1 < r.waves.size()) percent = r.waves[w - 1];
    std::string state = "waiting";
    if (w < r.wave || (w == r.wave && r.state == RolloutState::kCompleted)) {
      state = "done";
    } else if (w == r.wave) {
      state = (r.state == RolloutState::kHalted || r.state == RolloutState::kAborted) ? "halted"
                                                                                      : "running";
    }
    wave_list.push_back({{"percent", percent},
                         {"devices", n},
                         {"succeeded", ok},
                         {"failed", bad},
                         {"pending", n - ok - bad},
                         {"state", state}});
  }
  std::map<std::string, std::size_t> by_state;
  json failures = json::array();
  for (const RolloutDevice& d : devices) {
    ++by_state[std::string(ToString(d.state))];
    if (d.outcome == "failed" && failures.size() < kMaxRolloutFailures) {
      failures.push_back({{"device", d.device}, {"reason", d.detail}});
    }
  }
  auto n = [&](DeviceState s) { return by_state[std::string(ToString(s))]; };
  return {{"id", r.id},
          {"ts", NowMs()},
          {"fleet", r.fleet},
          {"group", r.group},
          {"model", r.model},
          {"version", r.version},
          {"bundle", r.bundle_url},
          {"state", ToString(r.state)},
          {"reason", r.reason},
          {"started_ts", r.started_ms},
          {"finished_ts", r.finished_ms},
          {"success_threshold", r.thresholds.success},
          {"error_threshold", r.thresholds.error},
          {"wave", r.wave},
          {"waves", wave_list},
          {"devices",
           {{"total", devices.size()},
            {"succeeded", n(DeviceState::kSucceeded)},
            {"failed", n(DeviceState::kFailed)},
            {"updating", n(DeviceState::kUpdating)},
            {"waiting", n(DeviceState::kWaiting)},
            {"restoring", n(DeviceState::kRestoring)},
            {"restored", n(DeviceState::kRestored)}}},
          {"failures", failures}};
}

}  // namespace edgefleet::deploy
