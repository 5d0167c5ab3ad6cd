// One SQLite layer for the project's three databases (the agent's update journal, the telemetry
// outbox's file format aside, and the collector's store): a connection that names its file in
// every error ("<file>: <operation>: <why>"), prepared statements with bind errors reported at
// Step, transactions that roll back unless committed, and numbered schema migrations kept in a
// schema_version table. It sits in the base module so updater/ and deploy/ (and telemetry/)
// share it instead of each keeping a copy; sqlite3 types stay out of this header.
//
// Thread safety: a SqliteDb and its statements are used by one thread at a time. Several
// connections (and processes) may open the same file; SQLite's locks and the busy timeout
// arbitrate.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "manifests/result.hpp"
#include "manifests/sql_bind.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace edgefleet::manifests {

// One numbered migration (NNNN_name.sql embedded at build time).
struct SqlMigration {
  int version;
  const char* name;
  const char* sql;
};

class SqliteDb final {
 public:
  enum class Mode { kReadWriteCreate, kReadOnly };
  // Opens `path` with extended result codes and a busy timeout. kIo naming the file when it
  // cannot be opened. (A file that is not a database fails at the first statement: kIntegrity.)
  static Result<SqliteDb> Open(const std::filesystem::path& path, Mode mode,
                               int busy_timeout_ms = 5000);

  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_.get(); }

  // "<file>: <operation>: <sqlite's message>" with a code for `rc` (kIntegrity for a corrupt
  // file or not a database, kIo for locks, disk and permissions, kInvalidArgument for a
  // constraint, else kInternal). Take it right after the failing call.
  Unexpected SqlError(std::string_view operation, int rc) const;
  // "<file>: <operation>: <why>" with `code`.
  Unexpected Refuse(ErrorCode code, std::string_view operation, std::string_view why) const;
  // For SQL without parameters that we own (pragmas, transaction control, migrations).
  Status Exec(std::string_view operation, const char* sql) const;
  // The rowid of the last INSERT on this connection.
  std::int64_t LastInsertRowId() const;
  // Rows changed by the last INSERT/UPDATE/DELETE (0 for an INSERT OR IGNORE that ignored).
  int Changes() const;
  // The first column of the first row as an integer (0 when there is no row).
  Result<std::int64_t> QueryInt(std::string operation, std::string_view sql) const;

  // The highest applied migration (0 for a new file); creates schema_version when missing.
  Result<int> SchemaVersion() const;
  // Whether the file is a `kind` database (e.g. "collector"), told by the SQLite header's
  // application_id: true for a new file (id 0 and no tables: ours to create), false for one
  // carrying `application_id`; kIntegrity "<file>: not a <kind> database (...)" for any other,
  // so one tool's --db pointed at another tool's file is refused before anything is written.
  Result<bool> CheckApplicationId(std::int32_t application_id, std::string_view kind) const;
  // Applies the migrations above the file's version, each in its own transaction, stamping
  // `application_id` (when not 0) with it. Refuses (kUnsupported) a file whose version is newer
  // than the last migration: a newer build wrote it. Another process that migrated between our
  // read and our lock is noticed and not repeated.
  Status Migrate(std::span<const SqlMigration> migrations, std::int32_t application_id = 0) const;

 private:
  struct Close {
    void operator()(sqlite3* db) const;
  };
  SqliteDb() = default;
  std::filesystem::path path_;
  std::unique_ptr<sqlite3, Close> db_;
};

// A prepared statement: Bind... then Step (rows) or Run (none). Step resets the statement when
// it finishes or fails, so a kept statement is ready for its next use; a failed bind is
// reported by the next Step.
class SqlStatement final : public SqlBinder<SqlStatement> {
 public:
  static Result<SqlStatement> Prepare(const SqliteDb& db, std::string_view operation,
                                      std::string_view sql);

  // Bind(index, value): manifests/sql_bind.hpp.
  SqlStatement& Null(int index);

  // True while rows come; false when done.
  Result<bool> Step();
  Status Run();  // for statements that return no rows (a row, if any, is discarded)
  void Reset();

  bool IsNull(int column) const;
  std::int64_t ColumnInt(int column) const;
  double ColumnReal(int column) const;
  std::string ColumnText(int column) const;
  std::optional<std::int64_t> ColumnOptionalInt(int column) const;

 private:
  friend class SqlBinder<SqlStatement>;
  struct Finalize {
    void operator()(sqlite3_stmt* stmt) const;
  };

  SqlStatement(const SqliteDb& db, std::string operation, sqlite3_stmt* stmt);
  SqlStatement& BindInt(int index, std::int64_t value);
  SqlStatement& BindReal(int index, double value);
  SqlStatement& BindText(int index, std::string_view text);
  SqlStatement& Check(int rc);

  const SqliteDb* db_;
  std::string operation_;
  std::unique_ptr<sqlite3_stmt, Finalize> stmt_;
  int bind_rc_ = 0;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back unless committed.
class SqlTransaction final {
 public:
  static Result<SqlTransaction> Begin(const SqliteDb& db, std::string_view operation);
  SqlTransaction(SqlTransaction&& other) noexcept;
  SqlTransaction& operator=(SqlTransaction&&) = delete;
  SqlTransaction(const SqlTransaction&) = delete;
  SqlTransaction& operator=(const SqlTransaction&) = delete;
  ~SqlTransaction();
  // Returns once committed (durable as the connection's synchronous setting says).
  Status Commit();

 private:
  SqlTransaction(const SqliteDb& db, std::string operation)
      : db_(&db), operation_(std::move(operation)) {}
  const SqliteDb* db_;
  std::string operation_;
};

}  // namespace edgefleet::manifests
