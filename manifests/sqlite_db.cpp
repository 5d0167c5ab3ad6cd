#include "manifests/sqlite_db.hpp"

#include <sqlite3.h>

#include <chrono>
#include <utility>

#include "manifests/time.hpp"

namespace edgefleet::manifests {
namespace {

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

}  // namespace

void SqliteDb::Close::operator()(sqlite3* db) const { sqlite3_close_v2(db); }
void SqlStatement::Finalize::operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }

Result<SqliteDb> SqliteDb::Open(const std::filesystem::path& path, Mode mode, int busy_timeout_ms) {
  SqliteDb db;
  db.path_ = path;
  const int flags =
      mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  db.db_.reset(raw);  // owned even on failure: sqlite allocates a handle for the message
  if (rc != SQLITE_OK) return db.SqlError("open", rc);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  return db;
}

Unexpected SqliteDb::SqlError(std::string_view operation, int rc) const {
  const char* why = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  return Fail(CodeFor(rc), path_.string() + ": " + std::string(operation) + ": " + why);
}

Unexpected SqliteDb::Refuse(ErrorCode code, std::string_view operation,
                            std::string_view why) const {
  return Fail(code, path_.string() + ": " + std::string(operation) + ": " + std::string(why));
}

Status SqliteDb::Exec(std::string_view operation, const char* sql) const {
  const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqlError(operation, rc);
  return Ok();
}

std::int64_t SqliteDb::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_.get()); }
int SqliteDb::Changes() const { return sqlite3_changes(db_.get()); }

Result<std::int64_t> SqliteDb::QueryInt(std::string operation, std::string_view sql) const {
  EF_ASSIGN_OR_RETURN(SqlStatement stmt, SqlStatement::Prepare(*this, std::move(operation), sql));
  EF_ASSIGN_OR_RETURN(const bool row, stmt.Step());
  const std::int64_t value = row ? stmt.ColumnInt(0) : 0;
  if (row) stmt.Reset();
  return value;
}

