// Names of the collector database's schema shared by its writer (collector_store.cpp) and its
// reader (fleet_view.cpp): the file's application id, the latency bucket columns, and what
// differs between its two engines (SQLite, PostgreSQL).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "deploy/collector/pg_db.hpp"
#include "manifests/sqlite_db.hpp"

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

// Telemetry windows are indexed by (ts / kWindowBucketMs, device, model, version, ts, stream, n)
// (0006_windows_by_time.sql, which spells the number out). A query reaches that index only
// through the same expression, WindowBucket("w.ts") for "w.ts / 10000".
inline constexpr std::int64_t kWindowBucketMs = 10000;
inline std::string WindowBucket(const std::string& ts) {
  return ts + " / " + std::to_string(kWindowBucketMs);
}
// The hours in which a device has windows (window_hours, 0006): a read of one device's windows
// skips the hours it has none, so a device that was offline for a month, or whose clock started
// in 1970, costs a seek per bucket of the hours it spoke in and nothing for the hours between.
inline constexpr std::int64_t kWindowHourMs = 3600 * 1000;
static_assert(kWindowHourMs % kWindowBucketMs == 0, "an hour holds whole buckets");

// The statement and transaction types of a connection type.
template <class Db>
struct Engine;
template <>
struct Engine<manifests::SqliteDb> {
  using Statement = manifests::SqlStatement;
  using Transaction = manifests::SqlTransaction;
  static constexpr bool kPostgres = false;
};
template <>
struct Engine<PgDb> {
  using Statement = PgStatement;
  using Transaction = PgTransaction;
  static constexpr bool kPostgres = true;
};

// The larger (smaller) of two values in SQL both engines run: SQLite's MAX(a, b) is not
// PostgreSQL's, and SQLite before 3.44 has no GREATEST.
inline std::string Greatest(const std::string& a, const std::string& b) {
  return "CASE WHEN " + a + " >= " + b + " THEN " + a + " ELSE " + b + " END";
}
inline std::string Least(const std::string& a, const std::string& b) {
  return "CASE WHEN " + a + " <= " + b + " THEN " + a + " ELSE " + b + " END";
}

}  // namespace edgefleet::deploy::collector_sql
