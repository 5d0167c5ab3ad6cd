// The collector's PostgreSQL layer (libpq), shaped like manifests/sqlite_db.hpp so the store and
// the view run one code path on either engine: a connection that names its server in every error
// ("<url without password>: <operation>: <why>"), statements written with SQLite's ?N parameters
// (turned into $N here) and prepared on the server when run a second time, transactions that roll
// back unless committed, and numbered migrations applied under an advisory lock so several
// collectors may start on one database at once.
//
// Errors: a lost connection, a deadlock or serialization failure (SQLSTATE classes 08, 40, 53,
// 57) fail with kIo and may be retried (the connection is re-established, and the statements
// prepared again, at the next use); anything else (bad data, a constraint) with kInternal.
//
// Thread safety: a PgDb and its statements are used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "manifests/result.hpp"
#include "manifests/sql_bind.hpp"
#include "manifests/sqlite_db.hpp"

struct pg_conn;
struct pg_result;

namespace edgefleet::deploy {

// True for "postgresql://..." and "postgres://..." (libpq's URL forms).
bool IsPostgresUrl(std::string_view text);
// The URL with its password (user:PASSWORD@ or password=...) replaced by "***", for messages.
std::string RedactUrl(std::string_view url);

class PgDb final {
 public:
  // Connects; fails with kIo naming the (redacted) URL and libpq's reason.
  static Result<PgDb> Connect(std::string_view url);
  PgDb(PgDb&&) noexcept;
  PgDb& operator=(PgDb&&) noexcept;
  ~PgDb();

  const std::string& name() const { return name_; }  // the redacted URL

  Status Exec(std::string_view operation, std::string_view sql) const;
  Result<std::int64_t> QueryInt(std::string operation, std::string_view sql) const;
  // Rows changed by the last statement run on this connection.
  int Changes() const { return changes_; }
  // Applies the migrations newer than the schema_version table's newest, each in its own
  // transaction, under an advisory lock. Fails with kUnsupported when the database's schema is
  // newer than the newest migration.
  Status Migrate(std::span<const manifests::SqlMigration> migrations) const;

  // Internal to PgStatement and PgTransaction.
  pg_conn* Use() const;  // reconnects a lost connection first (bumps generation())
  pg_conn* Raw() const { return conn_.get(); }  // as it is (a lost one is not idle)
  std::uint64_t generation() const { return generation_; }
  Unexpected ResultError(std::string_view operation, const pg_result* result) const;
  void SetChanges(int changes) const { changes_ = changes; }

 private:
  struct Close {
    void operator()(pg_conn* conn) const;
  };
  PgDb() = default;
  std::string name_;
  std::unique_ptr<pg_conn, Close> conn_;
  mutable std::uint64_t generation_ = 0;
  mutable int changes_ = 0;
};

class PgStatement final : public manifests::SqlBinder<PgStatement> {
 public:
  static Result<PgStatement> Prepare(const PgDb& db, std::string_view operation,
                                     std::string_view sql);
  PgStatement(PgStatement&&) noexcept;
  PgStatement& operator=(PgStatement&& other) noexcept;
  ~PgStatement();

  // Bind(index, value): manifests/sql_bind.hpp.
  PgStatement& Null(int index);

  // The first Step runs the statement and holds its rows; true while rows come.
  Result<bool> Step();
  Status Run();
  void Reset();  // drops the rows; the parameters stay bound

  bool IsNull(int column) const;
  std::int64_t ColumnInt(int column) const;
  double ColumnReal(int column) const;
  std::string ColumnText(int column) const;
  std::optional<std::int64_t> ColumnOptionalInt(int column) const;

 private:
  friend class manifests::SqlBinder<PgStatement>;
  struct Clear {
    void operator()(pg_result* result) const;
  };

  PgStatement(const PgDb& db, std::string operation, std::string sql, int parameters);
  PgStatement& BindInt(int index, std::int64_t value);
  PgStatement& BindReal(int index, double value);
  PgStatement& BindText(int index, std::string_view text);
  PgStatement& Set(int index, std::optional<std::string> value, unsigned type);
  Status Execute();
  Status Finish();  // checks the run's result, counts its changes

  const PgDb* db_;
  std::string operation_;
  std::string sql_;   // with $N parameters
  std::string name_;  // of the server-side prepared statement
  std::vector<std::optional<std::string>> values_;
  std::vector<unsigned> types_;  // Oid per parameter (0: the server infers it)
  bool run_before_ = false;      // the first run is not prepared on the server; the second is
  std::optional<std::uint64_t> prepared_;  // the connection generation it was prepared on
  std::unique_ptr<pg_result, Clear> rows_;
  int row_ = -1;
  int bind_error_ = 0;  // the first parameter index out of range, if any
};

// BEGIN ... COMMIT; rolls back unless committed.
class PgTransaction final {
 public:
  static Result<PgTransaction> Begin(const PgDb& db, std::string_view operation);
  PgTransaction(PgTransaction&& other) noexcept;
  PgTransaction& operator=(PgTransaction&&) = delete;
  PgTransaction(const PgTransaction&) = delete;
  PgTransaction& operator=(const PgTransaction&) = delete;
  ~PgTransaction();
  Status Commit();

 private:
  PgTransaction(const PgDb& db, std::string operation)
      : db_(&db), operation_(std::move(operation)) {}
  const PgDb* db_;
  std::string operation_;
};

}  // namespace edgefleet::deploy
