#include "deploy/collector_store.hpp"

#include "manifests/sqlite_db.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string_view>
#include <utility>

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;

// deploy/collector_migrations/NNNN_*.sql, embedded by updater/migrations/embed.cmake.
constexpr manifests::SqlMigration kMigrations[] = {
#include "deploy/collector_migrations.inc"
};

// "EFCO" in the file header: `edgefleet devices --db` on an agent journal (which also has a
// schema_version table) says what the file is instead of failing on a missing table.
constexpr int kApplicationId = 0x4546434f;

using manifests::SqliteDb;
using manifests::SqlMigration;
using manifests::SqlStatement;
using manifests::SqlTransaction;

std::int64_t AsInt(std::uint64_t value) {
  // ClassifyMessage refuses counters above 2^32 and serials above 2^63-1; this only guards.
  return static_cast<std::int64_t>(std::min<std::uint64_t>(value, INT64_MAX));
}

// The column of latency bucket i: "b00" .. "b16".
std::string BucketColumn(std::size_t i) { return (i < 10 ? "b0" : "b") + std::to_string(i); }
// "b00, b01, ..., b16".
std::string BucketColumns() {
  std::string out;
  for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
    out += (i ? ", " : "") + BucketColumn(i);
  }
  return out;
}
// "?first, ?first+1, ..." (count parameters).
std::string Parameters(int first, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out += (i ? ", ?" : "?") + std::to_string(first + i);
  return out;
}

constexpr int kBuckets = static_cast<int>(telemetry::kLatencyBuckets);

}  // namespace

// ---- CollectorStore ----

namespace detail {
struct StoreImpl {
  explicit StoreImpl(SqliteDb db) : conn(std::move(db)) {}
  SqliteDb conn;
  std::optional<SqlStatement> insert_window, add_totals, insert_event, count_seq, read_status,
      put_status, put_will, touch, read_rollout, put_rollout;
};
}  // namespace detail

