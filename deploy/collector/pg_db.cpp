#include "deploy/collector/pg_db.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace edgefleet::deploy {
namespace {

// pg_type.h's OIDs for the three types bound here.
constexpr unsigned kInt8Oid = 20;
constexpr unsigned kTextOid = 25;
constexpr unsigned kFloat8Oid = 701;

// "?12" -> "$12" outside string literals and quoted names; returns the highest index seen.
std::pair<std::string, int> DollarParameters(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  int highest = 0;
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
      out += c;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      continue;
    }
    if (c == '?' && i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
      int n = 0;
      std::size_t j = i + 1;
      while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9') n = n * 10 + (sql[j++] - '0');
      highest = std::max(highest, n);
      out += '$';
      out.append(sql.substr(i + 1, j - i - 1));
      i = j - 1;
      continue;
    }
    out += c;
  }
  return {out, highest};
}

bool Retryable(std::string_view sqlstate) {
  // 08 connection exception, 40 transaction rollback (deadlock, serialization), 53 insufficient
  // resources (disk full, too many connections), 57 operator intervention (shutdown).
  return sqlstate.empty() || sqlstate.starts_with("08") || sqlstate.starts_with("40") ||
         sqlstate.starts_with("53") || sqlstate.starts_with("57");
}

std::string Trimmed(const char* text) {
  std::string s = text ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

void IgnoreNotice(void*, const char*) {}

// Names the statements prepared on the server (the writer's, and a view's run more than once).
std::atomic<std::uint64_t> next_statement{0};
}  // namespace

bool IsPostgresUrl(std::string_view text) {
  return text.starts_with("postgresql://") || text.starts_with("postgres://");
}

std::string RedactUrl(std::string_view url) {
  std::string out(url);
  const std::size_t scheme = out.find("://");
  const std::size_t at = out.find('@');
  if (scheme != std::string::npos && at != std::string::npos && at > scheme) {
    const std::size_t colon = out.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  for (std::size_t p = out.find("password="); p != std::string::npos;
       p = out.find("password=", p + 1)) {
    const std::size_t end = std::min(out.find('&', p), out.size());
    out.replace(p + 9, end - p - 9, "***");
  }
  return out;
}

// ---- PgDb ----

void PgDb::Close::operator()(pg_conn* conn) const { PQfinish(conn); }

PgDb::PgDb(PgDb&&) noexcept = default;
PgDb& PgDb::operator=(PgDb&&) noexcept = default;
PgDb::~PgDb() = default;

Result<PgDb> PgDb::Connect(std::string_view url) {
  PgDb db;
  db.name_ = RedactUrl(url);
  db.conn_.reset(PQconnectdb(std::string(url).c_str()));
  if (!db.conn_) return Fail(ErrorCode::kIo, db.name_ + ": connect: out of memory");
  if (PQstatus(db.conn_.get()) != CONNECTION_OK) {
    return Fail(ErrorCode::kIo, db.name_ + ": connect: " + Trimmed(PQerrorMessage(db.conn_.get())));
  }
  PQsetNoticeProcessor(db.conn_.get(), &IgnoreNotice, nullptr);
  return db;
}

pg_conn* PgDb::Use() const {
  pg_conn* c = conn_.get();
  if (PQstatus(c) != CONNECTION_OK) {
    PQreset(c);
    ++generation_;  // statements prepared before are gone with the old session
    if (PQstatus(c) == CONNECTION_OK) PQsetNoticeProcessor(c, &IgnoreNotice, nullptr);
  }
  return c;
}

Unexpected PgDb::ResultError(std::string_view operation, const pg_result* result) const {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string sqlstate = state ? state : "";
  std::string why = result ? Trimmed(PQresultErrorMessage(result)) : "";
  if (why.empty()) why = Trimmed(PQerrorMessage(conn_.get()));
  if (!sqlstate.empty()) why += " (SQLSTATE " + sqlstate + ")";
  return Fail(Retryable(sqlstate) ? ErrorCode::kIo : ErrorCode::kInternal,
              name_ + ": " + std::string(operation) + ": " + why);
}

Status PgDb::Exec(std::string_view operation, std::string_view sql) const {
  std::unique_ptr<pg_result, void (*)(pg_result*)> r(PQexec(Use(), std::string(sql).c_str()),
                                                     &PQclear);
  const ExecStatusType status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return ResultError(operation, r.get());
  }
  return Ok();
}

