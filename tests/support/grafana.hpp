// Checks of the Grafana dashboards in deploy/grafana against what a real server's /metrics
// serves: the metric names a dashboard's queries use, and the names a Prometheus text holds.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>

namespace edgefleet::testing {

// Every edgefleet_* metric name the dashboard's queries and variables use.
std::set<std::string> GrafanaMetricNames(const nlohmann::json& dashboard);

// The names of the edgefleet_* samples in a Prometheus text (histogram samples keep their
// _bucket/_sum/_count suffix).
std::set<std::string> MetricSampleNames(const std::string& prometheus_text);

}  // namespace edgefleet::testing
