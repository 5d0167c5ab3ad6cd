// The reading side of the collector database (FleetView in collector_store.hpp): devices, running
// totals, recent windows, time series, events and rollouts, and the fleet summary, each one
// query on a read-only connection, to SQLite or PostgreSQL. Both run the same SQL but where
// they read the stored statuses' JSON (SQLite's json_each, PostgreSQL's jsonb functions).
#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <string_view>
#include <utility>
#include <variant>

#include "deploy/collector/collector_sql.hpp"
#include "deploy/collector/collector_store.hpp"
#include "deploy/collector/pg_db.hpp"
#include "manifests/join.hpp"
#include "manifests/sqlite_db.hpp"

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;
using collector_sql::BucketColumn;
using collector_sql::BucketColumns;
using collector_sql::Engine;
using collector_sql::Greatest;
using collector_sql::kApplicationId;
using collector_sql::kBuckets;
using collector_sql::kWindowBucketMs;
using collector_sql::kWindowHourMs;
using collector_sql::WindowBucket;
using manifests::SqliteDb;

}  // namespace

// ---- FleetView ----

namespace detail {
struct ViewImpl {
  template <class Db>
  explicit ViewImpl(Db db) : conn(std::move(db)) {}
  std::variant<SqliteDb, PgDb> conn;
  mutable std::mutex mu;  // guards conn and every statement on it
};
}  // namespace detail

namespace {

// Recent() reads a series' windows one bucket of windows_by_time at a time up to an hour's span.
constexpr std::int64_t kMaxRecentBuckets = 3600 * 1000 / kWindowBucketMs;

// How many columns ReadSeries reads; a query may add its own after them.
constexpr int kSeriesColumns = 14 + kBuckets;

// Columns shared by Totals(), Recent(), Series() and Summary(): device, model, version, last_slot,
// last_ts, windows, requests, errors, labeled, correct, latency_count, latency_sum_ms,
// latency_max_ms, b00..b16, golden accuracy (NULL when none).
template <class Statement>
SeriesStats ReadSeries(const Statement& q) {
  SeriesStats s;
  s.device = q.ColumnText(0);
  s.model = q.ColumnText(1);
  s.version = q.ColumnText(2);
  s.last_slot = q.ColumnText(3);
  s.last_ts = q.ColumnInt(4);
  auto u = [&](int column) {
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(column)));
  };
  s.windows = u(5);
  s.requests = u(6);
  s.errors = u(7);
  s.labeled = u(8);
  s.correct = u(9);
  s.latency.count = u(10);
  s.latency.sum_ms = q.ColumnReal(11);
  s.latency.max_ms = q.ColumnReal(12);
  for (int i = 0; i < kBuckets; ++i) s.latency.buckets[static_cast<std::size_t>(i)] = u(13 + i);
  s.latency.UpdatePercentiles();
  if (!q.IsNull(13 + kBuckets)) s.golden_accuracy = q.ColumnReal(13 + kBuckets);
  return s;
}

// `bind` binds the statement's parameters; more than `max_rows` rows fail with kInvalidArgument.
template <class Db, class Bind>
Result<std::vector<SeriesStats>> QuerySeries(const Db& conn, std::string operation,
                                             const std::string& sql, const Bind& bind,
                                             std::size_t max_rows = SIZE_MAX) {
  using Statement = typename Engine<Db>::Statement;
  EF_ASSIGN_OR_RETURN(Statement q, Statement::Prepare(conn, std::move(operation), sql));
  bind(q);
  std::vector<SeriesStats> out;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    if (out.size() == max_rows) {
      q.Reset();
      return Fail(ErrorCode::kInvalidArgument, "more than " + std::to_string(max_rows) +
                                                   " points: use a larger bucket or a later start");
    }
    out.push_back(ReadSeries(q));
  }
  return out;
}

// ", SUM(b00), ..., SUM(b16)".
std::string SeriesBucketSums() {
  std::string sums;
  for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
    sums += ", SUM(" + BucketColumn(i) + ")";
  }
  return sums;
}

