// Pieces of the Prometheus text exposition format (version 0.0.4) shared by the agent's and the
// collector's /metrics.
//
// Thread safety: free functions on plain values.
#pragma once

#include <string>
#include <string_view>

namespace edgefleet::telemetry {

// A label value escaped for the text format: backslash, double quote and newline.
std::string PrometheusLabelValue(std::string_view value);

}  // namespace edgefleet::telemetry