namespace {

Status PrepareWriter(detail::StoreImpl& s) {
  const SqliteDb& c = s.conn;
  // 31 named columns + 17 buckets.
  EF_ASSIGN_OR_RETURN(
      s.insert_window,
      SqlStatement::Prepare(
          c, "store window",
          "INSERT OR IGNORE INTO windows (id, device, fleet, model, version, slot, "
          "role, ts, start_ts, window_s, received_ms, count, errors, server_errors, "
          "latency_count, latency_sum_ms, latency_max_ms, p50_ms, p99_ms, "
          "labeled, correct, golden_accuracy, shadow_agree, confidence_mean, "
          "confidence_std, rss_bytes, cpu_pct, temp_c, disk_free_bytes, json, " +
              BucketColumns() + ") VALUES (" + Parameters(1, 30 + kBuckets) + ")"));
  EF_ASSIGN_OR_RETURN(
      s.add_totals, SqlStatement::Prepare(c, "add to totals", [] {
        std::string sql =
            "INSERT INTO totals (device, model, version, windows, requests, errors, "
            "latency_count, latency_sum_ms, latency_max_ms, labeled, correct, last_ts, "
            "last_slot, " +
            BucketColumns() + ") VALUES (?1, ?2, ?3, 1, " + Parameters(4, 9 + kBuckets) +
            ") ON CONFLICT (device, model, version) DO UPDATE SET windows = windows + 1, "
            "requests = requests + excluded.requests, errors = errors + excluded.errors, "
            "latency_count = latency_count + excluded.latency_count, "
            "latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms, "
            "latency_max_ms = MAX(latency_max_ms, excluded.latency_max_ms), "
            "labeled = labeled + excluded.labeled, correct = correct + excluded.correct, "
            "last_slot = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last_slot "
            "ELSE last_slot END, last_ts = MAX(last_ts, excluded.last_ts)";
        for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
          const std::string column = BucketColumn(i);
          sql += ", " + column + " = " + column + " + excluded." + column;
        }
        return sql;
      }()));
  EF_ASSIGN_OR_RETURN(
      s.insert_event,
      SqlStatement::Prepare(
          c, "store event",
          "INSERT OR IGNORE INTO events (id, device, fleet, ts, received_ms, event, "
          "deployment, model, version, from_state, reason, serial, target, json) "
          "VALUES (" +
              Parameters(1, 14) + ")"));
  EF_ASSIGN_OR_RETURN(
      s.count_seq,
      SqlStatement::Prepare(
          c, "count sequence",
          "INSERT INTO sequences (device, stream, first_n, last_n, received, updated_ms) "
          "VALUES (?1, ?2, ?3, ?3, 1, ?4) ON CONFLICT (device, stream) DO UPDATE SET "
          "first_n = MIN(first_n, excluded.first_n), last_n = MAX(last_n, excluded.last_n), "
          "received = received + 1, updated_ms = excluded.updated_ms"));
  EF_ASSIGN_OR_RETURN(s.read_status,
                      SqlStatement::Prepare(c, "read status",
                                            "SELECT status_id, status_ts FROM devices "
                                            "WHERE device = ?1"));
  EF_ASSIGN_OR_RETURN(
      s.put_status,
      SqlStatement::Prepare(
          c, "store status",
          "INSERT INTO devices (device, fleet, online, last_seen_ms, offline_since_ms, status_id, "
          "status_ts, agent_version, connection, status_json) VALUES (?1, ?2, ?3, ?4, "
          "CASE WHEN ?3 = 1 THEN NULL ELSE ?4 END, ?5, ?6, ?7, ?8, ?9) "
          "ON CONFLICT (device) DO UPDATE SET fleet = excluded.fleet, online = excluded.online, "
          "last_seen_ms = MAX(COALESCE(last_seen_ms, 0), excluded.last_seen_ms), "
          "offline_since_ms = excluded.offline_since_ms, status_id = excluded.status_id, "
          "status_ts = excluded.status_ts, agent_version = excluded.agent_version, "
          "connection = excluded.connection, status_json = excluded.status_json"));
  EF_ASSIGN_OR_RETURN(
      s.put_will, SqlStatement::Prepare(
                      c, "store last will",
                      "INSERT INTO devices (device, fleet, online, offline_since_ms, status_id) "
                      "VALUES (?1, ?2, 0, ?3, ?4) ON CONFLICT (device) DO UPDATE SET "
                      "fleet = excluded.fleet, online = 0, "
                      "offline_since_ms = excluded.offline_since_ms, "
                      "status_id = excluded.status_id"));
  // A device first heard through telemetry or events is online: it just spoke.
  EF_ASSIGN_OR_RETURN(s.touch,
                      SqlStatement::Prepare(
                          c, "update last seen",
                          "INSERT INTO devices (device, fleet, online, last_seen_ms) "
                          "VALUES (?1, ?2, 1, ?3) ON CONFLICT (device) DO UPDATE SET "
                          "fleet = excluded.fleet, "
                          "last_seen_ms = MAX(COALESCE(last_seen_ms, 0), excluded.last_seen_ms)"));
  EF_ASSIGN_OR_RETURN(s.read_rollout, SqlStatement::Prepare(c, "read rollout",
                                                            "SELECT ts, json FROM rollouts "
                                                            "WHERE fleet = ?1 AND id = ?2"));
  EF_ASSIGN_OR_RETURN(
      s.put_rollout,
      SqlStatement::Prepare(
          c, "store rollout",
          "INSERT INTO rollouts (fleet, id, ts, received_ms, started_ts, finished_ts, grp, model, "
          "version, state, json) VALUES (" +
              Parameters(1, 11) +
              ") ON CONFLICT (fleet, id) DO UPDATE SET ts = excluded.ts, "
              "received_ms = excluded.received_ms, started_ts = excluded.started_ts, "
              "finished_ts = excluded.finished_ts, grp = excluded.grp, model = excluded.model, "
              "version = excluded.version, state = excluded.state, json = excluded.json"));
  return Ok();
}

// A stored window or event takes its number in the device's sequence (when it has one).
Status CountSequence(detail::StoreImpl& s, const IncomingMessage& in, const std::string& device,
                     const telemetry::MessageSeq& seq) {
  if (seq.n == 0) return Ok();
  SqlStatement& q = *s.count_seq;
  q.Bind(1, device).Bind(2, seq.stream).Bind(3, AsInt(seq.n)).Bind(4, in.received_ms);
  return q.Run();
}

