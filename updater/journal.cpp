#include "updater/journal.hpp"

#include <sqlite3.h>

#include <array>
#include <chrono>
#include <limits>
#include <utility>

#include "manifests/semver.hpp"

namespace edgefleet::updater {
namespace {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// updater/migrations/NNNN_*.sql, embedded at build time by updater/migrations/embed.cmake.
constexpr Migration kMigrations[] = {
#include "updater/journal_migrations.inc"
};

// A writer waits this long for another connection's lock before failing with kIo. Our own agent
// holds the only writer, so this covers a debugging shell or a collector reading the file.
constexpr int kBusyTimeoutMs = 5000;

using Db = std::unique_ptr<sqlite3, decltype(&sqlite3_close_v2)>;
using Stmt = std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)>;

constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ErrorCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return ErrorCode::kIntegrity;
    case SQLITE_CONSTRAINT:
      return ErrorCode::kInvalidArgument;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
      return ErrorCode::kIo;
    default:
      return ErrorCode::kInternal;
  }
}

constexpr std::array<std::pair<DeploymentState, std::string_view>, 13> kStateNames = {{
    {DeploymentState::kPending, "pending"},
    {DeploymentState::kDownloading, "downloading"},
    {DeploymentState::kVerifying, "verifying"},
    {DeploymentState::kUnpacking, "unpacking"},
    {DeploymentState::kLoading, "loading"},
    {DeploymentState::kParity, "parity"},
    {DeploymentState::kActivating, "activating"},
    {DeploymentState::kWatching, "watching"},
    {DeploymentState::kRollingBack, "rolling_back"},
    {DeploymentState::kCommitted, "committed"},
    {DeploymentState::kRolledBack, "rolled_back"},
    {DeploymentState::kFailed, "failed"},
    {DeploymentState::kAbandoned, "abandoned"},
}};

std::string Quote(std::string_view text) { return "'" + std::string(text) + "'"; }

}  // namespace

std::string_view ToString(DeploymentState state) {
  for (const auto& [value, name] : kStateNames) {
    if (value == state) return name;
  }
  return "unknown";
}

Result<DeploymentState> ParseDeploymentState(std::string_view text) {
  for (const auto& [value, name] : kStateNames) {
    if (name == text) return value;
  }
  return Fail(ErrorCode::kParse, "deployment state: unknown \"" + std::string(text) + "\"");
}

bool IsTerminal(DeploymentState state) {
  switch (state) {
    case DeploymentState::kCommitted:
    case DeploymentState::kRolledBack:
    case DeploymentState::kFailed:
    case DeploymentState::kAbandoned:
      return true;
    default:
      return false;
  }
}

const std::vector<DeploymentState>& AllDeploymentStates() {
  static const std::vector<DeploymentState> all = [] {
    std::vector<DeploymentState> states;
    for (const auto& entry : kStateNames) states.push_back(entry.first);
    return states;
  }();
  return all;
}

namespace detail {
struct JournalImpl {
  std::filesystem::path path;
  Db db{nullptr, &sqlite3_close_v2};

  // "<file>: <operation>: <sqlite message>", taken right after the failing call.
  Unexpected SqlError(std::string_view operation, int rc) const {
    const char* message = db ? sqlite3_errmsg(db.get()) : sqlite3_errstr(rc);
    return Fail(CodeFor(rc), path.string() + ": " + std::string(operation) + ": " + message);
  }
  Unexpected Refuse(ErrorCode code, std::string_view operation, std::string_view why) const {
    return Fail(code, path.string() + ": " + std::string(operation) + ": " + std::string(why));
  }