// ", SUM(w.b00), ..., SUM(w.b16)".
std::string BucketSums() {
  std::string sums;
  for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
    sums += ", SUM(w." + BucketColumn(i) + ")";
  }
  return sums;
}

template <class Statement>
Result<std::vector<StoredMessage>> ReadMessages(Statement& q) {
  std::vector<StoredMessage> out;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    out.push_back({q.ColumnText(0), q.ColumnInt(1), q.ColumnText(2)});
  }
  return out;
}

// Runs `f` on the view's connection (SQLite or PostgreSQL) under its mutex.
template <class F>
auto OnConnection(const detail::ViewImpl& view, F&& f) {
  std::lock_guard lock(view.mu);
  return std::visit([&](const auto& conn) { return f(conn); }, view.conn);
}

// A stored window's sequence numbers never stored, per row of `sequences` (never below 0).
const std::string kMissingPerStream = Greatest("last_n - first_n + 1 - received", "0");

}  // namespace

std::vector<telemetry::ModelStatus> DeviceRecord::Models() const {
  if (status_json.empty()) return {};
  Result<telemetry::StatusMessage> status = telemetry::ParseStatus(status_json);
  return status ? std::move(status->models) : std::vector<telemetry::ModelStatus>{};
}

FleetView::FleetView(std::unique_ptr<detail::ViewImpl> impl) : impl_(std::move(impl)) {}
FleetView::FleetView(FleetView&&) noexcept = default;
FleetView& FleetView::operator=(FleetView&&) noexcept = default;
FleetView::~FleetView() = default;

namespace {

Status CheckSchemaVersion(const std::string& name, std::int64_t version) {
  if (version == CollectorStore::LatestSchemaVersion()) return Ok();
  return Fail(ErrorCode::kUnsupported,
              name + ": schema version " + std::to_string(version) + ", this build reads " +
                  std::to_string(CollectorStore::LatestSchemaVersion()) +
                  (version < CollectorStore::LatestSchemaVersion()
                       ? " (start this build's `edgefleet collect` on it once to migrate)"
                       : " (written by a newer edgefleet)"));
}

}  // namespace

Result<FleetView> FleetView::Open(const fs::path& path) {
  if (IsPostgresUrl(path.string())) {
    EF_ASSIGN_OR_RETURN(PgDb db, PgDb::Connect(path.string()));
    // Read-only, as the SQLite file is opened: a view never changes the fleet's data.
    EF_RETURN_IF_ERROR(db.Exec("open read-only", "SET default_transaction_read_only = on"));
    EF_ASSIGN_OR_RETURN(const std::int64_t tables,
                        db.QueryInt("look for the collector's tables",
                                    "SELECT (to_regclass('schema_version') IS NOT NULL)::int + "
                                    "(to_regclass('devices') IS NOT NULL)::int"));
    if (tables != 2) {
      return Fail(ErrorCode::kIntegrity,
                  db.name() +
                      ": not a collector database (no schema_version or devices table; "
                      "run `edgefleet collect --db <this URL>` first)");
    }
    EF_ASSIGN_OR_RETURN(
        const std::int64_t version,
        db.QueryInt("read schema_version", "SELECT COALESCE(MAX(version), 0) FROM schema_version"));
    EF_RETURN_IF_ERROR(CheckSchemaVersion(db.name(), version));
    return FleetView(std::make_unique<detail::ViewImpl>(std::move(db)));
  }
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Fail(ErrorCode::kNotFound,
                path.string() + ": no such collector database (run `edgefleet collect --db " +
                    path.string() + "` first)");
  }
  EF_ASSIGN_OR_RETURN(SqliteDb db, SqliteDb::Open(path, SqliteDb::Mode::kReadOnly));
  const SqliteDb& c = db;
  EF_ASSIGN_OR_RETURN(const bool empty, c.CheckApplicationId(kApplicationId, "collector"));
  if (empty) {
    return Fail(ErrorCode::kIntegrity,
                path.string() + ": not a collector database (an empty file)");
  }
  EF_ASSIGN_OR_RETURN(
      const std::int64_t version,
      c.QueryInt("read schema_version", "SELECT COALESCE(MAX(version), 0) FROM schema_version"));
  EF_RETURN_IF_ERROR(CheckSchemaVersion(path.string(), version));
  return FleetView(std::make_unique<detail::ViewImpl>(std::move(db)));
}

