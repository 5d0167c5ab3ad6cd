// Names of the collector database's schema shared by its writer (collector_store.cpp) and its
// reader (fleet_view.cpp): the file's application id and the latency bucket columns.
#pragma once

#include <cstddef>
#include <string>

#include "telemetry/latency_histogram.hpp"

namespace edgefleet::deploy::collector_sql {

// "EFCO" in the file header: `edgefleet devices --db` on an agent journal (which also has a
// schema_version table) says what the file is instead of failing on a missing table.
inline constexpr int kApplicationId = 0x4546434f;

inline constexpr int kBuckets = static_cast<int>(telemetry::kLatencyBuckets);

// The column of latency bucket i: "b00" .. "b16".
inline std::string BucketColumn(std::size_t i) { return (i < 10 ? "b0" : "b") + std::to_string(i); }
// "b00, b01, ..., b16".
inline std::string BucketColumns() {
  std::string out;
  for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
    out += (i ? ", " : "") + BucketColumn(i);
  }
  return out;
}

}  // namespace edgefleet::deploy::collector_sql