Result<ApplyOutcome> StoreWindow(detail::StoreImpl& s, const IncomingMessage& in,
                                 const telemetry::TelemetryWindow& w) {
  SqlStatement& q = *s.insert_window;
  q.Bind(1, w.id)
      .Bind(2, w.device)
      .Bind(3, in.fleet)
      .Bind(4, w.model)
      .Bind(5, w.version)
      .Bind(6, w.slot)
      .Bind(7, w.role)
      .Bind(8, w.ts)
      .Bind(9, w.start_ts)
      .Bind(10, w.window_s)
      .Bind(11, in.received_ms)
      .Bind(12, AsInt(w.count))
      .Bind(13, AsInt(w.errors))
      .Bind(14, AsInt(w.server_errors))
      .Bind(15, AsInt(w.latency.count))
      .Bind(16, w.latency.sum_ms)
      .Bind(17, w.latency.max_ms)
      .Bind(18, w.latency.p50)
      .Bind(19, w.latency.p99)
      .Bind(20, AsInt(w.labeled))
      .Bind(21, AsInt(w.correct))
      .Bind(22, w.golden_accuracy)
      .Bind(23, w.shadow_agree)
      .Bind(24, w.confidence_mean)
      .Bind(25, w.confidence_std)
      .Bind(26, AsInt(w.health.rss_bytes))
      .Bind(27, w.health.cpu_pct)
      .Bind(28, w.health.temp_c)
      .Bind(29, AsInt(w.health.disk_free_bytes))
      .Bind(30, in.json);
  for (int i = 0; i < kBuckets; ++i) q.Bind(31 + i, AsInt(w.latency.buckets[i]));
  EF_RETURN_IF_ERROR(q.Run());
  if (s.conn.Changes() == 0) return ApplyOutcome::kDuplicate;

  SqlStatement& t = *s.add_totals;
  t.Bind(1, w.device)
      .Bind(2, w.model)
      .Bind(3, w.version)
      .Bind(4, AsInt(w.count))
      .Bind(5, AsInt(w.errors))
      .Bind(6, AsInt(w.latency.count))
      .Bind(7, w.latency.sum_ms)
      .Bind(8, w.latency.max_ms)
      .Bind(9, AsInt(w.labeled))
      .Bind(10, AsInt(w.correct))
      .Bind(11, w.ts)
      .Bind(12, w.slot);
  for (int i = 0; i < kBuckets; ++i) t.Bind(13 + i, AsInt(w.latency.buckets[i]));
  EF_RETURN_IF_ERROR(t.Run());
  EF_RETURN_IF_ERROR(CountSequence(s, in, w.device, w.seq));
  return ApplyOutcome::kStored;
}

Result<ApplyOutcome> StoreEvent(detail::StoreImpl& s, const IncomingMessage& in,
                                const telemetry::EventMessage& e) {
  SqlStatement& q = *s.insert_event;
  q.Bind(1, e.id)
      .Bind(2, e.device)
      .Bind(3, in.fleet)
      .Bind(4, e.ts)
      .Bind(5, in.received_ms)
      .Bind(6, e.event)
      .Bind(7, e.deployment)
      .Bind(8, e.model)
      .Bind(9, e.version)
      .Bind(10, e.from)
      .Bind(11, e.reason)
      .Bind(12, AsInt(e.serial))
      .Bind(13, e.target)
      .Bind(14, in.json);
  EF_RETURN_IF_ERROR(q.Run());
  if (s.conn.Changes() == 0) return ApplyOutcome::kDuplicate;
  EF_RETURN_IF_ERROR(CountSequence(s, in, e.device, e.seq));
  return ApplyOutcome::kStored;
}

bool IsLastWill(const telemetry::StatusMessage& m) { return !m.online && m.connection == 0; }

Result<ApplyOutcome> StoreStatus(detail::StoreImpl& s, const IncomingMessage& in,
                                 const telemetry::StatusMessage& m) {
  std::optional<std::string> stored_id;
  std::optional<std::int64_t> stored_ts;
  {
    SqlStatement& q = *s.read_status;
    q.Bind(1, m.device);
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (row) {
      if (!q.IsNull(0)) stored_id = q.ColumnText(0);
      stored_ts = q.ColumnOptionalInt(1);
      q.Reset();
    }
  }
  if (stored_id && *stored_id == m.id) return ApplyOutcome::kDuplicate;
  if (IsLastWill(m)) {
    SqlStatement& q = *s.put_will;
    q.Bind(1, m.device).Bind(2, in.fleet).Bind(3, in.received_ms).Bind(4, m.id);
    EF_RETURN_IF_ERROR(q.Run());
    return ApplyOutcome::kStored;
  }
  if (stored_ts && m.ts < *stored_ts) return ApplyOutcome::kStale;
  SqlStatement& q = *s.put_status;
  q.Bind(1, m.device)
      .Bind(2, in.fleet)
      .Bind(3, m.online ? 1 : 0)
      .Bind(4, in.received_ms)
      .Bind(5, m.id)
      .Bind(6, m.ts)
      .Bind(7, m.agent_version)
      .Bind(8, AsInt(m.connection))
      .Bind(9, in.json);
  EF_RETURN_IF_ERROR(q.Run());
  return ApplyOutcome::kStored;
}