Result<std::vector<DeviceRecord>> FleetView::Devices() const {
  EF_ASSIGN_OR_RETURN(DevicePage page, Devices(DeviceQuery{}));
  return std::move(page.devices);
}

Result<DevicePage> FleetView::Devices(const DeviceQuery& query) const {
  return OnConnection(*impl_, [&](const auto& conn) -> Result<DevicePage> {
    using Db = std::decay_t<decltype(conn)>;
    using Statement = typename Engine<Db>::Statement;
    // ?1 online, ?2 group, ?3 model, ?4 version: NULL matches any. Groups and models are read
    // from the stored status (status_json was checked when it arrived).
    const std::string match =
        Engine<Db>::kPostgres
            ? "FROM devices d WHERE (?1::bigint IS NULL OR d.online = ?1) "
              "AND (?2::text IS NULL OR EXISTS (SELECT 1 FROM "
              "jsonb_array_elements_text(d.status_json::jsonb -> 'groups') g WHERE g = ?2)) "
              "AND ((?3::text IS NULL AND ?4::text IS NULL) OR EXISTS (SELECT 1 FROM "
              "jsonb_array_elements(d.status_json::jsonb -> 'models') m WHERE (?3 IS NULL OR "
              "m ->> 'name' = ?3) AND (?4 IS NULL OR m -> 'active' ->> 'version' = ?4)))"
            : "FROM devices d WHERE (?1 IS NULL OR d.online = ?1) "
              "AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(d.status_json, '$.groups') g "
              "WHERE g.value = ?2)) "
              "AND ((?3 IS NULL AND ?4 IS NULL) OR EXISTS (SELECT 1 FROM "
              "json_each(d.status_json, '$.models') m WHERE (?3 IS NULL OR "
              "json_extract(m.value, '$.name') = ?3) AND (?4 IS NULL OR "
              "json_extract(m.value, '$.active.version') = ?4)))";
    auto bind = [&](Statement& q) {
      q.Bind(1, query.online).Bind(2, query.group).Bind(3, query.model).Bind(4, query.version);
    };
    DevicePage page;
    {
      EF_ASSIGN_OR_RETURN(Statement count,
                          Statement::Prepare(conn, "count devices", "SELECT COUNT(*) " + match));
      bind(count);
      EF_ASSIGN_OR_RETURN(const bool row, count.Step());
      if (row) {
        page.matching = static_cast<std::uint64_t>(std::max<std::int64_t>(0, count.ColumnInt(0)));
        count.Reset();
      }
    }
    // One more than the page, to know whether another follows. The sequence counts per device
    // come from its rows of `sequences` (the primary key's prefix).
    EF_ASSIGN_OR_RETURN(
        Statement q,
        Statement::Prepare(conn, "list devices",
                           "SELECT d.device, fleet, online, last_seen_ms, offline_since_ms, "
                           "status_ts, agent_version, connection, status_json, "
                           "(SELECT COALESCE(SUM(received), 0) FROM sequences s "
                           "WHERE s.device = d.device), "
                           "(SELECT COALESCE(SUM(" +
                               kMissingPerStream +
                               "), 0) FROM sequences s WHERE s.device = d.device) " + match +
                               (Engine<Db>::kPostgres ? " AND (?5::text IS NULL OR d.device > ?5)"
                                                      : " AND (?5 IS NULL OR d.device > ?5)") +
                               " ORDER BY d.device LIMIT ?6"));
    bind(q);
    q.Bind(5, query.after);
    // Every row: LIMIT -1 in SQLite, LIMIT NULL in PostgreSQL.
    std::optional<std::int64_t> limit = static_cast<std::int64_t>(query.limit) + 1;
    if (query.limit == 0) limit = Engine<Db>::kPostgres ? std::nullopt : std::optional(-1);
    q.Bind(6, limit);
    while (true) {
      EF_ASSIGN_OR_RETURN(const bool row, q.Step());
      if (!row) break;
      if (query.limit != 0 && page.devices.size() == query.limit) {
        page.next = page.devices.back().device;
        q.Reset();
        break;
      }
      DeviceRecord d;
      d.device = q.ColumnText(0);
      d.fleet = q.ColumnText(1);
      d.online = q.ColumnInt(2) != 0;
      d.last_seen_ms = q.ColumnOptionalInt(3);
      d.offline_since_ms = q.ColumnOptionalInt(4);
      d.status_ts = q.ColumnOptionalInt(5);
      d.agent_version = q.ColumnText(6);
      d.connection = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(7)));
      d.status_json = q.ColumnText(8);
      d.numbered = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(9)));
      d.missing = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(10)));
      page.devices.push_back(std::move(d));
    }
    return page;
  });
}