Result<int> SqliteDb::SchemaVersion() const {
  EF_RETURN_IF_ERROR(Exec("create schema_version",
                          "CREATE TABLE IF NOT EXISTS schema_version ("
                          "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                          "applied_ms INTEGER NOT NULL) STRICT"));
  EF_ASSIGN_OR_RETURN(
      const std::int64_t version,
      QueryInt("read schema_version", "SELECT COALESCE(MAX(version), 0) FROM schema_version"));
  return static_cast<int>(version);
}

Result<bool> SqliteDb::CheckApplicationId(std::int32_t application_id,
                                          std::string_view kind) const {
  EF_ASSIGN_OR_RETURN(const std::int64_t found,
                      QueryInt("read application_id", "PRAGMA application_id"));
  if (found == application_id) return false;
  const std::string not_ours = path_.string() + ": not a " + std::string(kind) + " database";
  if (found != 0) {
    return Fail(ErrorCode::kIntegrity, not_ours + " (application_id " + std::to_string(found) +
                                           "); refusing to write into it");
  }
  EF_ASSIGN_OR_RETURN(const std::int64_t tables,
                      QueryInt("inspect", "SELECT COUNT(*) FROM sqlite_schema"));
  if (tables != 0) {
    return Fail(ErrorCode::kIntegrity, not_ours +
                                           " (it holds other tables); refusing to write "
                                           "into it");
  }
  return true;
}

Status SqliteDb::Migrate(std::span<const SqlMigration> migrations,
                         std::int32_t application_id) const {
  const std::string stamp = "PRAGMA application_id = " + std::to_string(application_id);
  EF_ASSIGN_OR_RETURN(const int found, SchemaVersion());
  const int latest = migrations.empty() ? 0 : migrations.back().version;
  if (found > latest) {
    return Refuse(ErrorCode::kUnsupported, "open",
                  "schema version " + std::to_string(found) +
                      " is newer than this build supports (" + std::to_string(latest) +
                      "); refusing to touch a file written by a newer build");
  }
  for (const SqlMigration& migration : migrations) {
    if (migration.version <= found) continue;
    const std::string operation =
        "migrate to schema " + std::to_string(migration.version) + " (" + migration.name + ")";
    EF_ASSIGN_OR_RETURN(SqlTransaction txn, SqlTransaction::Begin(*this, operation));
    EF_ASSIGN_OR_RETURN(const int now_found, SchemaVersion());  // another process raced us
    if (now_found >= migration.version) continue;
    EF_RETURN_IF_ERROR(Exec(operation, migration.sql));
    EF_ASSIGN_OR_RETURN(SqlStatement insert,
                        SqlStatement::Prepare(*this, operation,
                                              "INSERT INTO schema_version (version, name, "
                                              "applied_ms) VALUES (?1, ?2, ?3)"));
    insert.Bind(1, migration.version).Bind(2, migration.name).Bind(3, NowMs());
    EF_RETURN_IF_ERROR(insert.Run());
    if (application_id != 0) EF_RETURN_IF_ERROR(Exec(operation, stamp.c_str()));
    EF_RETURN_IF_ERROR(txn.Commit());
  }
  return Ok();
}

// ---- SqlStatement ----

SqlStatement::SqlStatement(const SqliteDb& db, std::string operation, sqlite3_stmt* stmt)
    : db_(&db), operation_(std::move(operation)), stmt_(stmt) {}

Result<SqlStatement> SqlStatement::Prepare(const SqliteDb& db, std::string_view operation,
                                           std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db.handle(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  SqlStatement stmt(db, std::string(operation), raw);
  if (rc != SQLITE_OK) return db.SqlError(stmt.operation_, rc);
  return stmt;
}

SqlStatement& SqlStatement::Check(int rc) {
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}
SqlStatement& SqlStatement::BindInt(int index, std::int64_t value) {
  return Check(sqlite3_bind_int64(stmt_.get(), index, value));
}
SqlStatement& SqlStatement::BindReal(int index, double value) {
  return Check(sqlite3_bind_double(stmt_.get(), index, value));
}
SqlStatement& SqlStatement::BindText(int index, std::string_view text) {
  // A default string_view has a null data(), which SQLite would bind as NULL, not ''.
  return Check(sqlite3_bind_text(stmt_.get(), index, text.data() ? text.data() : "",
                                 static_cast<int>(text.size()), SQLITE_TRANSIENT));
}
SqlStatement& SqlStatement::Null(int index) { return Check(sqlite3_bind_null(stmt_.get(), index)); }

Result<bool> SqlStatement::Step() {
  if (bind_rc_ != SQLITE_OK) {
    const int rc = bind_rc_;
    Reset();
    return db_->SqlError(operation_ + ": bind", rc);
  }
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) {
    Reset();
    return false;
  }
  Unexpected error = db_->SqlError(operation_, rc);  // before the reset replaces the message
  Reset();
  return error;
}

Status SqlStatement::Run() {
  EF_ASSIGN_OR_RETURN(const bool row, Step());
  if (row) Reset();
  return Ok();
}

void SqlStatement::Reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
  bind_rc_ = SQLITE_OK;
}

bool SqlStatement::IsNull(int column) const {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}
std::int64_t SqlStatement::ColumnInt(int column) const {
  return sqlite3_column_int64(stmt_.get(), column);
}
double SqlStatement::ColumnReal(int column) const {
  return sqlite3_column_double(stmt_.get(), column);
}
std::string SqlStatement::ColumnText(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_.get(), column);
  const int size = sqlite3_column_bytes(stmt_.get(), column);
  return text ? std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(size))
              : std::string();
}
std::optional<std::int64_t> SqlStatement::ColumnOptionalInt(int column) const {
  if (IsNull(column)) return std::nullopt;
  return ColumnInt(column);
}

// ---- SqlTransaction ----

Result<SqlTransaction> SqlTransaction::Begin(const SqliteDb& db, std::string_view operation) {
  EF_RETURN_IF_ERROR(db.Exec(std::string(operation) + ": begin", "BEGIN IMMEDIATE"));
  return SqlTransaction(db, std::string(operation));
}

SqlTransaction::SqlTransaction(SqlTransaction&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), operation_(std::move(other.operation_)) {}

SqlTransaction::~SqlTransaction() {
  if (db_ != nullptr) sqlite3_exec(db_->handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

Status SqlTransaction::Commit() {
  EF_RETURN_IF_ERROR(db_->Exec(operation_ + ": commit", "COMMIT"));
  db_ = nullptr;
  return Ok();
}

}  // namespace edgefleet::manifests
