// The collector's GET /metrics in the Prometheus text format.
//
// By default the fleet is aggregated, so a scrape's size grows with groups and model versions,
// not with devices: edgefleet_fleet_devices{group,state}, edgefleet_fleet_messages_missing, and
// the serving counters (requests, errors, latency histogram, feedback) labelled group, model and
// version, where `group` is a device's groups (from its newest status) sorted and joined by ','
// ("" for none) so that each device counts in exactly one series. With per_device (GET
// /metrics?per_device=1) the serving counters carry a `device` label as well, and the per-device
// gauges edgefleet_fleet_device_{online,last_seen_seconds,messages_missing} are added. Then come
// the collector's own counters and the rollouts' gauges.
//
// Thread safety: reads through the FleetView (which has its own lock).
#pragma once

#include <string>

#include "deploy/collector/collector.hpp"
#include "deploy/collector/collector_store.hpp"
#include "manifests/result.hpp"

namespace edgefleet::deploy {

struct MetricsOptions {
  bool per_device = false;
};

// The /metrics text for the view and the collector's counters; fails when the database does.
Result<std::string> RenderMetrics(const FleetView& view, const CollectorCounters& counters,
                                  const MetricsOptions& options = {});

}  // namespace edgefleet::deploy