Result<FleetView::MissingTotals> FleetView::Missing() const {
  return OnConnection(*impl_, [&](const auto& conn) -> Result<MissingTotals> {
    using Statement = typename Engine<std::decay_t<decltype(conn)>>::Statement;
    EF_ASSIGN_OR_RETURN(
        Statement q,
        Statement::Prepare(conn, "count missing",
                           "SELECT COALESCE(SUM(m), 0), COUNT(*) FROM (SELECT SUM(" +
                               kMissingPerStream +
                               ") AS m FROM sequences GROUP BY device) per_device WHERE m > 0"));
    MissingTotals totals;
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (row) {
      totals.missing = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(0)));
      totals.devices = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(1)));
      q.Reset();
    }
    return totals;
  });
}

Result<std::vector<FleetView::DeviceGroups>> FleetView::Groups() const {
  return OnConnection(*impl_, [&](const auto& conn) -> Result<std::vector<DeviceGroups>> {
    using Db = std::decay_t<decltype(conn)>;
    using Statement = typename Engine<Db>::Statement;
    EF_ASSIGN_OR_RETURN(
        Statement q,
        Statement::Prepare(conn, "read device groups",
                           Engine<Db>::kPostgres
                               ? "SELECT d.device, d.online, (SELECT string_agg(g, chr(10)) FROM "
                                 "jsonb_array_elements_text(d.status_json::jsonb -> 'groups') g) "
                                 "FROM devices d ORDER BY d.device"
                               : "SELECT d.device, d.online, CASE WHEN json_valid(d.status_json) "
                                 "THEN (SELECT group_concat(j.value, char(10)) FROM "
                                 "json_each(d.status_json, '$.groups') j) END "
                                 "FROM devices d ORDER BY d.device"));
    std::vector<DeviceGroups> out;
    while (true) {
      EF_ASSIGN_OR_RETURN(const bool row, q.Step());
      if (!row) break;
      DeviceGroups d{q.ColumnText(0), q.ColumnInt(1) != 0, {}};
      // One group per line (group names hold no control characters), sorted here.
      std::vector<std::string> groups;
      const std::string listed = q.IsNull(2) ? std::string() : q.ColumnText(2);
      std::string_view rest = listed;
      while (!rest.empty()) {
        const std::size_t end = std::min(rest.find('\n'), rest.size());
        groups.emplace_back(rest.substr(0, end));
        rest.remove_prefix(std::min(end + 1, rest.size()));
      }
      std::sort(groups.begin(), groups.end());
      groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
      d.groups = Join(groups, ",");
      out.push_back(std::move(d));
    }
    return out;
  });
}

