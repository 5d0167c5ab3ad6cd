#include "deploy/rollout/rollout_store.hpp"

#include <signal.h>

#include <algorithm>
#include <cerrno>

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;
using manifests::SqliteDb;
using manifests::SqlMigration;
using manifests::SqlStatement;
using manifests::SqlTransaction;
using nlohmann::json;

// "EFRO" in the file header, so a collector or journal file given as --db is named, not used.
constexpr int kApplicationId = 0x4546524f;

constexpr SqlMigration kMigrations[] = {{1, "rollouts", R"sql(
-- One row per rollout. `spec` is what `rollout start` was asked (JSON, never changes); the other
-- columns are its progress. Times *_ms are Unix milliseconds of the operator's clock.
CREATE TABLE rollouts (
  id                  TEXT PRIMARY KEY NOT NULL,
  created_seq         INTEGER NOT NULL,        -- insertion order (newest first in `list`)
  spec                TEXT NOT NULL,
  state               TEXT NOT NULL,
  reason              TEXT NOT NULL,
  wave                INTEGER NOT NULL,
  started_ms          INTEGER NOT NULL,
  wave_started_ms     INTEGER NOT NULL,
  finished_ms         INTEGER NOT NULL,
  updated_ms          INTEGER NOT NULL,
  group_serial        INTEGER NOT NULL,
  control             TEXT NOT NULL,           -- requested by another process; '' none
  driver_pid          INTEGER NOT NULL,
  driver_heartbeat_ms INTEGER NOT NULL
) STRICT;
-- One row per device of a rollout's group, frozen when the rollout starts.
CREATE TABLE rollout_devices (
  rollout        TEXT NOT NULL REFERENCES rollouts (id),
  device         TEXT NOT NULL,
  wave           INTEGER NOT NULL,
  state          TEXT NOT NULL,
  outcome        TEXT NOT NULL,               -- '', 'succeeded', 'failed'
  detail         TEXT NOT NULL,
  serial         INTEGER NOT NULL,
  doc            TEXT NOT NULL,
  prev_models    TEXT NOT NULL,               -- JSON array, or 'null'
  prev_serial    INTEGER NOT NULL,
  prev_version   TEXT NOT NULL,
  restore_serial INTEGER NOT NULL,
  restore_doc    TEXT NOT NULL,
  updated_ms     INTEGER NOT NULL,
  PRIMARY KEY (rollout, device)
) STRICT;
-- The last serial this database signed per fleet and target ("device/<d>", "group/<g>").
CREATE TABLE serials (
  fleet  TEXT NOT NULL,
  target TEXT NOT NULL,
  serial INTEGER NOT NULL,
  PRIMARY KEY (fleet, target)
) STRICT;
)sql"}};

Unexpected NoSuchRollout(const SqliteDb& db, const std::string& id) {
  return Fail(ErrorCode::kNotFound, db.path().string() + ": no rollout with id '" + id + "'");
}

std::int64_t AsInt(std::uint64_t v) {
  return static_cast<std::int64_t>(std::min<std::uint64_t>(v, INT64_MAX));
}

json SpecJson(const RolloutRecord& r) {
  return {{"fleet", r.fleet},
          {"group", r.group},
          {"model", r.model},
          {"version", r.version},
          {"bundle_url", r.bundle_url},
          {"desired_model", r.desired_model},
          {"waves", r.waves},
          {"success_threshold", r.thresholds.success},
          {"error_threshold", r.thresholds.error},
          {"wave_timeout_s", r.wave_timeout_s},
          {"expires_s", r.expires_s},
          {"success_on", r.success_on},
          {"connection", r.connection.ToJson()},
          {"group_doc", r.group_doc}};
}

Status SpecFromJson(const std::string& text, const std::string& where, RolloutRecord& r) {
  try {
    const json j = json::parse(text);
    r.fleet = j.at("fleet").get<std::string>();
    r.group = j.at("group").get<std::string>();
    r.model = j.at("model").get<std::string>();
    r.version = j.at("version").get<std::string>();
    r.bundle_url = j.at("bundle_url").get<std::string>();
    r.desired_model = j.at("desired_model");
    r.waves = j.at("waves").get<std::vector<double>>();
    r.thresholds.success = j.at("success_threshold").get<double>();
    r.thresholds.error = j.at("error_threshold").get<double>();
    r.wave_timeout_s = j.at("wave_timeout_s").get<std::int64_t>();
    r.expires_s = j.at("expires_s").get<std::int64_t>();
    r.success_on = j.at("success_on").get<std::string>();
    EF_ASSIGN_OR_RETURN(r.connection, RolloutConnection::FromJson(j.at("connection")));
    r.group_doc = j.at("group_doc").get<std::string>();
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kIntegrity, where + ": spec: " + e.what());
  }
  return Ok();
}