// The newest status by the publisher's clock wins; the same message again (a retained message
// delivered on every resubscription) is a duplicate.
Result<ApplyOutcome> StoreRollout(detail::StoreImpl& s, const IncomingMessage& in,
                                  const RolloutStatus& r) {
  {
    SqlStatement& q = *s.read_rollout;
    q.Bind(1, in.fleet).Bind(2, r.id);
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (row) {
      const std::int64_t stored_ts = q.ColumnInt(0);
      const bool same = q.ColumnText(1) == in.json;
      q.Reset();
      if (r.ts < stored_ts) return ApplyOutcome::kStale;
      if (r.ts == stored_ts && same) return ApplyOutcome::kDuplicate;
    }
  }
  SqlStatement& q = *s.put_rollout;
  q.Bind(1, in.fleet)
      .Bind(2, r.id)
      .Bind(3, r.ts)
      .Bind(4, in.received_ms)
      .Bind(5, r.started_ts)
      .Bind(6, r.finished_ts)
      .Bind(7, r.group)
      .Bind(8, r.model)
      .Bind(9, r.version)
      .Bind(10, r.state)
      .Bind(11, in.json);
  EF_RETURN_IF_ERROR(q.Run());
  return ApplyOutcome::kStored;
}

}  // namespace

CollectorStore::CollectorStore(std::unique_ptr<detail::StoreImpl> impl) : impl_(std::move(impl)) {}
CollectorStore::CollectorStore(CollectorStore&&) noexcept = default;
CollectorStore& CollectorStore::operator=(CollectorStore&&) noexcept = default;
CollectorStore::~CollectorStore() = default;

int CollectorStore::LatestSchemaVersion() {
  return kMigrations[std::size(kMigrations) - 1].version;
}

Result<CollectorStore> CollectorStore::Open(const fs::path& path) {
  EF_ASSIGN_OR_RETURN(SqliteDb db, SqliteDb::Open(path, SqliteDb::Mode::kReadWriteCreate));
  auto impl = std::make_unique<detail::StoreImpl>(std::move(db));
  const SqliteDb& c = impl->conn;
  // The first statement reads the header: a file that is not a database fails here.
  {
    EF_ASSIGN_OR_RETURN(SqlStatement mode, SqlStatement::Prepare(c, "set journal_mode=WAL",
                                                                 "PRAGMA journal_mode=WAL"));
    EF_ASSIGN_OR_RETURN(const bool row, mode.Step());
    const std::string found = row ? mode.ColumnText(0) : "";
    if (row) mode.Reset();
    if (found != "wal") {
      return Fail(ErrorCode::kIo, path.string() + ": journal_mode is '" + found +
                                      "', not 'wal' (file system without shared memory?)");
    }
  }
  // NORMAL: in WAL mode a power cut may lose the last commits but never corrupts the file. The
  // collector has already acknowledged those messages to the broker when it writes them, so
  // FULL would not make them durable either; it would only halve the write rate.
  EF_RETURN_IF_ERROR(c.Exec("set synchronous=NORMAL", "PRAGMA synchronous=NORMAL"));
  EF_RETURN_IF_ERROR(c.CheckApplicationId(kApplicationId, "collector"));
  EF_RETURN_IF_ERROR(c.Migrate(kMigrations, kApplicationId));
  EF_RETURN_IF_ERROR(PrepareWriter(*impl));
  return CollectorStore(std::move(impl));
}

