#include "deploy/collector/collector_store.hpp"

#include "deploy/collector/collector_sql.hpp"
#include "deploy/collector/pg_db.hpp"
#include "manifests/sqlite_db.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;

// deploy/collector/collector_migrations/NNNN_*.sql, embedded by updater/migrations/embed.cmake.
constexpr manifests::SqlMigration kMigrations[] = {
#include "deploy/collector/collector_migrations.inc"
};
// deploy/collector/collector_migrations_pg/NNNN_*.sql: the same versions for PostgreSQL.
constexpr manifests::SqlMigration kPgMigrations[] = {
#include "deploy/collector/collector_migrations_pg.inc"
};
static_assert(std::size(kPgMigrations) == std::size(kMigrations),
              "every collector migration has a PostgreSQL form");

using collector_sql::BucketColumn;
using collector_sql::BucketColumns;
using collector_sql::Engine;
using collector_sql::Greatest;
using collector_sql::kApplicationId;
using collector_sql::kBuckets;
using collector_sql::Least;
using manifests::SqliteDb;
using manifests::SqlMigration;
using manifests::SqlStatement;

std::int64_t AsInt(std::uint64_t value) {
  // ClassifyMessage refuses counters above 2^32 and serials above 2^63-1; this only guards.
  return static_cast<std::int64_t>(std::min<std::uint64_t>(value, INT64_MAX));
}

// "?first, ?first+1, ..." (count parameters).
std::string Parameters(int first, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out += (i ? ", ?" : "?") + std::to_string(first + i);
  return out;
}

}  // namespace

// ---- CollectorStore ----

namespace detail {
// What a batch's windows add to one row of totals or series.
struct WindowSums {
  std::int64_t windows = 0, requests = 0, errors = 0, latency_count = 0, labeled = 0, correct = 0;
  double latency_sum_ms = 0, latency_max_ms = 0;
  std::array<std::int64_t, kBuckets> buckets{};
};
// A batch's sums for one 10-second bucket of one model version's series (0004_series.sql).
struct SeriesAdd {
  WindowSums sums;
  double golden_sum = 0;
  std::int64_t golden_n = 0;
};
// A batch's sums for one device, model and version's totals, and its newest window.
struct TotalsAdd {
  WindowSums sums;
  std::int64_t last_ts = 0;
  std::string last_slot;
};
// A batch's numbers in one device's stream (0003_sequences.sql).
struct SequenceAdd {
  std::int64_t first_n = INT64_MAX, last_n = 0, received = 0, updated_ms = 0;
};

// The writer on one engine (Writer below).
struct StoreImpl {
  virtual ~StoreImpl() = default;
  virtual Result<std::vector<ApplyOutcome>> Apply(std::span<const IncomingMessage> batch) = 0;
};
}  // namespace detail