constexpr const char* kRolloutColumns =
    "id, spec, state, reason, wave, started_ms, wave_started_ms, finished_ms, updated_ms, "
    "group_serial, control, driver_pid, driver_heartbeat_ms";

Result<RolloutRecord> ReadRollout(const SqliteDb& db, SqlStatement& q) {
  RolloutRecord r;
  r.id = q.ColumnText(0);
  const std::string where = db.path().string() + ": rollout " + r.id;
  EF_RETURN_IF_ERROR(SpecFromJson(q.ColumnText(1), where, r));
  auto state = ParseRolloutState(q.ColumnText(2));
  if (!state) return Fail(ErrorCode::kIntegrity, where + ": " + state.error().message);
  r.state = *state;
  r.reason = q.ColumnText(3);
  r.wave = static_cast<std::size_t>(q.ColumnInt(4));
  r.started_ms = q.ColumnInt(5);
  r.wave_started_ms = q.ColumnInt(6);
  r.finished_ms = q.ColumnInt(7);
  r.updated_ms = q.ColumnInt(8);
  r.group_serial = static_cast<std::uint64_t>(q.ColumnInt(9));
  r.control = q.ColumnText(10);
  r.driver_pid = q.ColumnInt(11);
  r.driver_heartbeat_ms = q.ColumnInt(12);
  return r;
}

Status WriteDevice(const SqliteDb& db, const std::string& rollout, const RolloutDevice& d,
                   bool insert) {
  const char* sql =
      insert ? "INSERT INTO rollout_devices (rollout, device, wave, state, detail, serial, doc, "
               "prev_models, prev_serial, prev_version, restore_serial, restore_doc, updated_ms, "
               "outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
             : "UPDATE rollout_devices SET wave = ?3, state = ?4, detail = ?5, serial = ?6, "
               "doc = ?7, prev_models = ?8, prev_serial = ?9, prev_version = ?10, "
               "restore_serial = ?11, restore_doc = ?12, updated_ms = ?13, outcome = ?14 "
               "WHERE rollout = ?1 AND device = ?2";
  EF_ASSIGN_OR_RETURN(SqlStatement s, SqlStatement::Prepare(db, "save rollout device", sql));
  s.Bind(1, rollout)
      .Bind(2, d.device)
      .Bind(3, d.wave)
      .Bind(4, ToString(d.state))
      .Bind(5, d.detail)
      .Bind(6, AsInt(d.serial))
      .Bind(7, d.doc)
      .Bind(8, d.prev_models.dump())
      .Bind(9, AsInt(d.prev_serial))
      .Bind(10, d.prev_version)
      .Bind(11, AsInt(d.restore_serial))
      .Bind(12, d.restore_doc)
      .Bind(13, d.updated_ms)
      .Bind(14, d.outcome);
  return s.Run();
}

}  // namespace

json RolloutConnection::ToJson() const {
  return {{"broker", broker},          {"ca_file", ca_file},   {"cert_file", cert_file},
          {"key_file", key_file},      {"username", username}, {"password_file", password_file},
          {"deploy_keys", deploy_keys}};
}

Result<RolloutConnection> RolloutConnection::FromJson(const json& j) {
  RolloutConnection c;
  try {
    c.broker = j.at("broker").get<std::string>();
    c.ca_file = j.at("ca_file").get<std::string>();
    c.cert_file = j.at("cert_file").get<std::string>();
    c.key_file = j.at("key_file").get<std::string>();
    c.username = j.at("username").get<std::string>();
    c.password_file = j.at("password_file").get<std::string>();
    c.deploy_keys = j.at("deploy_keys").get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kParse, std::string("rollout connection: ") + e.what());
  }
  return c;
}