  // For SQL without parameters that we own (pragmas, transaction control, migrations).
  Status Exec(std::string_view operation, const char* sql) {
    const int rc = sqlite3_exec(db.get(), sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqlError(operation, rc);
    return Ok();
  }
};
}  // namespace detail

namespace {

using Impl = detail::JournalImpl;

// One prepared statement with bound parameters. Bind failures are kept and reported by Step.
class Query final {
 public:
  static Result<Query> Prepare(const Impl& impl, std::string_view operation, std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    const int rc =
        sqlite3_prepare_v2(impl.db.get(), sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    Stmt stmt(raw, &sqlite3_finalize);
    if (rc != SQLITE_OK) return impl.SqlError(operation, rc);
    return Query(impl, operation, std::move(stmt));
  }

  Query& Bind(int index, std::string_view text) {
    // A default string_view has a null data(), which SQLite would bind as NULL, not ''.
    Check(sqlite3_bind_text(stmt_.get(), index, text.data() ? text.data() : "",
                            static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Query& Bind(int index, std::int64_t value) {
    Check(sqlite3_bind_int64(stmt_.get(), index, value));
    return *this;
  }
  Query& BindNull(int index) {
    Check(sqlite3_bind_null(stmt_.get(), index));
    return *this;
  }

  // True when a row is available, false when the statement finished.
  Result<bool> Step() {
    if (bind_rc_ != SQLITE_OK) return impl_->SqlError(operation_ + ": bind", bind_rc_);
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return impl_->SqlError(operation_, rc);
  }
  // For statements that return no rows.
  Status Run() {
    EF_ASSIGN_OR_RETURN(const bool row, Step());
    (void)row;
    return Ok();
  }

  bool IsNull(int column) const { return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL; }
  std::int64_t Int(int column) const { return sqlite3_column_int64(stmt_.get(), column); }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_.get(), column);
    const int size = sqlite3_column_bytes(stmt_.get(), column);
    return text ? std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(size))
                : std::string();
  }

 private:
  Query(const Impl& impl, std::string_view operation, Stmt stmt)
      : impl_(&impl), operation_(operation), stmt_(std::move(stmt)) {}
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  const Impl* impl_;
  std::string operation_;
  Stmt stmt_;
  int bind_rc_ = SQLITE_OK;
};

// BEGIN IMMEDIATE takes the write lock up front, so a transaction that reads then writes never
// fails half-way with SQLITE_BUSY on the lock upgrade. Rolls back unless committed.
class Transaction final {
 public:
  static Result<Transaction> Begin(Impl& impl, std::string_view operation) {
    EF_RETURN_IF_ERROR(impl.Exec(std::string(operation) + ": begin", "BEGIN IMMEDIATE"));
    return Transaction(impl, operation);
  }
  Transaction(Transaction&& other) noexcept
      : impl_(std::exchange(other.impl_, nullptr)), operation_(std::move(other.operation_)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (impl_ != nullptr) sqlite3_exec(impl_->db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }

  // Returns once the commit is durable (synchronous=FULL syncs the WAL before returning).
  Status Commit() {
    EF_RETURN_IF_ERROR(impl_->Exec(operation_ + ": commit", "COMMIT"));
    impl_ = nullptr;
    return Ok();
  }

 private:
  Transaction(Impl& impl, std::string_view operation) : impl_(&impl), operation_(operation) {}
  Impl* impl_;
  std::string operation_;
};

constexpr std::string_view kDeploymentColumns =
    "id, model, version, bundle_url, bundle_size, bundle_sha256, serial, target, "
    "allow_downgrade, state, slot, reason, download_bytes, created_ms, updated_ms";

Result<Deployment> DeploymentFromRow(const Impl& impl, const Query& row,
                                     std::string_view operation) {
  Deployment d;
  d.id = row.Int(0);
  d.request.model = row.Text(1);
  d.request.version = row.Text(2);
  d.request.bundle_url = row.Text(3);
  d.request.bundle_size = static_cast<std::uint64_t>(row.Int(4));
  d.request.bundle_sha256 = row.Text(5);
  d.request.serial = static_cast<std::uint64_t>(row.Int(6));
  d.request.target = row.Text(7);
  d.request.allow_downgrade = row.Int(8) != 0;
  Result<DeploymentState> state = ParseDeploymentState(row.Text(9));
  if (!state) {
    return impl.Refuse(ErrorCode::kIntegrity, operation,
                       "deployment " + std::to_string(d.id) + ": " + state.error().message);
  }
  d.state = *state;
  Result<Slot> slot = ParseSlot(row.Text(10));
  if (!slot) {
    return impl.Refuse(ErrorCode::kIntegrity, operation,
                       "deployment " + std::to_string(d.id) + ": " + slot.error().message);
  }
  d.slot = *slot;
  d.reason = row.Text(11);
  d.download_bytes = static_cast<std::uint64_t>(row.Int(12));
  d.created_ms = row.Int(13);
  d.updated_ms = row.Int(14);
  return d;
}

Result<Deployment> SelectDeployment(const Impl& impl, std::int64_t id, std::string_view operation) {
  EF_ASSIGN_OR_RETURN(Query query, Query::Prepare(impl, operation,
                                                  "SELECT " + std::string(kDeploymentColumns) +
                                                      " FROM deployments WHERE id = ?1"));
  query.Bind(1, id);
  EF_ASSIGN_OR_RETURN(const bool found, query.Step());
  if (!found) {
    return impl.Refuse(ErrorCode::kNotFound, operation, "no deployment " + std::to_string(id));
  }
  return DeploymentFromRow(impl, query, operation);
}

Result<std::optional<InstalledModel>> InstalledFromColumns(const Impl& impl, const Query& row,
                                                           int first, std::string_view operation) {
  if (row.IsNull(first)) return std::optional<InstalledModel>();
  Result<Slot> slot = ParseSlot(row.Text(first));
  if (!slot) return impl.Refuse(ErrorCode::kIntegrity, operation, slot.error().message);
  return std::optional<InstalledModel>(
      InstalledModel{*slot, row.Text(first + 1), row.Text(first + 2)});
}

Result<ModelRecord> SelectModel(const Impl& impl, std::string_view model,
                                std::string_view operation) {
  EF_ASSIGN_OR_RETURN(Query query,
                      Query::Prepare(impl, operation,
                                     "SELECT active_slot, active_version, active_sha256, "
                                     "previous_slot, previous_version, previous_sha256, "
                                     "highest_version FROM models WHERE name = ?1"));
  query.Bind(1, model);
  ModelRecord record;
  record.name = std::string(model);
  EF_ASSIGN_OR_RETURN(const bool found, query.Step());
  if (!found) return record;
  EF_ASSIGN_OR_RETURN(record.active, InstalledFromColumns(impl, query, 0, operation));
  EF_ASSIGN_OR_RETURN(record.previous, InstalledFromColumns(impl, query, 3, operation));
  if (!query.IsNull(6)) record.highest_version = query.Text(6);
  return record;
}

Status UpdateModel(const Impl& impl, const ModelRecord& record, std::string_view operation) {
  EF_ASSIGN_OR_RETURN(Query query,
                      Query::Prepare(impl, operation,
                                     "UPDATE models SET active_slot = ?2, active_version = ?3, "
                                     "active_sha256 = ?4, previous_slot = ?5, "
                                     "previous_version = ?6, previous_sha256 = ?7, "
                                     "highest_version = ?8, updated_ms = ?9 WHERE name = ?1"));
  query.Bind(1, record.name);
  auto bind_installed = [&](int first, const std::optional<InstalledModel>& installed) {
    if (installed) {
      query.Bind(first, ToString(installed->slot))
          .Bind(first + 1, installed->version)
          .Bind(first + 2, installed->sha256);
    } else {
      query.BindNull(first).BindNull(first + 1).BindNull(first + 2);
    }
  };
  bind_installed(2, record.active);
  bind_installed(5, record.previous);
  if (record.highest_version.empty()) {
    query.BindNull(8);
  } else {
    query.Bind(8, record.highest_version);
  }
  query.Bind(9, NowMs());
  return query.Run();
}

Status InsertTransition(const Impl& impl, std::int64_t id, std::optional<DeploymentState> from,
                        DeploymentState to, std::string_view reason, std::int64_t now,
                        std::string_view operation) {
  EF_ASSIGN_OR_RETURN(Query query, Query::Prepare(impl, operation,
                                                  "INSERT INTO transitions (deployment_id, "
                                                  "from_state, to_state, reason, at_ms) "
                                                  "VALUES (?1, ?2, ?3, ?4, ?5)"));
  query.Bind(1, id);
  if (from) {
    query.Bind(2, ToString(*from));
  } else {
    query.BindNull(2);
  }
  query.Bind(3, ToString(to)).Bind(4, reason).Bind(5, now);
  return query.Run();
}

// Moves an in-progress deployment to `to` inside an open transaction; returns it as it was.
Result<Deployment> MoveDeployment(const Impl& impl, std::int64_t id, DeploymentState to,
                                  std::string_view reason, std::string_view operation) {
  EF_ASSIGN_OR_RETURN(Deployment current, SelectDeployment(impl, id, operation));
  if (IsTerminal(current.state)) {
    return impl.Refuse(ErrorCode::kInvalidArgument, operation,
                       "deployment " + std::to_string(id) + " is not in progress (state " +
                           std::string(ToString(current.state)) + ")");
  }
  const std::int64_t now = NowMs();
  EF_ASSIGN_OR_RETURN(Query query,
                      Query::Prepare(impl, operation,
                                     "UPDATE deployments SET state = ?2, in_progress = ?3, "
                                     "reason = ?4, updated_ms = ?5 WHERE id = ?1"));
  query.Bind(1, id)
      .Bind(2, ToString(to))
      .Bind(3, std::int64_t{IsTerminal(to) ? 0 : 1})
      .Bind(4, reason)
      .Bind(5, now);
  EF_RETURN_IF_ERROR(query.Run());
  EF_RETURN_IF_ERROR(InsertTransition(impl, id, current.state, to, reason, now, operation));
  return current;
}

}  // namespace

Journal::Journal(std::unique_ptr<detail::JournalImpl> impl) : impl_(std::move(impl)) {}
Journal::Journal(Journal&& other) noexcept = default;
Journal& Journal::operator=(Journal&& other) noexcept = default;
Journal::~Journal() = default;

const std::filesystem::path& Journal::path() const { return impl_->path; }

int Journal::LatestSchemaVersion() { return kMigrations[std::size(kMigrations) - 1].version; }

Result<Journal> Journal::Open(const std::filesystem::path& path) {
  auto impl = std::make_unique<detail::JournalImpl>();
  impl->path = path;
  sqlite3* raw = nullptr;
  const int open_rc =
      sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  impl->db.reset(raw);  // owned even when open failed: sqlite3 allocates a handle for the message
  if (open_rc != SQLITE_OK) return impl->SqlError("open", open_rc);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);