namespace {

template <class Db>
struct Writer final : detail::StoreImpl {
  using Statement = typename Engine<Db>::Statement;
  explicit Writer(Db db) : conn(std::move(db)) {}
  Result<std::vector<ApplyOutcome>> Apply(std::span<const IncomingMessage> batch) override;
  Db conn;
  std::optional<Statement> insert_window, add_totals, add_series, add_hour, insert_event, count_seq,
      read_status, put_status, clear_active, add_active, put_will, touch, read_rollout, put_rollout;
  // Summed over a batch and written once per key before it commits: a batch of windows from
  // thousands of devices touches a few series rows thousands of times otherwise, and a batch
  // that holds a backlog holds several windows of each device. Sorted keys also make every
  // writer of one PostgreSQL database lock these rows in one order.
  std::map<std::tuple<std::string, std::string, std::int64_t>, detail::SeriesAdd> series;
  std::map<std::tuple<std::string, std::string, std::string>, detail::TotalsAdd> totals;
  std::map<std::pair<std::string, std::string>, detail::SequenceAdd> sequences;
  std::set<std::pair<std::string, std::int64_t>> hours;  // (device, ts / kWindowHourMs)
};

template <class Db>
Status PrepareWriter(Writer<Db>& s) {
  using Statement = typename Engine<Db>::Statement;
  const Db& c = s.conn;
  // One text for both engines: ON CONFLICT (SQLite 3.24+, PostgreSQL 9.5+), the stored row's
  // columns qualified by their table (PostgreSQL finds a bare name ambiguous beside excluded.*),
  // and Greatest/Least instead of SQLite's two-argument MAX/MIN.
  // 30 named columns, 17 buckets, then the message's number (0005_dedup_by_sequence.sql): a
  // numbered message conflicts on (ts / 10000, device, model, version, ts, stream, n:
  // 0006_windows_by_time.sql), an unnumbered one on its id.
  EF_ASSIGN_OR_RETURN(
      s.insert_window,
      Statement::Prepare(c, "store window",
                         "INSERT INTO windows (id, device, fleet, model, version, slot, "
                         "role, ts, start_ts, window_s, received_ms, count, errors, server_errors, "
                         "latency_count, latency_sum_ms, latency_max_ms, p50_ms, p99_ms, "
                         "labeled, correct, golden_accuracy, shadow_agree, confidence_mean, "
                         "confidence_std, rss_bytes, cpu_pct, temp_c, disk_free_bytes, json, " +
                             BucketColumns() + ", stream, n) VALUES (" +
                             Parameters(1, 32 + kBuckets) + ") ON CONFLICT DO NOTHING"));
  // A batch adds its windows' sums to their devices' running totals and to their 10-second
  // buckets of the series (0004_series.sql): parameters 4..10, 13.. and the window count last
  // (BindSums).
  auto add_sums = [](const std::string& table) {
    auto add = [&](const std::string& column) {
      return column + " = " + table + "." + column + " + excluded." + column;
    };
    std::string sql = add("windows") + ", " + add("requests") + ", " + add("errors") + ", " +
                      add("latency_count") + ", " + add("latency_sum_ms") + ", latency_max_ms = " +
                      Greatest(table + ".latency_max_ms", "excluded.latency_max_ms") + ", " +
                      add("labeled") + ", " + add("correct");
    for (std::size_t i = 0; i < telemetry::kLatencyBuckets; ++i) sql += ", " + add(BucketColumn(i));
    return sql;
  };
  EF_ASSIGN_OR_RETURN(
      s.add_totals,
      Statement::Prepare(
          c, "add to totals",
          "INSERT INTO totals (device, model, version, windows, requests, errors, "
          "latency_count, latency_sum_ms, latency_max_ms, labeled, correct, last_ts, last_slot, " +
              BucketColumns() + ") VALUES (?1, ?2, ?3, ?" + std::to_string(13 + kBuckets) + ", " +
              Parameters(4, 9 + kBuckets) +
              ") ON CONFLICT (device, model, version) DO UPDATE SET " + add_sums("totals") +
              ", last_slot = CASE WHEN excluded.last_ts >= totals.last_ts THEN "
              "excluded.last_slot ELSE totals.last_slot END, last_ts = " +
              Greatest("totals.last_ts", "excluded.last_ts")));
  // % truncates toward zero (SQLite, PostgreSQL): the bucket is ts rounded down to 10 s.
  EF_ASSIGN_OR_RETURN(
      s.add_series,
      Statement::Prepare(
          c, "add to series",
          "INSERT INTO series (model, version, bucket_ts, windows, requests, errors, "
          "latency_count, latency_sum_ms, latency_max_ms, labeled, correct, golden_sum, "
          "golden_n, " +
              BucketColumns() + ") VALUES (?1, ?2, ?3 - (((?3 % 10000) + 10000) % 10000), ?" +
              std::to_string(13 + kBuckets) + ", " + Parameters(4, 9 + kBuckets) +
              ") ON CONFLICT (model, version, bucket_ts) DO UPDATE SET " + add_sums("series") +
              ", golden_sum = series.golden_sum + excluded.golden_sum, "
              "golden_n = series.golden_n + excluded.golden_n"));
  // A device's first window of an hour adds a row; the others find it (0006_windows_by_time.sql).
  EF_ASSIGN_OR_RETURN(s.add_hour, Statement::Prepare(c, "add window hour",
                                                     "INSERT INTO window_hours (device, hour) "
                                                     "VALUES (?1, ?2) ON CONFLICT DO NOTHING"));
  EF_ASSIGN_OR_RETURN(
      s.insert_event,
      Statement::Prepare(c, "store event",
                         "INSERT INTO events (id, device, fleet, ts, received_ms, event, "
                         "deployment, model, version, from_state, reason, serial, target, json, "
                         "stream, n) VALUES (" +
                             Parameters(1, 16) + ") ON CONFLICT DO NOTHING"));
  EF_ASSIGN_OR_RETURN(
      s.count_seq,
      Statement::Prepare(
          c, "count sequence",
          "INSERT INTO sequences (device, stream, first_n, last_n, received, updated_ms) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (device, stream) DO UPDATE SET "
          "first_n = " +
              Least("sequences.first_n", "excluded.first_n") +
              ", last_n = " + Greatest("sequences.last_n", "excluded.last_n") +
              ", received = sequences.received + excluded.received, updated_ms = " +
              Greatest("sequences.updated_ms", "excluded.updated_ms")));
  // PostgreSQL: several collectors may store statuses of one device at once (each receives
  // every status); the row stays locked from this read to the commit, so they take turns.
  EF_ASSIGN_OR_RETURN(s.read_status,
                      Statement::Prepare(c, "read status",
                                         std::string("SELECT status_id, status_ts FROM devices "
                                                     "WHERE device = ?1") +
                                             (Engine<Db>::kPostgres ? " FOR UPDATE" : "")));
  const std::string newest_seen =
      "last_seen_ms = " + Greatest("COALESCE(devices.last_seen_ms, 0)", "excluded.last_seen_ms");
  EF_ASSIGN_OR_RETURN(
      s.put_status,
      Statement::Prepare(
          c, "store status",
          "INSERT INTO devices (device, fleet, online, last_seen_ms, offline_since_ms, status_id, "
          "status_ts, agent_version, connection, status_json) VALUES (?1, ?2, ?3, ?4, "
          "CASE WHEN ?3 = 1 THEN NULL ELSE ?4 END, ?5, ?6, ?7, ?8, ?9) "
          "ON CONFLICT (device) DO UPDATE SET fleet = excluded.fleet, online = excluded.online, " +
              newest_seen +
              ", offline_since_ms = excluded.offline_since_ms, status_id = excluded.status_id, "
              "status_ts = excluded.status_ts, agent_version = excluded.agent_version, "
              "connection = excluded.connection, status_json = excluded.status_json"));
  // The active version of each model in the device's newest status, kept beside it so that the
  // fleet summary counts rows instead of parsing every status (0006_windows_by_time.sql).
  EF_ASSIGN_OR_RETURN(s.clear_active,
                      Statement::Prepare(c, "clear active versions",
                                         "DELETE FROM device_active WHERE device = ?1"));
  EF_ASSIGN_OR_RETURN(s.add_active, Statement::Prepare(c, "add active version",
                                                       "INSERT INTO device_active (device, "
                                                       "model, version) VALUES (?1, ?2, ?3) "
                                                       "ON CONFLICT DO NOTHING"));
  EF_ASSIGN_OR_RETURN(
      s.put_will,
      Statement::Prepare(c, "store last will",
                         "INSERT INTO devices (device, fleet, online, offline_since_ms, status_id) "
                         "VALUES (?1, ?2, 0, ?3, ?4) ON CONFLICT (device) DO UPDATE SET "
                         "fleet = excluded.fleet, online = 0, "
                         "offline_since_ms = excluded.offline_since_ms, "
                         "status_id = excluded.status_id"));
  // A device first heard through telemetry or events is online: it just spoke.
  EF_ASSIGN_OR_RETURN(s.touch, Statement::Prepare(c, "update last seen",
                                                  "INSERT INTO devices (device, fleet, online, "
                                                  "last_seen_ms) VALUES (?1, ?2, 1, ?3) "
                                                  "ON CONFLICT (device) DO UPDATE SET "
                                                  "fleet = excluded.fleet, " +
                                                      newest_seen));
  EF_ASSIGN_OR_RETURN(s.read_rollout,
                      Statement::Prepare(c, "read rollout",
                                         std::string("SELECT ts, json FROM rollouts "
                                                     "WHERE fleet = ?1 AND id = ?2") +
                                             (Engine<Db>::kPostgres ? " FOR UPDATE" : "")));
  EF_ASSIGN_OR_RETURN(
      s.put_rollout,
      Statement::Prepare(
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

// A stored window or event takes its number in the device's sequence (when it has one); written
// with the batch (WriteBatchSums).
template <class Db>
void CountSequence(Writer<Db>& s, const IncomingMessage& in, const std::string& device,
                   const telemetry::MessageSeq& seq) {
  if (seq.n == 0) return;
  detail::SequenceAdd& a = s.sequences[{device, seq.stream}];
  a.first_n = std::min(a.first_n, AsInt(seq.n));
  a.last_n = std::max(a.last_n, AsInt(seq.n));
  a.received += 1;
  a.updated_ms = std::max(a.updated_ms, in.received_ms);
}

void AddWindow(detail::WindowSums& a, const telemetry::TelemetryWindow& w) {
  a.windows += 1;
  a.requests += AsInt(w.count);
  a.errors += AsInt(w.errors);
  a.latency_count += AsInt(w.latency.count);
  a.latency_sum_ms += w.latency.sum_ms;
  a.latency_max_ms =
      a.windows == 1 ? w.latency.max_ms : std::max(a.latency_max_ms, w.latency.max_ms);
  a.labeled += AsInt(w.labeled);
  a.correct += AsInt(w.correct);
  for (int i = 0; i < kBuckets; ++i) a.buckets[i] += AsInt(w.latency.buckets[i]);
}

// A stored window adds to its device's totals and its 10-second bucket of the series; written
// with the batch.
template <class Db>
void AddToSums(Writer<Db>& s, const telemetry::TelemetryWindow& w) {
  // The bucket as the statement computes it (SQLite's % truncates toward zero, as C++'s does).
  const std::int64_t bucket = w.ts - (((w.ts % 10000) + 10000) % 10000);
  detail::SeriesAdd& b = s.series[{w.model, w.version, bucket}];
  AddWindow(b.sums, w);
  if (w.golden_accuracy) {
    b.golden_sum += *w.golden_accuracy;
    b.golden_n += 1;
  }
  detail::TotalsAdd& t = s.totals[{w.device, w.model, w.version}];
  AddWindow(t.sums, w);
  s.hours.emplace(w.device, w.ts / collector_sql::kWindowHourMs);
  // The newest window's slot; of two with one ts the later in the batch, as one by one.
  if (t.sums.windows == 1 || w.ts >= t.last_ts) {
    t.last_ts = w.ts;
    t.last_slot = w.slot;
  }
}

// What a batch adds to a totals or series row: parameters 4..10 (count, errors, latency count,
// sum and max, labeled, correct), 13.. (the latency buckets) and the window count after them.
template <class Statement>
Statement& BindSums(Statement& q, const detail::WindowSums& a) {
  q.Bind(4, a.requests)
      .Bind(5, a.errors)
      .Bind(6, a.latency_count)
      .Bind(7, a.latency_sum_ms)
      .Bind(8, a.latency_max_ms)
      .Bind(9, a.labeled)
      .Bind(10, a.correct)
      .Bind(13 + kBuckets, a.windows);
  for (int i = 0; i < kBuckets; ++i) q.Bind(13 + i, a.buckets[i]);
  return q;
}

// The batch's totals, series and sequence sums, one statement per key; clears them.
template <class Db>
Status WriteBatchSums(Writer<Db>& s) {
  auto& t = *s.add_totals;
  for (const auto& [key, a] : s.totals) {
    const auto& [device, model, version] = key;
    BindSums(t.Bind(1, device).Bind(2, model).Bind(3, version), a.sums)
        .Bind(11, a.last_ts)
        .Bind(12, a.last_slot);
    EF_RETURN_IF_ERROR(t.Run());
  }
  auto& b = *s.add_series;
  for (const auto& [key, a] : s.series) {
    const auto& [model, version, bucket] = key;
    BindSums(b.Bind(1, model).Bind(2, version).Bind(3, bucket), a.sums)
        .Bind(11, a.golden_sum)
        .Bind(12, a.golden_n);
    EF_RETURN_IF_ERROR(b.Run());
  }
  auto& h = *s.add_hour;
  for (const auto& [device, hour] : s.hours) {
    EF_RETURN_IF_ERROR(h.Bind(1, device).Bind(2, hour).Run());
  }
  auto& q = *s.count_seq;
  for (const auto& [key, a] : s.sequences) {
    q.Bind(1, key.first)
        .Bind(2, key.second)
        .Bind(3, a.first_n)
        .Bind(4, a.last_n)
        .Bind(5, a.received)
        .Bind(6, a.updated_ms);
    EF_RETURN_IF_ERROR(q.Run());
  }
  s.totals.clear();
  s.series.clear();
  s.sequences.clear();
  s.hours.clear();
  return Ok();
}

// A message's stream and number at `first` and `first + 1`; NULL for an unnumbered one.
template <class Statement>
void BindSeq(Statement& q, int first, const telemetry::MessageSeq& seq) {
  const bool numbered = seq.n != 0;
  q.Bind(first, numbered ? std::optional<std::string_view>(seq.stream) : std::nullopt)
      .Bind(first + 1, numbered ? std::optional<std::int64_t>(AsInt(seq.n)) : std::nullopt);
}

template <class Db>
Result<ApplyOutcome> StoreWindow(Writer<Db>& s, const IncomingMessage& in,
                                 const telemetry::TelemetryWindow& w) {
  auto& q = *s.insert_window;
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
  BindSeq(q, 31 + kBuckets, w.seq);
  EF_RETURN_IF_ERROR(q.Run());
  if (s.conn.Changes() == 0) return ApplyOutcome::kDuplicate;

  AddToSums(s, w);
  CountSequence(s, in, w.device, w.seq);
  return ApplyOutcome::kStored;
}

template <class Db>
Result<ApplyOutcome> StoreEvent(Writer<Db>& s, const IncomingMessage& in,
                                const telemetry::EventMessage& e) {
  auto& q = *s.insert_event;
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
  BindSeq(q, 15, e.seq);
  EF_RETURN_IF_ERROR(q.Run());
  if (s.conn.Changes() == 0) return ApplyOutcome::kDuplicate;
  CountSequence(s, in, e.device, e.seq);
  return ApplyOutcome::kStored;
}

bool IsLastWill(const telemetry::StatusMessage& m) { return !m.online && m.connection == 0; }

template <class Db>
Result<ApplyOutcome> StoreStatus(Writer<Db>& s, const IncomingMessage& in,
                                 const telemetry::StatusMessage& m) {
  std::optional<std::string> stored_id;
  std::optional<std::int64_t> stored_ts;
  {
    auto& q = *s.read_status;
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
    auto& q = *s.put_will;
    q.Bind(1, m.device).Bind(2, in.fleet).Bind(3, in.received_ms).Bind(4, m.id);
    EF_RETURN_IF_ERROR(q.Run());
    return ApplyOutcome::kStored;
  }
  if (stored_ts && m.ts < *stored_ts) return ApplyOutcome::kStale;
  auto& q = *s.put_status;
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
  EF_RETURN_IF_ERROR(s.clear_active->Bind(1, m.device).Run());
  for (const telemetry::ModelStatus& model : m.models) {
    if (!model.active) continue;
    EF_RETURN_IF_ERROR(
        s.add_active->Bind(1, m.device).Bind(2, model.name).Bind(3, model.active->version).Run());
  }
  return ApplyOutcome::kStored;
}

// The newest status by the publisher's clock wins; the same message again (a retained message
// delivered on every resubscription) is a duplicate.
template <class Db>
Result<ApplyOutcome> StoreRollout(Writer<Db>& s, const IncomingMessage& in,
                                  const RolloutStatus& r) {
  {
    auto& q = *s.read_rollout;
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
  auto& q = *s.put_rollout;
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
  if (IsPostgresUrl(path.string())) {
    EF_ASSIGN_OR_RETURN(PgDb db, PgDb::Connect(path.string()));
    auto impl = std::make_unique<Writer<PgDb>>(std::move(db));
    EF_RETURN_IF_ERROR(impl->conn.Migrate(kPgMigrations));
    EF_RETURN_IF_ERROR(PrepareWriter(*impl));
    return CollectorStore(std::move(impl));
  }
  EF_ASSIGN_OR_RETURN(SqliteDb db, SqliteDb::Open(path, SqliteDb::Mode::kReadWriteCreate));
  auto impl = std::make_unique<Writer<SqliteDb>>(std::move(db));
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
  // The writer inserts into indexes keyed by device (its sequence numbers and its series), so each
  // message lands on its device's newest page of each: with SQLite's default 2 MiB page cache
  // almost every one is read back from the file, one pread each (bench/RESULTS.md, run 7).
  // 128 MiB holds those pages for 10,000 devices; it is allocated as it fills.
  EF_RETURN_IF_ERROR(c.Exec("set cache_size", "PRAGMA cache_size=-131072"));
  // A checkpoint copies every page the WAL holds into the database; at the default (every 1,000
  // pages, a few hundred messages here) the same hot pages were copied over and over. 16,384
  // pages (64 MiB of WAL) copies each once per checkpoint.
  EF_RETURN_IF_ERROR(c.Exec("set wal_autocheckpoint", "PRAGMA wal_autocheckpoint=16384"));
  EF_RETURN_IF_ERROR(c.CheckApplicationId(kApplicationId, "collector"));
  EF_RETURN_IF_ERROR(c.Migrate(kMigrations, kApplicationId));
  EF_RETURN_IF_ERROR(PrepareWriter(*impl));
  return CollectorStore(std::move(impl));
}

Result<std::vector<ApplyOutcome>> CollectorStore::Apply(std::span<const IncomingMessage> batch) {
  return impl_->Apply(batch);
}

namespace {

template <class Db>
Result<std::vector<ApplyOutcome>> Writer<Db>::Apply(std::span<const IncomingMessage> batch) {
  std::vector<ApplyOutcome> outcomes;
  outcomes.reserve(batch.size());
  if (batch.empty()) return outcomes;
  Writer<Db>& s = *this;
  s.totals.clear();  // a batch that failed before WriteBatchSums left its sums here
  s.series.clear();
  s.sequences.clear();
  s.hours.clear();
  using Transaction = typename Engine<Db>::Transaction;
  EF_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(s.conn, "store messages"));
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
  EF_RETURN_IF_ERROR(WriteBatchSums(s));
  EF_RETURN_IF_ERROR(txn.Commit());
  return outcomes;
}

}  // namespace

}  // namespace edgefleet::deploy