Result<RolloutStore> RolloutStore::Open(const fs::path& path, bool read_only) {
  std::error_code ec;
  if (read_only && !fs::is_regular_file(path, ec)) {
    return Fail(ErrorCode::kNotFound, path.string() +
                                          ": no such rollout database (`edgefleet "
                                          "rollout start --db " +
                                          path.string() + "` creates it)");
  }
  EF_ASSIGN_OR_RETURN(SqliteDb db,
                      SqliteDb::Open(path, read_only ? SqliteDb::Mode::kReadOnly
                                                     : SqliteDb::Mode::kReadWriteCreate));
  EF_ASSIGN_OR_RETURN(const bool empty, db.CheckApplicationId(kApplicationId, "rollout"));
  if (read_only && empty) {
    return Fail(ErrorCode::kNotFound, path.string() + ": an empty file, no rollouts yet");
  }
  if (!read_only) {
    EF_RETURN_IF_ERROR(db.Exec("set journal_mode", "PRAGMA journal_mode=WAL"));
    EF_RETURN_IF_ERROR(db.Migrate(kMigrations, kApplicationId));
  }
  return RolloutStore(std::move(db));
}

Status RolloutStore::Create(const RolloutRecord& r, std::span<const RolloutDevice> devices) {
  EF_ASSIGN_OR_RETURN(SqlTransaction tx, SqlTransaction::Begin(db_, "create rollout"));
  {
    EF_ASSIGN_OR_RETURN(SqlStatement q, SqlStatement::Prepare(db_, "check rollout id",
                                                              "SELECT COUNT(*) FROM rollouts "
                                                              "WHERE id = ?1"));
    q.Bind(1, r.id);
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (row && q.ColumnInt(0) > 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  db_.path().string() + ": a rollout with id '" + r.id + "' exists already");
    }
  }
  EF_ASSIGN_OR_RETURN(
      SqlStatement s,
      SqlStatement::Prepare(db_, "create rollout",
                            std::string("INSERT INTO rollouts (created_seq, ") + kRolloutColumns +
                                ") VALUES ((SELECT COALESCE(MAX(created_seq), 0) "
                                "+ 1 FROM rollouts), ?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                                "?8, ?9, ?10, ?11, ?12, ?13)"));
  s.Bind(1, r.id)
      .Bind(2, SpecJson(r).dump())
      .Bind(3, ToString(r.state))
      .Bind(4, r.reason)
      .Bind(5, r.wave)
      .Bind(6, r.started_ms)
      .Bind(7, r.wave_started_ms)
      .Bind(8, r.finished_ms)
      .Bind(9, r.updated_ms)
      .Bind(10, AsInt(r.group_serial))
      .Bind(11, r.control)
      .Bind(12, r.driver_pid)
      .Bind(13, r.driver_heartbeat_ms);
  EF_RETURN_IF_ERROR(s.Run());
  for (const RolloutDevice& d : devices) EF_RETURN_IF_ERROR(WriteDevice(db_, r.id, d, true));
  return tx.Commit();
}

Result<RolloutRecord> RolloutStore::Get(const std::string& id) const {
  const std::string sql = std::string("SELECT ") + kRolloutColumns + " FROM rollouts " +
                          (id.empty() ? "ORDER BY created_seq DESC LIMIT 1" : "WHERE id = ?1");
  EF_ASSIGN_OR_RETURN(SqlStatement q, SqlStatement::Prepare(db_, "read rollout", sql));
  if (!id.empty()) q.Bind(1, id);
  EF_ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) {
    if (id.empty()) return Fail(ErrorCode::kNotFound, db_.path().string() + ": no rollouts yet");
    return NoSuchRollout(db_, id);
  }
  return ReadRollout(db_, q);
}

Result<std::vector<RolloutRecord>> RolloutStore::List() const {
  EF_ASSIGN_OR_RETURN(SqlStatement q,
                      SqlStatement::Prepare(db_, "list rollouts",
                                            std::string("SELECT ") + kRolloutColumns +
                                                " FROM rollouts ORDER BY created_seq DESC"));
  std::vector<RolloutRecord> out;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    EF_ASSIGN_OR_RETURN(auto r, ReadRollout(db_, q));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<RolloutDevice>> RolloutStore::Devices(const std::string& id) const {
  EF_ASSIGN_OR_RETURN(
      SqlStatement q,
      SqlStatement::Prepare(db_, "read rollout devices",
                            "SELECT device, wave, state, detail, serial, doc, prev_models, "
                            "prev_serial, prev_version, restore_serial, restore_doc, updated_ms, "
                            "outcome FROM rollout_devices WHERE rollout = ?1 ORDER BY device"));
  q.Bind(1, id);
  std::vector<RolloutDevice> out;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    RolloutDevice d;
    d.device = q.ColumnText(0);
    d.wave = static_cast<std::size_t>(q.ColumnInt(1));
    auto state = ParseDeviceState(q.ColumnText(2));
    if (!state) {
      return Fail(ErrorCode::kIntegrity, db_.path().string() + ": rollout " + id + " device " +
                                             d.device + ": " + state.error().message);
    }
    d.state = *state;
    d.detail = q.ColumnText(3);
    d.serial = static_cast<std::uint64_t>(q.ColumnInt(4));
    d.doc = q.ColumnText(5);
    d.prev_models = json::parse(q.ColumnText(6), nullptr, false);
    if (d.prev_models.is_discarded()) {
      return Fail(ErrorCode::kIntegrity, db_.path().string() + ": rollout " + id + " device " +
                                             d.device + ": prev_models is not JSON");
    }
    d.prev_serial = static_cast<std::uint64_t>(q.ColumnInt(7));
    d.prev_version = q.ColumnText(8);
    d.restore_serial = static_cast<std::uint64_t>(q.ColumnInt(9));
    d.restore_doc = q.ColumnText(10);
    d.updated_ms = q.ColumnInt(11);
    d.outcome = q.ColumnText(12);
    out.push_back(std::move(d));
  }
  return out;
}