  // The first statement reads the file header: a file that is not a database fails here.
  {
    EF_ASSIGN_OR_RETURN(Query query, Query::Prepare(*impl, "open: set journal_mode=WAL",
                                                    "PRAGMA journal_mode=WAL"));
    EF_ASSIGN_OR_RETURN(const bool row, query.Step());
    const std::string mode = row ? query.Text(0) : "";
    if (mode != "wal") {
      return impl->Refuse(ErrorCode::kIo, "open",
                          "journal_mode is '" + mode + "', not 'wal' (file system without mmap?)");
    }
  }
  // FULL, not NORMAL: in WAL mode NORMAL keeps the database consistent after a power cut but may
  // lose the last commits, and the contract is that a transition the agent acted on is on disk.
  // The cost is one WAL fsync per commit, and updates commit a handful of times.
  EF_RETURN_IF_ERROR(impl->Exec("open: set synchronous=FULL", "PRAGMA synchronous=FULL"));
  EF_RETURN_IF_ERROR(impl->Exec("open: enable foreign_keys", "PRAGMA foreign_keys=ON"));
  EF_RETURN_IF_ERROR(impl->Exec("open: create schema_version",
                                "CREATE TABLE IF NOT EXISTS schema_version ("
                                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                                "applied_ms INTEGER NOT NULL) STRICT"));