Result<std::vector<ApplyOutcome>> CollectorStore::Apply(std::span<const IncomingMessage> batch) {
  std::vector<ApplyOutcome> outcomes;
  outcomes.reserve(batch.size());
  if (batch.empty()) return outcomes;
  detail::StoreImpl& s = *impl_;
  EF_ASSIGN_OR_RETURN(SqlTransaction txn, SqlTransaction::Begin(s.conn, "store messages"));
  // Newest arrival per device (and its topic's fleet), written once per batch.
  std::map<std::string, std::pair<std::string, std::int64_t>> seen;
  for (const IncomingMessage& in : batch) {
    const std::string* device = nullptr;
    Result<ApplyOutcome> outcome = ApplyOutcome::kStored;
    if (const auto* w = std::get_if<telemetry::TelemetryWindow>(&in.message)) {
      device = &w->device;
      outcome = StoreWindow(s, in, *w);
    } else if (const auto* e = std::get_if<telemetry::EventMessage>(&in.message)) {
      device = &e->device;
      outcome = StoreEvent(s, in, *e);
    } else if (const auto* r = std::get_if<RolloutStatus>(&in.message)) {
      outcome = StoreRollout(s, in, *r);  // not a device: no last_seen
    } else {
      const auto& m = std::get<telemetry::StatusMessage>(in.message);
      if (!IsLastWill(m)) device = &m.device;
      outcome = StoreStatus(s, in, m);
    }
    if (!outcome) return Unexpected(outcome.error());
    outcomes.push_back(*outcome);
    if (device) {
      auto& [fleet, when] = seen[*device];
      if (in.received_ms >= when) {
        fleet = in.fleet;
        when = in.received_ms;
      }
    }
  }
  for (const auto& [device, fleet_when] : seen) {
    s.touch->Bind(1, device).Bind(2, fleet_when.first).Bind(3, fleet_when.second);
    EF_RETURN_IF_ERROR(s.touch->Run());
  }
  EF_RETURN_IF_ERROR(txn.Commit());
  return outcomes;
}

// ---- FleetView ----

namespace detail {
struct ViewImpl {
  explicit ViewImpl(SqliteDb db) : conn(std::move(db)) {}
  SqliteDb conn;
  mutable std::mutex mu;  // guards conn and every statement on it
};
}  // namespace detail

namespace {

// Columns shared by Totals(), Recent() and Series(): device, model, version, last_slot, last_ts,
// windows, requests, errors, labeled, correct, latency_count, latency_sum_ms, latency_max_ms,
// b00..b16, golden accuracy (NULL when none).
SeriesStats ReadSeries(const SqlStatement& q) {
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
Result<std::vector<SeriesStats>> QuerySeries(const SqliteDb& conn, std::string operation,
                                             const std::string& sql,
                                             const std::function<void(SqlStatement&)>& bind,
                                             std::size_t max_rows = SIZE_MAX) {
  EF_ASSIGN_OR_RETURN(SqlStatement q, SqlStatement::Prepare(conn, std::move(operation), sql));
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

// ", SUM(w.b00), ..., SUM(w.b16)".
std::string BucketSums() {
  std::string sums;
  for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) {
    sums += ", SUM(w." + BucketColumn(i) + ")";
  }
  return sums;
}

Result<std::vector<StoredMessage>> ReadMessages(SqlStatement& q) {
  std::vector<StoredMessage> out;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    out.push_back({q.ColumnText(0), q.ColumnInt(1), q.ColumnText(2)});
  }
  return out;
}

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

Result<FleetView> FleetView::Open(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Fail(ErrorCode::kNotFound,
                path.string() + ": no such collector database (run `edgefleet collect --db " +
                    path.string() + "` first)");
  }
  EF_ASSIGN_OR_RETURN(SqliteDb db, SqliteDb::Open(path, SqliteDb::Mode::kReadOnly));
  auto impl = std::make_unique<detail::ViewImpl>(std::move(db));
  const SqliteDb& c = impl->conn;
  EF_ASSIGN_OR_RETURN(const bool empty, c.CheckApplicationId(kApplicationId, "collector"));
  if (empty) {
    return Fail(ErrorCode::kIntegrity,
                path.string() + ": not a collector database (an empty file)");
  }
  EF_ASSIGN_OR_RETURN(
      const std::int64_t version,
      c.QueryInt("read schema_version", "SELECT COALESCE(MAX(version), 0) FROM schema_version"));
  if (version != CollectorStore::LatestSchemaVersion()) {
    return Fail(ErrorCode::kUnsupported,
                path.string() + ": schema version " + std::to_string(version) +
                    ", this build reads " + std::to_string(CollectorStore::LatestSchemaVersion()) +
                    (version < CollectorStore::LatestSchemaVersion()
                         ? " (start this build's `edgefleet collect` on it once to migrate)"
                         : " (written by a newer edgefleet)"));
  }
  return FleetView(std::move(impl));
}