Status RolloutStore::Save(const RolloutRecord& r, std::span<const RolloutDevice> devices) {
  EF_ASSIGN_OR_RETURN(SqlTransaction tx, SqlTransaction::Begin(db_, "save rollout"));
  EF_ASSIGN_OR_RETURN(
      SqlStatement s,
      SqlStatement::Prepare(db_, "save rollout",
                            "UPDATE rollouts SET state = ?2, reason = ?3, wave = ?4, "
                            "wave_started_ms = ?5, finished_ms = ?6, updated_ms = ?7, "
                            "group_serial = ?8 WHERE id = ?1"));
  s.Bind(1, r.id)
      .Bind(2, ToString(r.state))
      .Bind(3, r.reason)
      .Bind(4, r.wave)
      .Bind(5, r.wave_started_ms)
      .Bind(6, r.finished_ms)
      .Bind(7, r.updated_ms)
      .Bind(8, AsInt(r.group_serial));
  EF_RETURN_IF_ERROR(s.Run());
  for (const RolloutDevice& d : devices) EF_RETURN_IF_ERROR(WriteDevice(db_, r.id, d, false));
  return tx.Commit();
}

Status RolloutStore::RequestControl(const std::string& id, const std::string& control) {
  EF_ASSIGN_OR_RETURN(SqlStatement s,
                      SqlStatement::Prepare(db_, "request " + control,
                                            "UPDATE rollouts SET control = ?2 WHERE id = ?1"));
  s.Bind(1, id).Bind(2, control);
  EF_RETURN_IF_ERROR(s.Run());
  if (db_.Changes() == 0) {
    return NoSuchRollout(db_, id);
  }
  return Ok();
}

Result<std::string> RolloutStore::TakeControl(const std::string& id) {
  EF_ASSIGN_OR_RETURN(SqlTransaction tx, SqlTransaction::Begin(db_, "take control request"));
  EF_ASSIGN_OR_RETURN(SqlStatement q,
                      SqlStatement::Prepare(db_, "read control request",
                                            "SELECT control FROM rollouts WHERE id = ?1"));
  q.Bind(1, id);
  EF_ASSIGN_OR_RETURN(const bool row, q.Step());
  const std::string control = row ? q.ColumnText(0) : "";
  q.Reset();
  if (!control.empty()) {
    EF_ASSIGN_OR_RETURN(SqlStatement s,
                        SqlStatement::Prepare(db_, "clear control request",
                                              "UPDATE rollouts SET control = '' WHERE id = ?1"));
    s.Bind(1, id);
    EF_RETURN_IF_ERROR(s.Run());
  }
  EF_RETURN_IF_ERROR(tx.Commit());
  return control;
}

