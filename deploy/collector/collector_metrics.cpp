// The collector's /metrics (see collector_metrics.hpp).
#include "deploy/collector/collector_metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string_view>
#include <tuple>
#include <utility>

#include "manifests/join.hpp"
#include "telemetry/payloads.hpp"
#include "telemetry/prometheus_text.hpp"

namespace edgefleet::deploy {
namespace {

// /metrics reports the newest this many rollouts (old ones stay in the database and the API).
constexpr std::size_t kMetricsRollouts = 1000;

std::string Label(std::string_view value) { return telemetry::PrometheusLabelValue(value); }

struct SeriesSum {
  std::uint64_t requests = 0, errors = 0, labeled = 0, correct = 0;
  telemetry::LatencySnapshot latency;
};

}  // namespace

Result<std::string> RenderMetrics(const FleetView& view, const CollectorCounters& counters,
                                  const MetricsOptions& options) {
  EF_ASSIGN_OR_RETURN(const std::vector<FleetView::DeviceGroups> groups, view.Groups());
  EF_ASSIGN_OR_RETURN(const FleetView::MissingTotals missing, view.Missing());
  EF_ASSIGN_OR_RETURN(std::vector<SeriesStats> totals, view.Totals());
  EF_ASSIGN_OR_RETURN(std::vector<StoredMessage> stored_rollouts, view.Rollouts(kMetricsRollouts));
  std::vector<RolloutStatus> rollouts;
  for (const StoredMessage& m : stored_rollouts) {
    // Checked when it arrived; a row that no longer parses (a newer build wrote it) is skipped.
    if (Result<RolloutStatus> r = ParseRolloutStatus(m.json)) rollouts.push_back(std::move(*r));
  }
  std::string out;
  auto family = [&](std::string_view metric, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric, help, metric, type);
  };

  // Devices by group and state. `group` is the device's groups from its newest status, sorted
  // and joined by ',' (empty for none), so every device is in exactly one series and sums over
  // groups count each device once.
  std::map<std::string, std::string> group_of;
  std::map<std::pair<std::string, bool>, std::uint64_t> by_group;
  for (const FleetView::DeviceGroups& d : groups) {
    group_of[d.device] = d.groups;
    ++by_group[{d.groups, d.online}];
  }
  family("edgefleet_fleet_devices", "gauge",
         "Devices by group (the device's groups joined by ',') and state (online: its newest "
         "status says online; offline: its last will or a clean shutdown).");
  for (const auto& [key, count] : by_group) {
    out += fmt::format("edgefleet_fleet_devices{{group=\"{}\",state=\"{}\"}} {}\n",
                       Label(key.first), key.second ? "online" : "offline", count);
  }
  family("edgefleet_fleet_messages_missing", "gauge",
         "Numbered telemetry windows and events never stored, all devices.");
  out += fmt::format("edgefleet_fleet_messages_missing {}\n", missing.missing);

  if (options.per_device) {
    EF_ASSIGN_OR_RETURN(const std::vector<DeviceRecord> devices, view.Devices());
    family("edgefleet_fleet_device_online", "gauge",
           "1 while the device's newest status says online, 0 after its last will or shutdown.");
    for (const DeviceRecord& d : devices) {
      out += fmt::format("edgefleet_fleet_device_online{{device=\"{}\"}} {}\n", Label(d.device),
                         d.online ? 1 : 0);
    }
    family("edgefleet_fleet_device_last_seen_seconds", "gauge",
           "When the collector last received a message from the device (Unix seconds).");
    for (const DeviceRecord& d : devices) {
      if (!d.last_seen_ms) continue;
      out += fmt::format("edgefleet_fleet_device_last_seen_seconds{{device=\"{}\"}} {}\n",
                         Label(d.device), static_cast<double>(*d.last_seen_ms) / 1000.0);
    }
    family("edgefleet_fleet_device_messages_missing", "gauge",
           "The device's numbered telemetry windows and events never stored: the numbers "
           "missing between the lowest and highest stored (lost between its outbox and the "
           "database).");
    for (const DeviceRecord& d : devices) {
      if (d.numbered == 0) continue;
      out += fmt::format("edgefleet_fleet_device_messages_missing{{device=\"{}\"}} {}\n",
                         Label(d.device), d.missing);
    }
  }