Result<std::int64_t> PgDb::QueryInt(std::string operation, std::string_view sql) const {
  EF_ASSIGN_OR_RETURN(PgStatement q, PgStatement::Prepare(*this, operation, sql));
  EF_ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row || q.IsNull(0)) {
    return Fail(ErrorCode::kInternal, name_ + ": " + operation + ": no value");
  }
  return q.ColumnInt(0);
}

Status PgDb::Migrate(std::span<const manifests::SqlMigration> migrations) const {
  EF_ASSIGN_OR_RETURN(PgTransaction txn, PgTransaction::Begin(*this, "migrate"));
  // Collectors starting together take turns here ("EFCO", as the SQLite file's application id).
  EF_RETURN_IF_ERROR(Exec("lock for migration",
                          "SELECT pg_advisory_xact_lock(1162233679); "
                          "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, "
                          "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"));
  EF_ASSIGN_OR_RETURN(
      const std::int64_t current,
      QueryInt("read schema_version", "SELECT COALESCE(MAX(version), 0) FROM schema_version"));
  const int latest = migrations.empty() ? 0 : migrations.back().version;
  if (current > latest) {
    return Fail(ErrorCode::kUnsupported, name_ + ": schema version " + std::to_string(current) +
                                             " is newer than this build's " +
                                             std::to_string(latest));
  }
  for (const manifests::SqlMigration& m : migrations) {
    if (m.version <= current) continue;
    EF_RETURN_IF_ERROR(Exec(std::string("migration ") + m.name, m.sql));
    EF_ASSIGN_OR_RETURN(
        PgStatement record,
        PgStatement::Prepare(*this, "record migration",
                             "INSERT INTO schema_version (version, name, applied_ms) "
                             "VALUES (?1, ?2, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT)"));
    EF_RETURN_IF_ERROR(record.Bind(1, m.version).Bind(2, std::string_view(m.name)).Run());
  }
  return txn.Commit();
}

// ---- PgStatement ----

void PgStatement::Clear::operator()(pg_result* result) const { PQclear(result); }

PgStatement::PgStatement(const PgDb& db, std::string operation, std::string sql, int parameters)
    : db_(&db),
      operation_(std::move(operation)),
      sql_(std::move(sql)),
      name_("ef" + std::to_string(++next_statement)),
      values_(static_cast<std::size_t>(parameters)),
      types_(static_cast<std::size_t>(parameters), 0) {}