  auto current_version = [&impl]() -> Result<int> {
    EF_ASSIGN_OR_RETURN(Query query, Query::Prepare(*impl, "open: read schema_version",
                                                    "SELECT COALESCE(MAX(version), 0) "
                                                    "FROM schema_version"));
    EF_ASSIGN_OR_RETURN(const bool row, query.Step());
    return row ? static_cast<int>(query.Int(0)) : 0;
  };
  EF_ASSIGN_OR_RETURN(const int found, current_version());
  const int latest = LatestSchemaVersion();
  if (found > latest) {
    return impl->Refuse(ErrorCode::kUnsupported, "open",
                        "schema version " + std::to_string(found) +
                            " is newer than this build supports (" + std::to_string(latest) +
                            "); refusing to touch a journal written by a newer agent");
  }
  for (const Migration& migration : kMigrations) {
    if (migration.version <= found) continue;
    const std::string operation =
        "migrate to schema " + std::to_string(migration.version) + " (" + migration.name + ")";
    EF_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(*impl, operation));
    // Another process may have migrated between our read and our lock.
    EF_ASSIGN_OR_RETURN(const int now_found, current_version());
    if (now_found >= migration.version) continue;
    EF_RETURN_IF_ERROR(impl->Exec(operation, migration.sql));
    EF_ASSIGN_OR_RETURN(Query insert, Query::Prepare(*impl, operation,
                                                     "INSERT INTO schema_version (version, name, "
                                                     "applied_ms) VALUES (?1, ?2, ?3)"));
    insert.Bind(1, std::int64_t{migration.version}).Bind(2, migration.name).Bind(3, NowMs());
    EF_RETURN_IF_ERROR(insert.Run());
    EF_RETURN_IF_ERROR(txn.Commit());
  }
  return Journal(std::move(impl));
}

Result<ModelRecord> Journal::ReadModel(std::string_view model) const {
  return SelectModel(*impl_, model, "read model " + Quote(model));
}

Result<Deployment> Journal::BeginDeployment(const DeploymentRequest& request) {
  const std::string operation = "begin deployment " + Quote(request.model) + " " + request.version;
  if (request.model.empty()) {
    return impl_->Refuse(ErrorCode::kInvalidArgument, operation, "model: empty name");
  }
  Result<manifests::SemVer> version = manifests::SemVer::Parse(request.version);
  if (!version) {
    return impl_->Refuse(ErrorCode::kInvalidArgument, operation,
                         "version: " + version.error().message);
  }
  if (request.bundle_size > static_cast<std::uint64_t>(kMaxInt64) ||
      request.serial > static_cast<std::uint64_t>(kMaxInt64)) {
    return impl_->Refuse(ErrorCode::kInvalidArgument, operation,
                         "bundle size or serial above 2^63-1");
  }

  EF_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(*impl_, operation));
  const std::int64_t now = NowMs();
  {
    EF_ASSIGN_OR_RETURN(Query query,
                        Query::Prepare(*impl_, operation,
                                       "INSERT INTO models (name, updated_ms) "
                                       "VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING"));
    query.Bind(1, request.model).Bind(2, now);
    EF_RETURN_IF_ERROR(query.Run());
  }
  {
    EF_ASSIGN_OR_RETURN(Query query, Query::Prepare(*impl_, operation,
                                                    "SELECT id, state FROM deployments "
                                                    "WHERE model = ?1 AND in_progress = 1"));
    query.Bind(1, request.model);
    EF_ASSIGN_OR_RETURN(const bool busy, query.Step());
    if (busy) {
      return impl_->Refuse(ErrorCode::kInvalidArgument, operation,
                           "a deployment is already in progress (id " +
                               std::to_string(query.Int(0)) + ", state " + query.Text(1) + ")");
    }
  }
  EF_ASSIGN_OR_RETURN(ModelRecord record, SelectModel(*impl_, request.model, operation));
  if (!record.highest_version.empty()) {
    Result<manifests::SemVer> highest = manifests::SemVer::Parse(record.highest_version);
    if (!highest) {
      return impl_->Refuse(ErrorCode::kIntegrity, operation,
                           "highest_version: " + highest.error().message);
    }
    if (*version < *highest && !request.allow_downgrade) {
      return impl_->Refuse(ErrorCode::kInvalidArgument, operation,
                           "version " + request.version + " is below the highest committed " +
                               record.highest_version +
                               " and the desired state does not allow a downgrade");
    }
  }
  Deployment deployment;
  deployment.request = request;
  deployment.state = DeploymentState::kPending;
  deployment.slot = record.active ? OtherSlot(record.active->slot) : Slot::kA;
  deployment.created_ms = now;
  deployment.updated_ms = now;
  if (record.previous && record.previous->slot == deployment.slot) {
    // Unpacking will overwrite that slot: a manual rollback to it would load the candidate.
    record.previous.reset();
    EF_RETURN_IF_ERROR(UpdateModel(*impl_, record, operation));
  }
  {
    EF_ASSIGN_OR_RETURN(
        Query query,
        Query::Prepare(*impl_, operation,
                       "INSERT INTO deployments (model, version, bundle_url, bundle_size, "
                       "bundle_sha256, serial, target, allow_downgrade, state, in_progress, slot, "
                       "reason, download_bytes, created_ms, updated_ms) VALUES "
                       "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, '', 0, ?11, ?11)"));
    query.Bind(1, request.model)
        .Bind(2, request.version)
        .Bind(3, request.bundle_url)
        .Bind(4, static_cast<std::int64_t>(request.bundle_size))
        .Bind(5, request.bundle_sha256)
        .Bind(6, static_cast<std::int64_t>(request.serial))
        .Bind(7, request.target)
        .Bind(8, std::int64_t{request.allow_downgrade ? 1 : 0})
        .Bind(9, ToString(DeploymentState::kPending))
        .Bind(10, ToString(deployment.slot))
        .Bind(11, now);
    EF_RETURN_IF_ERROR(query.Run());
  }
  deployment.id = sqlite3_last_insert_rowid(impl_->db.get());
  EF_RETURN_IF_ERROR(InsertTransition(*impl_, deployment.id, std::nullopt,
                                      DeploymentState::kPending, "", now, operation));
  EF_RETURN_IF_ERROR(txn.Commit());
  return deployment;
}