Result<std::vector<SeriesStats>> FleetView::Totals() const {
  return OnConnection(*impl_, [&](const auto& conn) {
    return QuerySeries(conn, "read totals",
                       "SELECT device, model, version, last_slot, last_ts, windows, requests, "
                       "errors, labeled, correct, latency_count, latency_sum_ms, latency_max_ms, " +
                           BucketColumns() + ", NULL FROM totals ORDER BY device, model, version",
                       [](auto&) {});
  });
}

Result<std::vector<SeriesStats>> FleetView::Recent(std::chrono::milliseconds span) const {
  // A series' windows within `span` lie in at most span / 10 s + 2 buckets of windows_by_time,
  // counted back (k.i) from the bucket of its newest window: one seek each, its device, model
  // and version equal within the bucket. Past kMaxRecentBuckets the empty buckets of devices that
  // were offline would cost more than the windows: then the windows since the oldest series'
  // span are read by time (windows_by_ts) and matched to their series.
  const std::int64_t back = span.count() / kWindowBucketMs + 1;
  const std::string columns =
      "SELECT t.device, t.model, t.version, t.last_slot, t.last_ts, COUNT(*), SUM(w.count), "
      "SUM(w.errors), SUM(w.labeled), SUM(w.correct), SUM(w.latency_count), "
      "SUM(w.latency_sum_ms), MAX(w.latency_max_ms)" +
      BucketSums() + ", AVG(w.golden_accuracy) FROM ";
  const std::string series = "w.device = t.device AND w.model = t.model AND w.version = t.version";
  const std::string group =
      " AND w.ts >= t.last_ts - ?1 GROUP BY t.device, t.model, t.version, t.last_slot, t.last_ts "
      "ORDER BY t.device, t.model, t.version";
  const std::string sql =
      back <= kMaxRecentBuckets
          ? "WITH RECURSIVE k(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM k "
            "WHERE i < ?2) " +
                columns + "totals t CROSS JOIN k CROSS JOIN windows w WHERE " +
                WindowBucket("w.ts") + " = " + WindowBucket("t.last_ts") + " - k.i AND " + series +
                group
          : columns + "windows w JOIN totals t ON " + series +
                " WHERE w.ts >= (SELECT MIN(last_ts) FROM totals) - ?1" + group;
  return OnConnection(*impl_, [&](const auto& conn) {
    return QuerySeries(conn, "read recent windows", sql, [&](auto& q) {
      q.Bind(1, span.count());
      if (back <= kMaxRecentBuckets) q.Bind(2, back);
    });
  });
}