Result<std::vector<DeviceRecord>> FleetView::Devices() const {
  EF_ASSIGN_OR_RETURN(DevicePage page, Devices(DeviceQuery{}));
  return std::move(page.devices);
}

Result<DevicePage> FleetView::Devices(const DeviceQuery& query) const {
  // ?1 online, ?2 group, ?3 model, ?4 version: NULL matches any. Groups and models are read from
  // the stored status (SQLite's JSON functions; status_json was checked when it arrived).
  static constexpr const char* kMatch =
      "FROM devices d WHERE (?1 IS NULL OR d.online = ?1) "
      "AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(d.status_json, '$.groups') g "
      "WHERE g.value = ?2)) "
      "AND ((?3 IS NULL AND ?4 IS NULL) OR EXISTS (SELECT 1 FROM "
      "json_each(d.status_json, '$.models') m WHERE (?3 IS NULL OR "
      "json_extract(m.value, '$.name') = ?3) AND (?4 IS NULL OR "
      "json_extract(m.value, '$.active.version') = ?4)))";
  auto bind = [&](SqlStatement& q) {
    q.Bind(1, query.online).Bind(2, query.group).Bind(3, query.model).Bind(4, query.version);
  };
  std::lock_guard lock(impl_->mu);
  DevicePage page;
  {
    EF_ASSIGN_OR_RETURN(SqlStatement count,
                        SqlStatement::Prepare(impl_->conn, "count devices",
                                              std::string("SELECT COUNT(*) ") + kMatch));
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
      SqlStatement q,
      SqlStatement::Prepare(
          impl_->conn, "list devices",
          std::string("SELECT d.device, fleet, online, last_seen_ms, offline_since_ms, "
                      "status_ts, agent_version, connection, status_json, "
                      "(SELECT COALESCE(SUM(received), 0) FROM sequences s "
                      "WHERE s.device = d.device), "
                      "(SELECT COALESCE(SUM(MAX(last_n - first_n + 1 - received, 0)), 0) "
                      "FROM sequences s WHERE s.device = d.device) ") +
              kMatch + " AND (?5 IS NULL OR d.device > ?5) ORDER BY d.device LIMIT ?6"));
  bind(q);
  q.Bind(5, query.after);
  q.Bind(6, query.limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(query.limit) + 1);
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
}

Result<FleetView::MissingTotals> FleetView::Missing() const {
  std::lock_guard lock(impl_->mu);
  EF_ASSIGN_OR_RETURN(
      SqlStatement q,
      SqlStatement::Prepare(impl_->conn, "count missing",
                            "SELECT COALESCE(SUM(m), 0), COUNT(*) FROM (SELECT "
                            "SUM(MAX(last_n - first_n + 1 - received, 0)) AS m FROM sequences "
                            "GROUP BY device HAVING m > 0)"));
  MissingTotals totals;
  EF_ASSIGN_OR_RETURN(const bool row, q.Step());
  if (row) {
    totals.missing = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(0)));
    totals.devices = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.ColumnInt(1)));
    q.Reset();
  }
  return totals;
}

Result<std::vector<SeriesStats>> FleetView::Totals() const {
  std::lock_guard lock(impl_->mu);
  return QuerySeries(impl_->conn, "read totals",
                     "SELECT device, model, version, last_slot, last_ts, windows, requests, "
                     "errors, labeled, correct, latency_count, latency_sum_ms, latency_max_ms, " +
                         BucketColumns() + ", NULL FROM totals ORDER BY device, model, version",
                     [](SqlStatement&) {});
}

Result<std::vector<SeriesStats>> FleetView::Recent(std::chrono::milliseconds span) const {
  std::lock_guard lock(impl_->mu);
  return QuerySeries(
      impl_->conn, "read recent windows",
      "SELECT t.device, t.model, t.version, t.last_slot, t.last_ts, COUNT(*), SUM(w.count), "
      "SUM(w.errors), SUM(w.labeled), SUM(w.correct), SUM(w.latency_count), "
      "SUM(w.latency_sum_ms), MAX(w.latency_max_ms)" +
          BucketSums() +
          ", AVG(w.golden_accuracy) FROM totals t JOIN windows w ON w.device = t.device AND "
          "w.model = t.model AND w.version = t.version AND w.ts >= t.last_ts - ?1 "
          "GROUP BY t.device, t.model, t.version ORDER BY t.device, t.model, t.version",
      [&](SqlStatement& q) { q.Bind(1, span.count()); });
}