Status Journal::RecordTransition(std::int64_t id, DeploymentState to, std::string_view reason) {
  const std::string operation =
      "record transition of deployment " + std::to_string(id) + " to " + std::string(ToString(to));
  if (IsTerminal(to)) {
    return impl_->Refuse(ErrorCode::kInvalidArgument, operation,
                         "a terminal state is entered with Finish");
  }
  EF_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(*impl_, operation));
  EF_ASSIGN_OR_RETURN(const Deployment before, MoveDeployment(*impl_, id, to, reason, operation));
  (void)before;
  return txn.Commit();
}

Status Journal::RecordDownloadBytes(std::int64_t id, std::uint64_t bytes) {
  const std::string operation = "record download bytes of deployment " + std::to_string(id);
  if (bytes > static_cast<std::uint64_t>(kMaxInt64)) {
    return impl_->Refuse(ErrorCode::kInvalidArgument, operation, "above 2^63-1");
  }
  EF_ASSIGN_OR_RETURN(Query query,
                      Query::Prepare(*impl_, operation,
                                     "UPDATE deployments SET download_bytes = ?2, updated_ms = ?3 "
                                     "WHERE id = ?1 AND in_progress = 1"));
  query.Bind(1, id).Bind(2, static_cast<std::int64_t>(bytes)).Bind(3, NowMs());
  EF_RETURN_IF_ERROR(query.Run());
  if (sqlite3_changes(impl_->db.get()) != 1) {
    return impl_->Refuse(ErrorCode::kNotFound, operation, "no deployment in progress with that id");
  }
  return Ok();
}