Result<SeriesBuckets> FleetView::Series(const SeriesQuery& query) const {
  if (query.bucket_ms <= 0) {
    return Fail(ErrorCode::kInvalidArgument, "bucket: must be positive");
  }
  return OnConnection(*impl_, [&](const auto& conn) -> Result<SeriesBuckets> {
    using Db = std::decay_t<decltype(conn)>;
    using Statement = typename Engine<Db>::Statement;
    // PostgreSQL infers a parameter's type from its first use; "?1 IS NULL" says nothing.
    const std::string model = Engine<Db>::kPostgres ? "?1::text" : "?1";
    SeriesBuckets out;
    if (query.since_ms) {
      out.since_ms = *query.since_ms;
    } else {
      EF_ASSIGN_OR_RETURN(Statement newest,
                          Statement::Prepare(conn, "read newest window",
                                             "SELECT MAX(ts) FROM windows WHERE (" + model +
                                                 " IS NULL OR model = ?1)"));
      newest.Bind(1, query.model);
      EF_ASSIGN_OR_RETURN(const bool row, newest.Step());
      const std::optional<std::int64_t> ts = row ? newest.ColumnOptionalInt(0) : std::nullopt;
      if (row) newest.Reset();
      if (!ts) return out;  // no windows yet
      out.since_ms =
          *ts -
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::minutes(15)).count();
    }
    // From the 10-second buckets summed as windows were stored (0004_series.sql): a bucket_ms
    // that is a multiple of 10 s merges them (floor(bucket_ts / bucket) * bucket; % truncates
    // toward zero), and since_ms takes every 10-second bucket that holds it or starts after it.
    // Other bucket sizes read the windows themselves.
    const bool coarse = query.bucket_ms % 10000 == 0;
    const std::string sql =
        coarse ? "SELECT '', model, version, '', bucket_ts - (((bucket_ts % ?3) + ?3) % ?3) AS t, "
                 "SUM(windows), SUM(requests), SUM(errors), SUM(labeled), SUM(correct), "
                 "SUM(latency_count), SUM(latency_sum_ms), MAX(latency_max_ms)" +
                     SeriesBucketSums() +
                     ", CASE WHEN SUM(golden_n) > 0 THEN SUM(golden_sum) / SUM(golden_n) END "
                     "FROM series WHERE (" +
                     model +
                     " IS NULL OR model = ?1) AND bucket_ts > ?2 - 10000 "
                     "GROUP BY model, version, t ORDER BY model, version, t"
               : "SELECT '', w.model, w.version, '', w.ts - (((w.ts % ?3) + ?3) % ?3) AS t, "
                 "COUNT(*), SUM(w.count), SUM(w.errors), SUM(w.labeled), SUM(w.correct), "
                 "SUM(w.latency_count), SUM(w.latency_sum_ms), MAX(w.latency_max_ms)" +
                     BucketSums() + ", AVG(w.golden_accuracy) FROM windows w WHERE (" + model +
                     " IS NULL OR w.model = ?1) AND w.ts >= ?2 "
                     "GROUP BY w.model, w.version, t ORDER BY w.model, w.version, t";
    EF_ASSIGN_OR_RETURN(out.buckets,
                        QuerySeries(
                            conn, "read series", sql,
                            [&](Statement& q) {
                              q.Bind(1, query.model).Bind(2, out.since_ms).Bind(3, query.bucket_ms);
                            },
                            query.max_points));
    return out;
  });
}

Result<std::vector<StoredMessage>> FleetView::Rollouts(std::size_t limit) const {
  return OnConnection(*impl_, [&](const auto& conn) -> Result<std::vector<StoredMessage>> {
    using Statement = typename Engine<std::decay_t<decltype(conn)>>::Statement;
    EF_ASSIGN_OR_RETURN(Statement q, Statement::Prepare(conn, "list rollouts",
                                                        "SELECT fleet, received_ms, json FROM "
                                                        "rollouts ORDER BY started_ts DESC, "
                                                        "id DESC LIMIT ?1"));
    q.Bind(1, static_cast<std::int64_t>(limit));
    return ReadMessages(q);
  });
}

namespace {

// The condition on parameter 1 for a read of one device's events, or of all: "device = ?1" is
// what lets the database use events_by_device_ts; the form
// "?1 IS NULL OR device = ?1" could not, and read every device's newest rows to find one's.
std::string DeviceIs(const std::optional<std::string>& device, bool pg) {
  if (device) return "device = ?1";
  return pg ? "?1::text IS NULL" : "?1 IS NULL";
}

}  // namespace

