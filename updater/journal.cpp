#include "updater/journal.hpp"

#include <array>
#include <chrono>
#include <limits>
#include <utility>

#include "manifests/log_value.hpp"
#include "manifests/semver.hpp"
#include "manifests/sqlite_db.hpp"
#include "manifests/time.hpp"

namespace edgefleet::updater {
namespace {

using manifests::SqlStatement;
using manifests::SqlTransaction;

// updater/migrations/NNNN_*.sql, embedded at build time by updater/migrations/embed.cmake.
constexpr manifests::SqlMigration kMigrations[] = {
#include "updater/journal_migrations.inc"
};

// A writer waits this long for another connection's lock before failing with kIo. Our own agent
// holds the only writer, so this covers a debugging shell or a collector reading the file.
constexpr int kBusyTimeoutMs = 5000;

constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();

using manifests::NowMs;

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

using manifests::QuoteName;

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
  explicit JournalImpl(manifests::SqliteDb database) : db(std::move(database)) {}
  manifests::SqliteDb db;
};
}  // namespace detail

namespace {

using Impl = manifests::SqliteDb;

constexpr std::string_view kDeploymentColumns =
    "id, model, version, bundle_url, bundle_size, bundle_sha256, serial, target, "
    "allow_downgrade, state, slot, reason, download_bytes, created_ms, updated_ms";

Result<Deployment> DeploymentFromRow(const Impl& impl, const SqlStatement& row,
                                     std::string_view operation) {
  Deployment d;
  d.id = row.ColumnInt(0);
  d.request.model = row.ColumnText(1);
  d.request.version = row.ColumnText(2);
  d.request.bundle_url = row.ColumnText(3);
  d.request.bundle_size = static_cast<std::uint64_t>(row.ColumnInt(4));
  d.request.bundle_sha256 = row.ColumnText(5);
  d.request.serial = static_cast<std::uint64_t>(row.ColumnInt(6));
  d.request.target = row.ColumnText(7);
  d.request.allow_downgrade = row.ColumnInt(8) != 0;
  Result<DeploymentState> state = ParseDeploymentState(row.ColumnText(9));
  if (!state) {
    return impl.Refuse(ErrorCode::kIntegrity, operation,
                       "deployment " + std::to_string(d.id) + ": " + state.error().message);
  }
  d.state = *state;
  Result<Slot> slot = ParseSlot(row.ColumnText(10));
  if (!slot) {
    return impl.Refuse(ErrorCode::kIntegrity, operation,
                       "deployment " + std::to_string(d.id) + ": " + slot.error().message);
  }
  d.slot = *slot;
  d.reason = row.ColumnText(11);
  d.download_bytes = static_cast<std::uint64_t>(row.ColumnInt(12));
  d.created_ms = row.ColumnInt(13);
  d.updated_ms = row.ColumnInt(14);
  return d;
}

Result<Deployment> SelectDeployment(const Impl& impl, std::int64_t id, std::string_view operation) {
  EF_ASSIGN_OR_RETURN(SqlStatement query,
                      SqlStatement::Prepare(impl, operation,
                                            "SELECT " + std::string(kDeploymentColumns) +
                                                " FROM deployments WHERE id = ?1"));
  query.Bind(1, id);
  EF_ASSIGN_OR_RETURN(const bool found, query.Step());
  if (!found) {
    return impl.Refuse(ErrorCode::kNotFound, operation, "no deployment " + std::to_string(id));
  }
  return DeploymentFromRow(impl, query, operation);
}

Result<std::optional<InstalledModel>> InstalledFromColumns(const Impl& impl,
                                                           const SqlStatement& row, int first,
                                                           std::string_view operation) {
  if (row.IsNull(first)) return std::optional<InstalledModel>();
  Result<Slot> slot = ParseSlot(row.ColumnText(first));
  if (!slot) return impl.Refuse(ErrorCode::kIntegrity, operation, slot.error().message);
  return std::optional<InstalledModel>(
      InstalledModel{*slot, row.ColumnText(first + 1), row.ColumnText(first + 2)});
}

Result<ModelRecord> SelectModel(const Impl& impl, std::string_view model,
                                std::string_view operation) {
  EF_ASSIGN_OR_RETURN(SqlStatement query,
                      SqlStatement::Prepare(impl, operation,
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
  if (!query.IsNull(6)) record.highest_version = query.ColumnText(6);
  return record;
}

Status UpdateModel(const Impl& impl, const ModelRecord& record, std::string_view operation) {
  EF_ASSIGN_OR_RETURN(
      SqlStatement query,
      SqlStatement::Prepare(impl, operation,
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
      query.Null(first).Null(first + 1).Null(first + 2);
    }
  };
  bind_installed(2, record.active);
  bind_installed(5, record.previous);
  if (record.highest_version.empty()) {
    query.Null(8);
  } else {
    query.Bind(8, record.highest_version);
  }
  query.Bind(9, NowMs());
  return query.Run();
}

Status InsertTransition(const Impl& impl, std::int64_t id, std::optional<DeploymentState> from,
                        DeploymentState to, std::string_view reason, std::int64_t now,
                        std::string_view operation) {
  EF_ASSIGN_OR_RETURN(SqlStatement query,
                      SqlStatement::Prepare(impl, operation,
                                            "INSERT INTO transitions (deployment_id, "
                                            "from_state, to_state, reason, at_ms) "
                                            "VALUES (?1, ?2, ?3, ?4, ?5)"));
  query.Bind(1, id);
  if (from) {
    query.Bind(2, ToString(*from));
  } else {
    query.Null(2);
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
  EF_ASSIGN_OR_RETURN(SqlStatement query,
                      SqlStatement::Prepare(impl, operation,
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

const std::filesystem::path& Journal::path() const { return impl_->db.path(); }

int Journal::LatestSchemaVersion() { return kMigrations[std::size(kMigrations) - 1].version; }

Result<Journal> Journal::Open(const std::filesystem::path& path) {
  EF_ASSIGN_OR_RETURN(
      manifests::SqliteDb db,
      manifests::SqliteDb::Open(path, manifests::SqliteDb::Mode::kReadWriteCreate, kBusyTimeoutMs));
  // The first statement reads the file header: a file that is not a database fails here.
  {
    EF_ASSIGN_OR_RETURN(SqlStatement query, SqlStatement::Prepare(db, "open: set journal_mode=WAL",
                                                                  "PRAGMA journal_mode=WAL"));
    EF_ASSIGN_OR_RETURN(const bool row, query.Step());
    const std::string mode = row ? query.ColumnText(0) : "";
    if (row) query.Reset();
    if (mode != "wal") {
      return db.Refuse(ErrorCode::kIo, "open",
                       "journal_mode is '" + mode + "', not 'wal' (file system without mmap?)");
    }
  }
  // FULL, not NORMAL: in WAL mode NORMAL keeps the database consistent after a power cut but may
  // lose the last commits, and the contract is that a transition the agent acted on is on disk.
  // The cost is one WAL fsync per commit, and updates commit a handful of times.
  EF_RETURN_IF_ERROR(db.Exec("open: set synchronous=FULL", "PRAGMA synchronous=FULL"));
  EF_RETURN_IF_ERROR(db.Exec("open: enable foreign_keys", "PRAGMA foreign_keys=ON"));
  EF_RETURN_IF_ERROR(db.Migrate(kMigrations));
  return Journal(std::make_unique<detail::JournalImpl>(std::move(db)));
}

Result<ModelRecord> Journal::ReadModel(std::string_view model) const {
  return SelectModel(impl_->db, model, "read model " + QuoteName(model));
}

Result<Deployment> Journal::BeginDeployment(const DeploymentRequest& request) {
  const std::string operation =
      "begin deployment " + QuoteName(request.model) + " " + request.version;
  if (request.model.empty()) {
    return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation, "model: empty name");
  }
  Result<manifests::SemVer> version = manifests::SemVer::Parse(request.version);
  if (!version) {
    return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation,
                            "version: " + version.error().message);
  }
  if (request.bundle_size > static_cast<std::uint64_t>(kMaxInt64) ||
      request.serial > static_cast<std::uint64_t>(kMaxInt64)) {
    return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation,
                            "bundle size or serial above 2^63-1");
  }

  EF_ASSIGN_OR_RETURN(SqlTransaction txn, SqlTransaction::Begin(impl_->db, operation));
  const std::int64_t now = NowMs();
  {
    EF_ASSIGN_OR_RETURN(SqlStatement query,
                        SqlStatement::Prepare(impl_->db, operation,
                                              "INSERT INTO models (name, updated_ms) "
                                              "VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING"));
    query.Bind(1, request.model).Bind(2, now);
    EF_RETURN_IF_ERROR(query.Run());
  }
  {
    EF_ASSIGN_OR_RETURN(SqlStatement query,
                        SqlStatement::Prepare(impl_->db, operation,
                                              "SELECT id, state FROM deployments "
                                              "WHERE model = ?1 AND in_progress = 1"));
    query.Bind(1, request.model);
    EF_ASSIGN_OR_RETURN(const bool busy, query.Step());
    if (busy) {
      return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation,
                              "a deployment is already in progress (id " +
                                  std::to_string(query.ColumnInt(0)) + ", state " +
                                  query.ColumnText(1) + ")");
    }
  }
  EF_ASSIGN_OR_RETURN(ModelRecord record, SelectModel(impl_->db, request.model, operation));
  if (!record.highest_version.empty()) {
    Result<manifests::SemVer> highest = manifests::SemVer::Parse(record.highest_version);
    if (!highest) {
      return impl_->db.Refuse(ErrorCode::kIntegrity, operation,
                              "highest_version: " + highest.error().message);
    }
    if (*version < *highest && !request.allow_downgrade) {
      return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation,
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
    EF_RETURN_IF_ERROR(UpdateModel(impl_->db, record, operation));
  }
  {
    EF_ASSIGN_OR_RETURN(
        SqlStatement query,
        SqlStatement::Prepare(
            impl_->db, operation,
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
  deployment.id = impl_->db.LastInsertRowId();
  EF_RETURN_IF_ERROR(InsertTransition(impl_->db, deployment.id, std::nullopt,
                                      DeploymentState::kPending, "", now, operation));
  EF_RETURN_IF_ERROR(txn.Commit());
  return deployment;
}

Status Journal::RecordTransition(std::int64_t id, DeploymentState to, std::string_view reason) {
  const std::string operation =
      "record transition of deployment " + std::to_string(id) + " to " + std::string(ToString(to));
  if (IsTerminal(to)) {
    return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation,
                            "a terminal state is entered with Finish");
  }
  EF_ASSIGN_OR_RETURN(SqlTransaction txn, SqlTransaction::Begin(impl_->db, operation));
  EF_ASSIGN_OR_RETURN(const Deployment before,
                      MoveDeployment(impl_->db, id, to, reason, operation));
  (void)before;
  return txn.Commit();
}

Status Journal::RecordDownloadBytes(std::int64_t id, std::uint64_t bytes) {
  const std::string operation = "record download bytes of deployment " + std::to_string(id);
  if (bytes > static_cast<std::uint64_t>(kMaxInt64)) {
    return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation, "above 2^63-1");
  }
  EF_ASSIGN_OR_RETURN(
      SqlStatement query,
      SqlStatement::Prepare(impl_->db, operation,
                            "UPDATE deployments SET download_bytes = ?2, updated_ms = ?3 "
                            "WHERE id = ?1 AND in_progress = 1"));
  query.Bind(1, id).Bind(2, static_cast<std::int64_t>(bytes)).Bind(3, NowMs());
  EF_RETURN_IF_ERROR(query.Run());
  if (impl_->db.Changes() != 1) {
    return impl_->db.Refuse(ErrorCode::kNotFound, operation,
                            "no deployment in progress with that id");
  }
  return Ok();
}

Result<Deployment> Journal::Finish(std::int64_t id, DeploymentState to, std::string_view reason) {
  const std::string operation =
      "finish deployment " + std::to_string(id) + " as " + std::string(ToString(to));
  if (!IsTerminal(to)) {
    return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation, "not a terminal state");
  }
  EF_ASSIGN_OR_RETURN(SqlTransaction txn, SqlTransaction::Begin(impl_->db, operation));
  EF_ASSIGN_OR_RETURN(Deployment deployment, MoveDeployment(impl_->db, id, to, reason, operation));
  if (to == DeploymentState::kCommitted) {
    EF_ASSIGN_OR_RETURN(ModelRecord record,
                        SelectModel(impl_->db, deployment.request.model, operation));
    if (record.active && record.active->slot == deployment.slot) {
      return impl_->db.Refuse(
          ErrorCode::kInternal, operation,
          "candidate slot " + std::string(ToString(deployment.slot)) + " is the active slot");
    }
    Result<manifests::SemVer> version = manifests::SemVer::Parse(deployment.request.version);
    if (!version) {
      return impl_->db.Refuse(ErrorCode::kIntegrity, operation,
                              "version: " + version.error().message);
    }
    bool raise_highest = record.highest_version.empty();
    if (!raise_highest) {
      Result<manifests::SemVer> highest = manifests::SemVer::Parse(record.highest_version);
      if (!highest) {
        return impl_->db.Refuse(ErrorCode::kIntegrity, operation,
                                "highest_version: " + highest.error().message);
      }
      raise_highest = *version > *highest;
    }
    record.previous = record.active;
    record.active = InstalledModel{deployment.slot, deployment.request.version,
                                   deployment.request.bundle_sha256};
    if (raise_highest) record.highest_version = deployment.request.version;
    EF_RETURN_IF_ERROR(UpdateModel(impl_->db, record, operation));
  }
  EF_RETURN_IF_ERROR(txn.Commit());
  deployment.state = to;
  deployment.reason = std::string(reason);
  return deployment;
}

Result<ModelRecord> Journal::RollBackToPrevious(std::string_view model) {
  const std::string operation = "roll back " + QuoteName(model);
  EF_ASSIGN_OR_RETURN(SqlTransaction txn, SqlTransaction::Begin(impl_->db, operation));
  {
    EF_ASSIGN_OR_RETURN(SqlStatement query,
                        SqlStatement::Prepare(impl_->db, operation,
                                              "SELECT id FROM deployments "
                                              "WHERE model = ?1 AND in_progress = 1"));
    query.Bind(1, model);
    EF_ASSIGN_OR_RETURN(const bool busy, query.Step());
    if (busy) {
      return impl_->db.Refuse(
          ErrorCode::kInvalidArgument, operation,
          "deployment " + std::to_string(query.ColumnInt(0)) + " is in progress");
    }
  }
  EF_ASSIGN_OR_RETURN(ModelRecord record, SelectModel(impl_->db, model, operation));
  if (!record.previous || !record.active) {
    return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation,
                            "no previous model to roll back to");
  }
  std::swap(record.active, record.previous);
  EF_RETURN_IF_ERROR(UpdateModel(impl_->db, record, operation));
  EF_RETURN_IF_ERROR(txn.Commit());
  return record;
}

Result<Deployment> Journal::ReadDeployment(std::int64_t id) const {
  return SelectDeployment(impl_->db, id, "read deployment " + std::to_string(id));
}

Result<std::vector<Deployment>> Journal::InProgress() const {
  const std::string operation = "read deployments in progress";
  EF_ASSIGN_OR_RETURN(
      SqlStatement query,
      SqlStatement::Prepare(impl_->db, operation,
                            "SELECT " + std::string(kDeploymentColumns) +
                                " FROM deployments WHERE in_progress = 1 ORDER BY id"));
  std::vector<Deployment> deployments;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, query.Step());
    if (!row) break;
    EF_ASSIGN_OR_RETURN(Deployment deployment, DeploymentFromRow(impl_->db, query, operation));
    deployments.push_back(std::move(deployment));
  }
  return deployments;
}

Result<std::vector<Transition>> Journal::Transitions(std::int64_t id) const {
  const std::string operation = "read transitions of deployment " + std::to_string(id);
  EF_ASSIGN_OR_RETURN(SqlStatement query,
                      SqlStatement::Prepare(impl_->db, operation,
                                            "SELECT seq, from_state, to_state, reason, "
                                            "at_ms FROM transitions "
                                            "WHERE deployment_id = ?1 ORDER BY seq"));
  query.Bind(1, id);
  std::vector<Transition> transitions;
  while (true) {
    EF_ASSIGN_OR_RETURN(const bool row, query.Step());
    if (!row) break;
    Transition transition;
    transition.seq = query.ColumnInt(0);
    transition.deployment_id = id;
    if (!query.IsNull(1)) {
      Result<DeploymentState> from = ParseDeploymentState(query.ColumnText(1));
      if (!from) return impl_->db.Refuse(ErrorCode::kIntegrity, operation, from.error().message);
      transition.from = *from;
    }
    Result<DeploymentState> to = ParseDeploymentState(query.ColumnText(2));
    if (!to) return impl_->db.Refuse(ErrorCode::kIntegrity, operation, to.error().message);
    transition.to = *to;
    transition.reason = query.ColumnText(3);
    transition.at_ms = query.ColumnInt(4);
    transitions.push_back(std::move(transition));
  }
  return transitions;
}

Result<std::optional<std::uint64_t>> Journal::LastSerial(std::string_view target) const {
  const std::string operation = "read last serial of " + QuoteName(target);
  EF_ASSIGN_OR_RETURN(
      SqlStatement query,
      SqlStatement::Prepare(impl_->db, operation, "SELECT serial FROM serials WHERE target = ?1"));
  query.Bind(1, target);
  EF_ASSIGN_OR_RETURN(const bool row, query.Step());
  if (!row) return std::optional<std::uint64_t>();
  return std::optional<std::uint64_t>(static_cast<std::uint64_t>(query.ColumnInt(0)));
}

Result<Journal::SerialVerdict> Journal::AcceptSerial(std::string_view target, std::uint64_t serial,
                                                     std::string_view digest) {
  const std::string operation =
      "accept serial " + std::to_string(serial) + " for " + QuoteName(target);
  if (serial > static_cast<std::uint64_t>(kMaxInt64)) {
    return impl_->db.Refuse(ErrorCode::kInvalidArgument, operation, "serial above 2^63-1");
  }
  // One statement, so the compare and the write cannot be separated by another writer.
  EF_ASSIGN_OR_RETURN(SqlStatement query,
                      SqlStatement::Prepare(impl_->db, operation,
                                            "INSERT INTO serials (target, serial, digest) "
                                            "VALUES (?1, ?2, ?3) ON CONFLICT(target) DO UPDATE SET "
                                            "serial = excluded.serial, digest = excluded.digest "
                                            "WHERE excluded.serial > serials.serial"));
  query.Bind(1, target).Bind(2, static_cast<std::int64_t>(serial)).Bind(3, digest);
  EF_RETURN_IF_ERROR(query.Run());
  if (impl_->db.Changes() == 1) return SerialVerdict::kAccepted;
  EF_ASSIGN_OR_RETURN(SqlStatement last, SqlStatement::Prepare(impl_->db, operation,
                                                               "SELECT serial, digest FROM serials "
                                                               "WHERE target = ?1"));
  last.Bind(1, target);
  EF_ASSIGN_OR_RETURN(const bool row, last.Step());
  if (row && static_cast<std::uint64_t>(last.ColumnInt(0)) == serial &&
      last.ColumnText(1) == digest) {
    return SerialVerdict::kSameDocument;
  }
  return SerialVerdict::kReplay;
}

}  // namespace edgefleet::updater