Result<Deployment> Journal::Finish(std::int64_t id, DeploymentState to, std::string_view reason) {
  const std::string operation =
      "finish deployment " + std::to_string(id) + " as " + std::string(ToString(to));
  if (!IsTerminal(to)) {
    return impl_->Refuse(ErrorCode::kInvalidArgument, operation, "not a terminal state");
  }
  EF_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(*impl_, operation));
  EF_ASSIGN_OR_RETURN(Deployment deployment, MoveDeployment(*impl_, id, to, reason, operation));
  if (to == DeploymentState::kCommitted) {
    EF_ASSIGN_OR_RETURN(ModelRecord record,
                        SelectModel(*impl_, deployment.request.model, operation));
    if (record.active && record.active->slot == deployment.slot) {
      return impl_->Refuse(
          ErrorCode::kInternal, operation,
          "candidate slot " + std::string(ToString(deployment.slot)) + " is the active slot");
    }
    Result<manifests::SemVer> version = manifests::SemVer::Parse(deployment.request.version);
    if (!version) {
      return impl_->Refuse(ErrorCode::kIntegrity, operation, "version: " + version.error().message);
    }
    bool raise_highest = record.highest_version.empty();
    if (!raise_highest) {
      Result<manifests::SemVer> highest = manifests::SemVer::Parse(record.highest_version);
      if (!highest) {
        return impl_->Refuse(ErrorCode::kIntegrity, operation,
                             "highest_version: " + highest.error().message);
      }
      raise_highest = *version > *highest;
    }
    record.previous = record.active;
    record.active = InstalledModel{deployment.slot, deployment.request.version,
                                   deployment.request.bundle_sha256};
    if (raise_highest) record.highest_version = deployment.request.version;
    EF_RETURN_IF_ERROR(UpdateModel(*impl_, record, operation));
  }
  EF_RETURN_IF_ERROR(txn.Commit());
  deployment.state = to;
  deployment.reason = std::string(reason);
  return deployment;
}