Result<std::vector<StoredMessage>> FleetView::Windows(const WindowQuery& query) const {
  return OnConnection(*impl_, [&](const auto& conn) -> Result<std::vector<StoredMessage>> {
    using Db = std::decay_t<decltype(conn)>;
    using Statement = typename Engine<Db>::Statement;
    const bool pg = Engine<Db>::kPostgres;
    // "(?N IS NULL OR model = ?N)": PostgreSQL infers a parameter's type from its first use.
    auto model_is = [&](const std::string& n) {
      return "(" + (pg ? n + "::text" : n) + " IS NULL OR model = " + n + ")";
    };
    const auto limit = static_cast<std::int64_t>(query.limit);
    if (!query.device) {
      EF_ASSIGN_OR_RETURN(Statement q,
                          Statement::Prepare(conn, "list windows",
                                             "SELECT fleet, received_ms, json FROM windows WHERE " +
                                                 model_is("?1") +
                                                 " AND ts >= ?2 ORDER BY ts "
                                                 "DESC, id DESC LIMIT ?3"));
      q.Bind(1, query.model)
          .Bind(2, query.since_ms.value_or(std::numeric_limits<std::int64_t>::min()))
          .Bind(3, limit);
      return ReadMessages(q);
    }
    // One device: the hours it has windows in (window_hours), newest first, and in each its
    // buckets of windows_by_time, one seek each, until `limit` rows. Buckets and hours follow ts,
    // so the hours' rows in order are the rows in order. The walk starts at the hour of the
    // newest window of the asked model (totals.last_ts): a model the device stopped running a
    // month ago costs no seek for each hour it ran other models since, one it never ran none.
    EF_ASSIGN_OR_RETURN(
        Statement newest,
        Statement::Prepare(
            conn, "find a device's newest window",
            "SELECT MAX(last_ts) FROM totals WHERE device = ?1 AND " + model_is("?2")));
    newest.Bind(1, query.device).Bind(2, query.model);
    EF_ASSIGN_OR_RETURN(const bool any, newest.Step());
    if (!any || newest.IsNull(0)) return std::vector<StoredMessage>{};
    const std::int64_t newest_hour = newest.ColumnInt(0) / kWindowHourMs;
    EF_ASSIGN_OR_RETURN(Statement hours,
                        Statement::Prepare(conn, "find a device's window hours",
                                           "SELECT hour FROM window_hours WHERE device = ?1 AND "
                                           "hour >= ?2 AND hour <= ?3 ORDER BY hour DESC"));
    const std::int64_t since = std::max<std::int64_t>(0, query.since_ms.value_or(0));
    hours.Bind(1, query.device).Bind(2, since / kWindowHourMs).Bind(3, newest_hour);
    std::vector<std::int64_t> newest_first;
    while (true) {
      EF_ASSIGN_OR_RETURN(const bool row, hours.Step());
      if (!row) break;
      newest_first.push_back(hours.ColumnInt(0));
    }
    EF_ASSIGN_OR_RETURN(
        Statement q,
        Statement::Prepare(
            conn, "list a device's windows",
            "WITH RECURSIVE k(b) AS (SELECT CAST(?5 AS BIGINT) UNION ALL SELECT b - 1 FROM k "
            "WHERE b > ?6) SELECT w.fleet, w.received_ms, w.json FROM k CROSS JOIN windows w "
            "WHERE " +
                WindowBucket("w.ts") + " = k.b AND w.device = ?1 AND " + model_is("?2") +
                " AND w.ts >= ?3 ORDER BY w.ts DESC, w.id DESC LIMIT ?4"));
    constexpr std::int64_t kPerHour = kWindowHourMs / kWindowBucketMs;
    std::vector<StoredMessage> out;
    for (const std::int64_t hour : newest_first) {
      if (static_cast<std::int64_t>(out.size()) >= limit) break;
      q.Bind(1, query.device)
          .Bind(2, query.model)
          .Bind(3, since)
          .Bind(4, limit - static_cast<std::int64_t>(out.size()))
          .Bind(5, hour * kPerHour + kPerHour - 1)
          .Bind(6, hour * kPerHour);
      EF_ASSIGN_OR_RETURN(std::vector<StoredMessage> part, ReadMessages(q));
      for (StoredMessage& m : part) out.push_back(std::move(m));
    }
    return out;
  });
}

Result<std::vector<StoredMessage>> FleetView::Events(const EventQuery& query) const {
  return OnConnection(*impl_, [&](const auto& conn) -> Result<std::vector<StoredMessage>> {
    using Db = std::decay_t<decltype(conn)>;
    using Statement = typename Engine<Db>::Statement;
    EF_ASSIGN_OR_RETURN(Statement q,
                        Statement::Prepare(conn, "list events",
                                           "SELECT fleet, received_ms, json FROM events WHERE " +
                                               DeviceIs(query.device, Engine<Db>::kPostgres) +
                                               " ORDER BY ts DESC, id DESC LIMIT ?2"));
    q.Bind(1, query.device).Bind(2, static_cast<std::int64_t>(query.limit));
    return ReadMessages(q);
  });
}