  // Serving counters per group, model and version (summed over the group's devices), or with
  // per_device per device as well.
  std::map<std::string, SeriesSum> series;
  for (const SeriesStats& s : totals) {
    auto g = group_of.find(s.device);
    const std::string group = g == group_of.end() ? std::string() : g->second;
    std::string labels = fmt::format("group=\"{}\",model=\"{}\",version=\"{}\"", Label(group),
                                     Label(s.model), Label(s.version));
    if (options.per_device) labels = fmt::format("device=\"{}\",{}", Label(s.device), labels);
    SeriesSum& sum = series[labels];
    sum.requests += s.requests;
    sum.errors += s.errors;
    sum.labeled += s.labeled;
    sum.correct += s.correct;
    sum.latency.Merge(s.latency);
  }
  auto counter = [&](std::string_view metric, std::string_view help, auto&& value) {
    family(metric, "counter", help);
    for (const auto& [labels, sum] : series) {
      out += fmt::format("{}{{{}}} {}\n", metric, labels, value(sum));
    }
  };
  counter("edgefleet_fleet_requests_total",
          "Inference requests answered per group and model version, any outcome.",
          [](const SeriesSum& s) { return s.requests; });
  counter("edgefleet_fleet_errors_total", "Failed inference requests per group and model version.",
          [](const SeriesSum& s) { return s.errors; });
  family("edgefleet_fleet_latency_seconds", "histogram",
         "Latency of successful inference requests per group and model version.");
  for (const auto& [l, sum] : series) {
    for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
      const std::string le = i < telemetry::kLatencyBoundsMs.size()
                                 ? fmt::format("{:g}", telemetry::kLatencyBoundsMs[i] / 1000.0)
                                 : std::string("+Inf");
      out += fmt::format("edgefleet_fleet_latency_seconds_bucket{{{},le=\"{}\"}} {}\n", l, le,
                         sum.latency.buckets[i]);
    }
    out += fmt::format("edgefleet_fleet_latency_seconds_sum{{{}}} {}\n", l,
                       sum.latency.sum_ms / 1000.0);
    out += fmt::format("edgefleet_fleet_latency_seconds_count{{{}}} {}\n", l, sum.latency.count);
  }
  counter("edgefleet_fleet_feedback_labeled_total",
          "Predictions that received their true label, per group and model version.",
          [](const SeriesSum& s) { return s.labeled; });
  counter("edgefleet_fleet_feedback_correct_total",
          "Labeled predictions whose top-1 class was right, per group and model version.",
          [](const SeriesSum& s) { return s.correct; });

  family("edgefleet_collector_messages_total", "counter",
         "Messages stored, by kind (new windows and events, statuses that became current).");
  out += fmt::format("edgefleet_collector_messages_total{{kind=\"status\"}} {}\n", counters.status);
  out += fmt::format("edgefleet_collector_messages_total{{kind=\"telemetry\"}} {}\n",
                     counters.telemetry);
  out += fmt::format("edgefleet_collector_messages_total{{kind=\"events\"}} {}\n", counters.events);
  out += fmt::format("edgefleet_collector_messages_total{{kind=\"rollouts\"}} {}\n",
                     counters.rollouts);
  const std::tuple<const char*, const char*, const char*, std::uint64_t> singles[] = {
      {"edgefleet_collector_duplicates_total", "counter",
       "Messages whose id was already stored (at-least-once redelivery).", counters.duplicates},
      {"edgefleet_collector_stale_total", "counter",
       "Status messages older than the device's (rollout's) current status.", counters.stale},
      {"edgefleet_collector_rejected_total", "counter",
       "Messages refused: unknown topic, malformed, too large, or another device's name.",
       counters.rejected},
      {"edgefleet_collector_batches_total", "counter",
       "Transactions the writer committed (gathered for up to --batch-wait-ms each).",
       counters.batches},
      {"edgefleet_collector_queue_depth", "gauge", "Messages received and not yet stored.",
       counters.queued},
      {"edgefleet_collector_connected", "gauge", "1 while connected to the broker.",
       counters.connected ? 1u : 0u},
  };
  for (const auto& [metric, type, help, value] : singles) {
    family(metric, type, help);
    out += fmt::format("{} {}\n", metric, value);
  }
  family("edgefleet_collector_store_lag_seconds", "gauge",
         "How long the oldest message received and not yet stored has waited.");
  out += fmt::format("edgefleet_collector_store_lag_seconds {}\n",
                     static_cast<double>(counters.lag_ms) / 1000.0);
  family("edgefleet_collector_behind", "gauge",
         "1 while the collector is behind (a message waited 5 s or its queue is half full).");
  out += fmt::format("edgefleet_collector_behind {}\n", counters.behind ? 1 : 0);
  if (counters.broker_dropped >= 0) {
    family("edgefleet_broker_dropped_messages", "gauge",
           "The broker's count of messages it dropped for full client queues since it started "
           "($SYS/broker/publish/messages/dropped).");
    out += fmt::format("edgefleet_broker_dropped_messages {}\n", counters.broker_dropped);
  }

  family("edgefleet_rollout_devices", "gauge",
         "Devices of a rollout by their state in it, as `edgefleet rollout` last reported.");
  for (const RolloutStatus& r : rollouts) {
    const RolloutDeviceCounts& d = r.devices;
    const std::pair<const char*, std::uint64_t> states[] = {{"succeeded", d.succeeded},
                                                            {"failed", d.failed},
                                                            {"updating", d.updating},
                                                            {"waiting", d.waiting},
                                                            {"restored", d.restored}};
    for (const auto& [state, value] : states) {
      out += fmt::format(
          "edgefleet_rollout_devices{{rollout=\"{}\",model=\"{}\",version=\"{}\",state=\"{}\"}} "
          "{}\n",
          Label(r.id), Label(r.model), Label(r.version), state, value);
    }
  }
  family("edgefleet_rollout_info", "gauge",
         "1 per rollout, labeled with its model, version, group and state.");
  for (const RolloutStatus& r : rollouts) {
    out += fmt::format(
        "edgefleet_rollout_info{{rollout=\"{}\",model=\"{}\",version=\"{}\",group=\"{}\","
        "state=\"{}\"}} 1\n",
        Label(r.id), Label(r.model), Label(r.version), Label(r.group), Label(r.state));
  }
  return out;
}

}  // namespace edgefleet::deploy