Result<SeriesBuckets> FleetView::Series(const SeriesQuery& query) const {
  if (query.bucket_ms <= 0) {
    return Fail(ErrorCode::kInvalidArgument, "bucket: must be positive");
  }
  std::lock_guard lock(impl_->mu);
  SeriesBuckets out;
  if (query.since_ms) {
    out.since_ms = *query.since_ms;
  } else {
    EF_ASSIGN_OR_RETURN(SqlStatement newest,
                        SqlStatement::Prepare(impl_->conn, "read newest window",
                                              "SELECT MAX(ts) FROM windows "
                                              "WHERE (?1 IS NULL OR model = ?1)"));
    newest.Bind(1, query.model);
    EF_ASSIGN_OR_RETURN(const bool row, newest.Step());
    const std::optional<std::int64_t> ts = row ? newest.ColumnOptionalInt(0) : std::nullopt;
    if (row) newest.Reset();
    if (!ts) return out;  // no windows yet
    out.since_ms =
        *ts -
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::minutes(15)).count();
  }
  // A window's bucket starts at floor(ts / bucket) * bucket (SQLite's % truncates toward zero).
  EF_ASSIGN_OR_RETURN(
      out.buckets,
      QuerySeries(
          impl_->conn, "read series",
          "SELECT '', w.model, w.version, '', w.ts - (((w.ts % ?3) + ?3) % ?3) AS t, COUNT(*), "
          "SUM(w.count), SUM(w.errors), SUM(w.labeled), SUM(w.correct), SUM(w.latency_count), "
          "SUM(w.latency_sum_ms), MAX(w.latency_max_ms)" +
              BucketSums() +
              ", AVG(w.golden_accuracy) FROM windows w WHERE (?1 IS NULL OR w.model = ?1) "
              "AND w.ts >= ?2 GROUP BY w.model, w.version, t ORDER BY w.model, w.version, t",
          [&](SqlStatement& q) {
            q.Bind(1, query.model).Bind(2, out.since_ms).Bind(3, query.bucket_ms);
          },
          query.max_points));
  return out;
}

Result<std::vector<StoredMessage>> FleetView::Rollouts(std::size_t limit) const {
  std::lock_guard lock(impl_->mu);
  EF_ASSIGN_OR_RETURN(SqlStatement q,
                      SqlStatement::Prepare(impl_->conn, "list rollouts",
                                            "SELECT fleet, received_ms, json FROM rollouts "
                                            "ORDER BY started_ts DESC, id DESC LIMIT ?1"));
  q.Bind(1, static_cast<std::int64_t>(limit));
  return ReadMessages(q);
}

Result<std::vector<StoredMessage>> FleetView::Windows(const WindowQuery& query) const {
  std::lock_guard lock(impl_->mu);
  EF_ASSIGN_OR_RETURN(SqlStatement q,
                      SqlStatement::Prepare(impl_->conn, "list windows",
                                            "SELECT fleet, received_ms, json FROM windows "
                                            "WHERE (?1 IS NULL OR device = ?1) "
                                            "AND (?2 IS NULL OR model = ?2) "
                                            "AND (?3 IS NULL OR ts >= ?3) "
                                            "ORDER BY ts DESC, id DESC LIMIT ?4"));
  q.Bind(1, query.device)
      .Bind(2, query.model)
      .Bind(3, query.since_ms)
      .Bind(4, static_cast<std::int64_t>(query.limit));
  return ReadMessages(q);
}

Result<std::vector<StoredMessage>> FleetView::Events(const EventQuery& query) const {
  std::lock_guard lock(impl_->mu);
  EF_ASSIGN_OR_RETURN(SqlStatement q,
                      SqlStatement::Prepare(impl_->conn, "list events",
                                            "SELECT fleet, received_ms, json FROM events "
                                            "WHERE (?1 IS NULL OR device = ?1) "
                                            "ORDER BY ts DESC, id DESC LIMIT ?2"));
  q.Bind(1, query.device).Bind(2, static_cast<std::int64_t>(query.limit));
  return ReadMessages(q);
}

}  // namespace edgefleet::deploy