Result<FleetSummary> FleetView::Summary(std::optional<std::chrono::milliseconds> span) const {
  // Per model version: the windows' sums (over the span, per device series, as Recent counts
  // them; else the running totals, summed in the database).
  std::map<std::pair<std::string, std::string>, VersionSummary> by_version;
  auto add = [&](const SeriesStats& s, std::uint64_t devices) {
    VersionSummary& v = by_version[{s.model, s.version}];
    v.model = s.model;
    v.version = s.version;
    v.devices += devices;
    v.sum.model = s.model;
    v.sum.version = s.version;
    v.sum.windows += s.windows;
    v.sum.requests += s.requests;
    v.sum.errors += s.errors;
    v.sum.labeled += s.labeled;
    v.sum.correct += s.correct;
    v.sum.latency.Merge(s.latency);
  };
  if (span) {
    EF_ASSIGN_OR_RETURN(std::vector<SeriesStats> recent, Recent(*span));
    for (const SeriesStats& s : recent) add(s, 1);
  }
  return OnConnection(*impl_, [&](const auto& conn) -> Result<FleetSummary> {
    using Db = std::decay_t<decltype(conn)>;
    using Statement = typename Engine<Db>::Statement;
    if (!span) {
      // ReadSeries' columns (no device: every device), then the device count.
      EF_ASSIGN_OR_RETURN(
          Statement q,
          Statement::Prepare(conn, "sum totals per model version",
                             "SELECT '', model, version, '', MAX(last_ts), SUM(windows), "
                             "SUM(requests), SUM(errors), SUM(labeled), SUM(correct), "
                             "SUM(latency_count), SUM(latency_sum_ms), MAX(latency_max_ms)" +
                                 SeriesBucketSums() +
                                 ", NULL, COUNT(*) FROM totals GROUP BY model, version"));
      while (true) {
        EF_ASSIGN_OR_RETURN(const bool row, q.Step());
        if (!row) break;
        const std::int64_t devices = q.ColumnInt(kSeriesColumns);
        add(ReadSeries(q), static_cast<std::uint64_t>(std::max<std::int64_t>(0, devices)));
      }
    }
    FleetSummary out;
    {
      EF_ASSIGN_OR_RETURN(Statement q,
                          Statement::Prepare(conn, "count devices",
                                             "SELECT COUNT(*), COALESCE(SUM(online), 0), "
                                             "(SELECT COALESCE(SUM(received), 0) FROM sequences) "
                                             "FROM devices"));
      EF_ASSIGN_OR_RETURN(const bool row, q.Step());
      if (row) {
        out.devices = static_cast<std::uint64_t>(q.ColumnInt(0));
        out.online = static_cast<std::uint64_t>(q.ColumnInt(1));
        out.numbered = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(2)));
        q.Reset();
      }
    }
    {
      // The active version of each model in each device's newest status, kept as statuses are
      // stored (device_active, 0006_windows_by_time.sql).
      EF_ASSIGN_OR_RETURN(Statement q,
                          Statement::Prepare(conn, "count active versions",
                                             "SELECT model, version, COUNT(*) FROM device_active "
                                             "GROUP BY model, version"));
      while (true) {
        EF_ASSIGN_OR_RETURN(const bool row, q.Step());
        if (!row) break;
        VersionSummary& v = by_version[{q.ColumnText(0), q.ColumnText(1)}];
        v.model = q.ColumnText(0);
        v.version = q.ColumnText(1);
        v.active_on = static_cast<std::uint64_t>(q.ColumnInt(2));
      }
    }
    for (auto& [key, v] : by_version) {
      v.sum.latency.UpdatePercentiles();
      out.versions.push_back(std::move(v));
    }
    return out;
  });
}

}  // namespace edgefleet::deploy