Result<ModelRecord> Journal::RollBackToPrevious(std::string_view model) {
  const std::string operation = "roll back " + Quote(model);
  EF_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(*impl_, operation));
  {
    EF_ASSIGN_OR_RETURN(Query query, Query::Prepare(*impl_, operation,
                                                    "SELECT id FROM deployments "
                                                    "WHERE model = ?1 AND in_progress = 1"));
    query.Bind(1, model);
    EF_ASSIGN_OR_RETURN(const bool busy, query.Step());
    if (busy) {
      return impl_->Refuse(ErrorCode::kInvalidArgument, operation,
                           "deployment " + std::to_string(query.Int(0)) + " is in progress");
    }
  }
  EF_ASSIGN_OR_RETURN(ModelRecord record, SelectModel(*impl_, model, operation));
  if (!record.previous || !record.active) {
    return impl_->Refuse(ErrorCode::kInvalidArgument, operation,
                         "no previous model to roll back to");
  }
  std::swap(record.active, record.previous);
  EF_RETURN_IF_ERROR(UpdateModel(*impl_, record, operation));
  EF_RETURN_IF_ERROR(txn.Commit());
  return record;
}

Result<Deployment> Journal::ReadDeployment(std::int64_t id) const {
  return SelectDeployment(*impl_, id, "read deployment " + std::to_string(id));
}