Status RolloutStore::AcquireLease(const std::string& id, std::int64_t pid, std::int64_t now_ms,
                                  std::int64_t stale_ms) {
  EF_ASSIGN_OR_RETURN(SqlTransaction tx, SqlTransaction::Begin(db_, "take the driver lease"));
  EF_ASSIGN_OR_RETURN(SqlStatement q, SqlStatement::Prepare(db_, "read the driver lease",
                                                            "SELECT driver_pid, "
                                                            "driver_heartbeat_ms FROM rollouts "
                                                            "WHERE id = ?1"));
  q.Bind(1, id);
  EF_ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) {
    return NoSuchRollout(db_, id);
  }
  const std::int64_t holder = q.ColumnInt(0);
  const std::int64_t beat = q.ColumnInt(1);
  q.Reset();
  if (holder != 0 && holder != pid && now_ms - beat < stale_ms && ProcessAlive(holder)) {
    return Fail(ErrorCode::kIo, db_.path().string() + ": rollout " + id +
                                    " is being driven by process " + std::to_string(holder) +
                                    " (use pause/resume/abort; they reach it through this file)");
  }
  EF_ASSIGN_OR_RETURN(SqlStatement s, SqlStatement::Prepare(db_, "take the driver lease",
                                                            "UPDATE rollouts SET driver_pid = ?2, "
                                                            "driver_heartbeat_ms = ?3 WHERE id = "
                                                            "?1"));
  s.Bind(1, id).Bind(2, pid).Bind(3, now_ms);
  EF_RETURN_IF_ERROR(s.Run());
  return tx.Commit();
}

Status RolloutStore::Heartbeat(const std::string& id, std::int64_t pid, std::int64_t now_ms) {
  EF_ASSIGN_OR_RETURN(SqlStatement s, SqlStatement::Prepare(db_, "driver heartbeat",
                                                            "UPDATE rollouts SET "
                                                            "driver_heartbeat_ms = ?3 WHERE id = "
                                                            "?1 AND driver_pid = ?2"));
  s.Bind(1, id).Bind(2, pid).Bind(3, now_ms);
  return s.Run();
}

Status RolloutStore::ReleaseLease(const std::string& id, std::int64_t pid) {
  EF_ASSIGN_OR_RETURN(SqlStatement s, SqlStatement::Prepare(db_, "release the driver lease",
                                                            "UPDATE rollouts SET driver_pid = 0, "
                                                            "driver_heartbeat_ms = 0 WHERE id = "
                                                            "?1 AND driver_pid = ?2"));
  s.Bind(1, id).Bind(2, pid);
  return s.Run();
}

Result<std::uint64_t> RolloutStore::NextSerial(const std::string& fleet, const std::string& target,
                                               std::uint64_t seen, std::int64_t now_ms) {
  const SerialRequest request{target, seen};
  EF_ASSIGN_OR_RETURN(std::vector<std::uint64_t> serials,
                      NextSerials(fleet, std::span<const SerialRequest>(&request, 1), now_ms));
  return serials.front();
}

Result<std::vector<std::uint64_t>> RolloutStore::NextSerials(
    const std::string& fleet, std::span<const SerialRequest> requests, std::int64_t now_ms) {
  EF_ASSIGN_OR_RETURN(SqlTransaction tx, SqlTransaction::Begin(db_, "next serials"));
  EF_ASSIGN_OR_RETURN(SqlStatement q, SqlStatement::Prepare(db_, "read serial",
                                                            "SELECT serial FROM serials WHERE "
                                                            "fleet = ?1 AND target = ?2"));
  EF_ASSIGN_OR_RETURN(SqlStatement s,
                      SqlStatement::Prepare(db_, "record serial",
                                            "INSERT INTO serials (fleet, target, serial) VALUES "
                                            "(?1, ?2, ?3) ON CONFLICT (fleet, target) DO UPDATE "
                                            "SET serial = excluded.serial"));
  std::vector<std::uint64_t> serials;
  serials.reserve(requests.size());
  for (const SerialRequest& r : requests) {
    q.Bind(1, fleet).Bind(2, r.target);
    EF_ASSIGN_OR_RETURN(const bool row, q.Step());
    const std::uint64_t used = row ? static_cast<std::uint64_t>(q.ColumnInt(0)) : 0;
    q.Reset();
    const std::uint64_t next = std::max(
        {r.seen + 1, used + 1, static_cast<std::uint64_t>(std::max<std::int64_t>(now_ms, 0))});
    if (r.seen >= static_cast<std::uint64_t>(INT64_MAX) ||
        next > static_cast<std::uint64_t>(INT64_MAX)) {
      return Fail(ErrorCode::kLimit, r.target + ": serial " + std::to_string(r.seen) +
                                         " leaves no room for a higher one");
    }
    s.Bind(1, fleet).Bind(2, r.target).Bind(3, static_cast<std::int64_t>(next));
    EF_RETURN_IF_ERROR(s.Run());
    s.Reset();
    serials.push_back(next);
  }
  EF_RETURN_IF_ERROR(tx.Commit());
  return serials;
}

bool ProcessAlive(std::int64_t pid) {
  if (pid <= 0) return false;
  return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace edgefleet::deploy