PgStatement::PgStatement(PgStatement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      operation_(std::move(other.operation_)),
      sql_(std::move(other.sql_)),
      name_(std::move(other.name_)),
      values_(std::move(other.values_)),
      types_(std::move(other.types_)),
      run_before_(other.run_before_),
      prepared_(std::exchange(other.prepared_, std::nullopt)),
      rows_(std::move(other.rows_)),
      row_(other.row_),
      bind_error_(other.bind_error_) {}
PgStatement& PgStatement::operator=(PgStatement&& other) noexcept {
  if (this != &other) {
    this->~PgStatement();
    new (this) PgStatement(std::move(other));
  }
  return *this;
}
PgStatement::~PgStatement() {
  // A statement prepared on the server lives as long as the session unless deallocated; not
  // inside a failed transaction (which refuses every command but ROLLBACK).
  if (db_ && prepared_ && *prepared_ == db_->generation() &&
      PQtransactionStatus(db_->Raw()) == PQTRANS_IDLE) {
    (void)db_->Exec(operation_ + ": deallocate", "DEALLOCATE " + name_);
  }
}

Result<PgStatement> PgStatement::Prepare(const PgDb& db, std::string_view operation,
                                         std::string_view sql) {
  auto [text, parameters] = DollarParameters(sql);
  return PgStatement(db, std::string(operation), std::move(text), parameters);
}

PgStatement& PgStatement::Set(int index, std::optional<std::string> value, unsigned type) {
  if (index < 1 || static_cast<std::size_t>(index) > values_.size()) {
    if (bind_error_ == 0) bind_error_ = index;
    return *this;
  }
  values_[static_cast<std::size_t>(index - 1)] = std::move(value);
  // The first type bound is the one prepared; a NULL leaves it to the server.
  if (type != 0 && types_[static_cast<std::size_t>(index - 1)] == 0 && !prepared_) {
    types_[static_cast<std::size_t>(index - 1)] = type;
  }
  return *this;
}

PgStatement& PgStatement::Null(int index) { return Set(index, std::nullopt, 0); }
PgStatement& PgStatement::BindInt(int index, std::int64_t value) {
  return Set(index, std::to_string(value), kInt8Oid);
}
PgStatement& PgStatement::BindReal(int index, double value) {
  std::array<char, 32> buffer{};
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  return Set(index, std::string(buffer.data(), ec == std::errc() ? end : buffer.data()),
             kFloat8Oid);
}
PgStatement& PgStatement::BindText(int index, std::string_view text) {
  return Set(index, std::string(text), kTextOid);
}

Status PgStatement::Execute() {
  rows_.reset();
  row_ = -1;
  if (bind_error_ != 0) {
    return Fail(ErrorCode::kInternal,
                db_->name() + ": " + operation_ + ": no parameter " + std::to_string(bind_error_));
  }
  pg_conn* c = db_->Use();
  std::vector<const char*> values(values_.size());
  for (std::size_t i = 0; i < values_.size(); ++i) {
    values[i] = values_[i] ? values_[i]->c_str() : nullptr;
  }
  const int n = static_cast<int>(values.size());
  if (!run_before_) {
    // Once: parsed and planned for this run only (nothing is left on the server).
    run_before_ = true;
    rows_.reset(PQexecParams(c, sql_.c_str(), n, types_.empty() ? nullptr : types_.data(),
                             values.empty() ? nullptr : values.data(), nullptr, nullptr, 0));
    return Finish();
  }
  if (!prepared_ || *prepared_ != db_->generation()) {
    std::unique_ptr<pg_result, Clear> p(PQprepare(c, name_.c_str(), sql_.c_str(),
                                                  static_cast<int>(types_.size()),
                                                  types_.empty() ? nullptr : types_.data()));
    if (!p || PQresultStatus(p.get()) != PGRES_COMMAND_OK) {
      return db_->ResultError(operation_, p.get());
    }
    prepared_ = db_->generation();
  }
  rows_.reset(PQexecPrepared(c, name_.c_str(), n, values.empty() ? nullptr : values.data(), nullptr,
                             nullptr, 0));
  return Finish();
}

Status PgStatement::Finish() {
  const ExecStatusType status = rows_ ? PQresultStatus(rows_.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Unexpected error = db_->ResultError(operation_, rows_.get());
    rows_.reset();
    return error;
  }
  const char* changed = PQcmdTuples(rows_.get());
  int changes = 0;
  if (changed && *changed) std::from_chars(changed, changed + std::strlen(changed), changes);
  db_->SetChanges(changes);
  return Ok();
}

Result<bool> PgStatement::Step() {
  if (!rows_) {
    EF_RETURN_IF_ERROR(Execute());
  }
  ++row_;
  if (row_ < PQntuples(rows_.get())) return true;
  Reset();
  return false;
}

Status PgStatement::Run() {
  Status s = Execute();
  rows_.reset();
  row_ = -1;
  return s;
}

void PgStatement::Reset() {
  rows_.reset();
  row_ = -1;
}

bool PgStatement::IsNull(int column) const {
  return !rows_ || PQgetisnull(rows_.get(), row_, column) != 0;
}

std::int64_t PgStatement::ColumnInt(int column) const {
  if (IsNull(column)) return 0;
  const char* text = PQgetvalue(rows_.get(), row_, column);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text, text + std::strlen(text), value);
  // SUM over BIGINT is NUMERIC; one whole-valued ("12" or "12.000") parses as its integer.
  if (ec != std::errc()) return static_cast<std::int64_t>(std::strtod(text, nullptr));
  return value;
}

double PgStatement::ColumnReal(int column) const {
  if (IsNull(column)) return 0;
  return std::strtod(PQgetvalue(rows_.get(), row_, column), nullptr);
}

std::string PgStatement::ColumnText(int column) const {
  if (IsNull(column)) return {};
  return std::string(PQgetvalue(rows_.get(), row_, column),
                     static_cast<std::size_t>(PQgetlength(rows_.get(), row_, column)));
}

std::optional<std::int64_t> PgStatement::ColumnOptionalInt(int column) const {
  if (IsNull(column)) return std::nullopt;
  return ColumnInt(column);
}

// ---- PgTransaction ----

Result<PgTransaction> PgTransaction::Begin(const PgDb& db, std::string_view operation) {
  EF_RETURN_IF_ERROR(db.Exec(std::string(operation) + ": begin", "BEGIN"));
  return PgTransaction(db, std::string(operation));
}

PgTransaction::PgTransaction(PgTransaction&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), operation_(std::move(other.operation_)) {}

PgTransaction::~PgTransaction() {
  if (db_) (void)db_->Exec(operation_ + ": roll back", "ROLLBACK");
}

Status PgTransaction::Commit() {
  const PgDb* db = std::exchange(db_, nullptr);
  return db->Exec(operation_ + ": commit", "COMMIT");
}

}  // namespace edgefleet::deploy