Result<std::vector<Deployment>> Journal::InProgress() const {
  const std::string operation = "read deployments in progress";
  EF_ASSIGN_OR_RETURN(Query query,
                      Query::Prepare(*impl_, operation,
                                     "SELECT " + std::string(kDeploymentColumns) +
                                         " FROM deployments WHERE in_progress = 1 ORDER BY id"));
  std::vector<Deployment> deployments;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, query.Step());
    if (!row) break;
    EF_ASSIGN_OR_RETURN(Deployment deployment, DeploymentFromRow(*impl_, query, operation));
    deployments.push_back(std::move(deployment));
  }
  return deployments;
}

Result<std::vector<Transition>> Journal::Transitions(std::int64_t id) const {
  const std::string operation = "read transitions of deployment " + std::to_string(id);
  EF_ASSIGN_OR_RETURN(Query query, Query::Prepare(*impl_, operation,
                                                  "SELECT seq, from_state, to_state, reason, "
                                                  "at_ms FROM transitions "
                                                  "WHERE deployment_id = ?1 ORDER BY seq"));
  query.Bind(1, id);
  std::vector<Transition> transitions;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, query.Step());
    if (!row) break;
    Transition transition;
    transition.seq = query.Int(0);
    transition.deployment_id = id;
    if (!query.IsNull(1)) {
      Result<DeploymentState> from = ParseDeploymentState(query.Text(1));
      if (!from) return impl_->Refuse(ErrorCode::kIntegrity, operation, from.error().message);
      transition.from = *from;
    }
    Result<DeploymentState> to = ParseDeploymentState(query.Text(2));
    if (!to) return impl_->Refuse(ErrorCode::kIntegrity, operation, to.error().message);
    transition.to = *to;
    transition.reason = query.Text(3);
    transition.at_ms = query.Int(4);
    transitions.push_back(std::move(transition));
  }
  return transitions;
}

Result<std::optional<std::uint64_t>> Journal::LastSerial(std::string_view target) const {
  const std::string operation = "read last serial of " + Quote(target);
  EF_ASSIGN_OR_RETURN(Query query, Query::Prepare(*impl_, operation,
                                                  "SELECT serial FROM serials WHERE target = ?1"));
  query.Bind(1, target);
  EF_ASSIGN_OR_RETURN(const bool row, query.Step());
  if (!row) return std::optional<std::uint64_t>();
  return std::optional<std::uint64_t>(static_cast<std::uint64_t>(query.Int(0)));
}

Result<Journal::SerialVerdict> Journal::AcceptSerial(std::string_view target,
                                                     std::uint64_t serial,
                                                     std::string_view digest) {
  const std::string operation = "accept serial " + std::to_string(serial) + " for " + Quote(target);
  if (serial > static_cast<std::uint64_t>(kMaxInt64)) {
    return impl_->Refuse(ErrorCode::kInvalidArgument, operation, "serial above 2^63-1");
  }
  // One statement, so the compare and the write cannot be separated by another writer.
  EF_ASSIGN_OR_RETURN(Query query,
                      Query::Prepare(*impl_, operation,
                                     "INSERT INTO serials (target, serial, digest) "
                                     "VALUES (?1, ?2, ?3) ON CONFLICT(target) DO UPDATE SET "
                                     "serial = excluded.serial, digest = excluded.digest "
                                     "WHERE excluded.serial > serials.serial"));
  query.Bind(1, target).Bind(2, static_cast<std::int64_t>(serial)).Bind(3, digest);
  EF_RETURN_IF_ERROR(query.Run());
  if (sqlite3_changes(impl_->db.get()) == 1) return SerialVerdict::kAccepted;
  EF_ASSIGN_OR_RETURN(Query last, Query::Prepare(*impl_, operation,
                                                 "SELECT serial, digest FROM serials "
                                                 "WHERE target = ?1"));
  last.Bind(1, target);
  EF_ASSIGN_OR_RETURN(const bool row, last.Step());
  if (row && static_cast<std::uint64_t>(last.Int(0)) == serial && last.Text(1) == digest) {
    return SerialVerdict::kSameDocument;
  }
  return SerialVerdict::kReplay;
}

}  // namespace edgefleet::updater
