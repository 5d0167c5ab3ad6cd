#include "telemetry/outbox.hpp"

#include <mosquitto.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <mutex>
#include <utility>

#include "manifests/time.hpp"

namespace edgefleet::telemetry {
namespace {

// Another connection (a debugging shell, a collector reading the file) may hold the write lock
// for a moment; after this long the call fails with kIo.
constexpr int kBusyTimeoutMs = 5000;
constexpr std::int64_t kSchemaVersion = 1;
// An MQTT packet's remaining length is at most 268435455 bytes; the topic and header take some.
constexpr std::size_t kMaxPayload = 268435455 - 65535 - 8;

// Schema 1. Rows are the queued messages. The meta table holds the schema version, the
// counters that must survive a restart and the next row id, all updated in the same transaction
// as the rows they count. Ids come from next_id, so an id is never used twice even after the
// newest row was acknowledged (the MQTT client's cursor relies on ids only growing); that costs
// nothing, since the meta row is written anyway, where AUTOINCREMENT would write one more page
// per commit. The only index covers the superseding rows: every other row is written and
// deleted once, and each index page it touched would be written twice more (about half the
// single-message append rate). Age expiry walks the rows in id order instead of by an index.
// The meta keys next_seq and seq_stream (the message sequence, telemetry/outbox.hpp Sequence)
// are added at Open when missing, so a file written before numbering keeps schema 1.
constexpr const char* kSchema = R"sql(
CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),
  retain INTEGER NOT NULL,
  supersede INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_superseding ON outbox (topic) WHERE supersede = 1;
INSERT INTO outbox_meta (key, value) VALUES
  ('schema_version', 1), ('next_id', 1), ('appended_total', 0), ('acked_total', 0),
  ('dropped_total', 0), ('superseded_total', 0);
)sql";

// Everything an outbox file may contain; any other table means it is someone else's database.
constexpr std::array<std::string_view, 2> kOwnTables = {"outbox", "outbox_meta"};

using Db = std::unique_ptr<sqlite3, decltype(&sqlite3_close_v2)>;
struct FinalizeStmt {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, FinalizeStmt>;  // default-constructible, for arrays

using manifests::NowMs;

// The statements every call uses, prepared once at Open.
enum class Sql : std::size_t {
  kInsert,
  kDeleteTopic,
  kDeleteOldest,
  kOldestCreated,
  kFirstYoung,
  kDeleteBefore,
  kNextId,
  kCount,
  kAfter,
  kDeleteId,
  kAddCounters,
  kReadMeta,
  kBegin,
  kCommit,
  kRollback,
  kSize,
};

constexpr std::array<const char*, static_cast<std::size_t>(Sql::kSize)> kSql = {
    "INSERT INTO outbox (id, topic, payload, qos, retain, supersede, created_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    "DELETE FROM outbox WHERE topic = ?1 AND supersede = 1",
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?1)",
    "SELECT created_ms FROM outbox ORDER BY id LIMIT 1",
    "SELECT id FROM outbox WHERE created_ms >= ?1 ORDER BY id LIMIT 1",
    "DELETE FROM outbox WHERE id < ?1",
    "SELECT value FROM outbox_meta WHERE key = 'next_id'",
    "SELECT COUNT(*) FROM outbox",
    "SELECT id, topic, payload, qos, retain, created_ms FROM outbox WHERE id > ?1 "
    "ORDER BY id LIMIT ?2",
    "DELETE FROM outbox WHERE id = ?1",
    "UPDATE outbox_meta SET value = CASE key WHEN 'next_id' THEN max(value, ?5) "
    "WHEN 'next_seq' THEN max(value, ?6) "
    "WHEN 'appended_total' THEN value + ?1 WHEN 'acked_total' THEN value + ?2 "
    "WHEN 'dropped_total' THEN value + ?3 WHEN 'superseded_total' THEN value + ?4 END "
    "WHERE key IN ('next_id', 'next_seq', 'appended_total', 'acked_total', 'dropped_total', "
    "'superseded_total')",
    "SELECT key, value FROM outbox_meta",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
};

// What one transaction adds to the persistent counters, and the next row id after it.
struct Delta {
  std::int64_t appended = 0;
  std::int64_t acked = 0;
  std::int64_t dropped = 0;
  std::int64_t superseded = 0;
  std::int64_t next_id = 0;   // 0: unchanged
  std::int64_t next_seq = 0;  // 0: unchanged
};

}  // namespace

struct Outbox::Impl {
  std::filesystem::path path;
  OutboxLimits limits;
  std::mutex mu;  // guards everything below: one connection, used by one thread at a time
  Db db{nullptr, &sqlite3_close_v2};
  std::array<Stmt, static_cast<std::size_t>(Sql::kSize)> stmts;
  // Rows in the table, counted at Open and kept in step by every committed change (COUNT(*) is
  // a scan in SQLite, too slow for every Append). One Outbox per file writes it.
  std::int64_t pending = 0;
  // The next sequence number and the stream, read at Open; next_seq follows committed appends.
  std::int64_t next_seq = 1;
  std::string stream;

  // "<file>: <operation>: <sqlite message>", taken right after the failing call.
  Unexpected SqlError(std::string_view operation, int rc) const {
    const char* message = db ? sqlite3_errmsg(db.get()) : sqlite3_errstr(rc);
    return Fail(ErrorCode::kIo,
                path.string() + ": outbox: " + std::string(operation) + ": " + message);
  }
  Unexpected Refuse(ErrorCode code, std::string_view operation, std::string_view why) const {
    return Fail(code,
                path.string() + ": outbox: " + std::string(operation) + ": " + std::string(why));
  }

  Status Exec(std::string_view operation, const char* sql) {
    const int rc = sqlite3_exec(db.get(), sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqlError(operation, rc);
    return Ok();
  }

  // A cached statement, reset and unbound when the use ends.
  class Use final {
   public:
    Use(Impl& impl, Sql which, std::string_view operation)
        : impl_(impl),
          stmt_(impl.stmts[static_cast<std::size_t>(which)].get()),
          operation_(operation) {}
    ~Use() {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

    Use& Bind(int index, std::int64_t value) {
      Check(sqlite3_bind_int64(stmt_, index, value));
      return *this;
    }
    Use& BindText(int index, std::string_view text) {
      Check(sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()),
                              SQLITE_STATIC));
      return *this;
    }
    Use& BindBlob(int index, std::string_view bytes) {
      // Zero-length blobs with a null pointer would bind NULL; "" never is null.
      Check(sqlite3_bind_blob(stmt_, index, bytes.empty() ? "" : bytes.data(),
                              static_cast<int>(bytes.size()), SQLITE_STATIC));
      return *this;
    }
    // True while rows come, false when done.
    Result<bool> Step() {
      if (bind_rc_ != SQLITE_OK)
        return impl_.SqlError(std::string(operation_) + ": bind", bind_rc_);
      const int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) return true;
      if (rc == SQLITE_DONE) return false;
      return impl_.SqlError(operation_, rc);
    }
    // Runs a statement without rows; returns how many rows it changed.
    Result<std::int64_t> Run() {
      EF_ASSIGN_OR_RETURN(const bool row, Step());
      (void)row;
      return static_cast<std::int64_t>(sqlite3_changes(impl_.db.get()));
    }
    std::int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
    bool IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
    std::string Bytes(int column) const {
      const void* data = sqlite3_column_blob(stmt_, column);
      const int size = sqlite3_column_bytes(stmt_, column);
      return data ? std::string(static_cast<const char*>(data), static_cast<std::size_t>(size))
                  : std::string();
    }

   private:
    void Check(int rc) {
      if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    }
    Impl& impl_;
    sqlite3_stmt* stmt_;
    std::string_view operation_;
    int bind_rc_ = SQLITE_OK;
  };

  // BEGIN IMMEDIATE (the write lock up front); rolls back unless committed.
  class Transaction final {
   public:
    explicit Transaction(Impl& impl) : impl_(impl) {}
    ~Transaction() {
      if (open_) (void)Use(impl_, Sql::kRollback, "rollback").Run();
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    Status Begin(std::string_view operation) {
      EF_ASSIGN_OR_RETURN(const std::int64_t ignored,
                          Use(impl_, Sql::kBegin, std::string(operation) + ": begin").Run());
      (void)ignored;
      open_ = true;
      return Ok();
    }
    // Adds `delta` to the counters and commits; `pending` follows only a committed change.
    Status Commit(std::string_view operation, const Delta& delta, std::int64_t pending_after) {
      {
        Use add(impl_, Sql::kAddCounters, operation);
        add.Bind(1, delta.appended)
            .Bind(2, delta.acked)
            .Bind(3, delta.dropped)
            .Bind(4, delta.superseded)
            .Bind(5, delta.next_id)
            .Bind(6, delta.next_seq);
        EF_RETURN_IF_ERROR(add.Run());
      }
      EF_ASSIGN_OR_RETURN(const std::int64_t ignored,
                          Use(impl_, Sql::kCommit, std::string(operation) + ": commit").Run());
      (void)ignored;
      open_ = false;
      impl_.pending = pending_after;
      if (delta.next_seq != 0) impl_.next_seq = delta.next_seq;
      return Ok();
    }

   private:
    Impl& impl_;
    bool open_ = false;
  };

  std::int64_t ExpiryCutoff() const {
    return NowMs() - std::chrono::duration_cast<std::chrono::milliseconds>(limits.max_age).count();
  }

  // Whether the oldest row is past max_age (a read: After() writes only when it is).
  Result<bool> HasExpired(std::string_view operation, std::int64_t cutoff) {
    Use oldest(*this, Sql::kOldestCreated, operation);
    EF_ASSIGN_OR_RETURN(const bool row, oldest.Step());
    return row && oldest.Int(0) < cutoff;
  }

  // Inside a transaction: deletes the rows past max_age, in id order up to the first younger
  // one (after a clock step backwards, an old row behind a younger one waits for it); returns
  // how many. Reads only the rows it deletes, plus one.
  Result<std::int64_t> ExpireOld(std::string_view operation) {
    const std::int64_t cutoff = ExpiryCutoff();
    EF_ASSIGN_OR_RETURN(const bool expired, HasExpired(operation, cutoff));
    if (!expired) return 0;
    std::int64_t first_young = INT64_MAX;
    {
      Use young(*this, Sql::kFirstYoung, operation);
      young.Bind(1, cutoff);
      EF_ASSIGN_OR_RETURN(const bool row, young.Step());
      if (row) first_young = young.Int(0);
    }
    Use expire(*this, Sql::kDeleteBefore, operation);
    expire.Bind(1, first_young);
    return expire.Run();
  }

  Status CheckSchema();

  // Reads the sequence's stream and next number; a file written before messages were numbered
  // gets both now (its stream is new: nothing it sent before carried a number).
  Status ReadSequence() {
    std::uint64_t random = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&random), sizeof(random)) != 1) {
      return Refuse(ErrorCode::kIo, "open", "no random bytes for the sequence stream");
    }
    sqlite3_stmt* raw = nullptr;
    const char* sql =
        "INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('next_seq', 1), ('seq_stream', ?1)";
    int rc = sqlite3_prepare_v2(db.get(), sql, -1, &raw, nullptr);
    Stmt insert(raw);
    if (rc != SQLITE_OK) return SqlError("open: number the messages", rc);
    // SQLite integers are signed; the stream is the 63 low bits.
    sqlite3_bind_int64(insert.get(), 1, static_cast<std::int64_t>(random >> 1));
    if ((rc = sqlite3_step(insert.get())) != SQLITE_DONE) {
      return SqlError("open: number the messages", rc);
    }
    Use read(*this, Sql::kReadMeta, "open: read the sequence");
    for (;;) {
      EF_ASSIGN_OR_RETURN(const bool more, read.Step());
      if (!more) break;
      const std::string key = read.Bytes(0);
      if (key == "next_seq") next_seq = read.Int(1);
      if (key == "seq_stream") {
        char hex[17];
        std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(read.Int(1)));
        stream = hex;
      }
    }
    if (stream.empty() || next_seq < 1) {
      return Refuse(ErrorCode::kIo, "open", "outbox_meta has no valid sequence");
    }
    return Ok();
  }
};

Status Outbox::Impl::CheckSchema() {
  // The first statement reads the file header: a file that is not a database fails here.
  std::vector<std::string> tables;
  {
    sqlite3_stmt* raw = nullptr;
    const char* sql = "SELECT name FROM sqlite_master WHERE type = 'table'";
    int rc = sqlite3_prepare_v2(db.get(), sql, -1, &raw, nullptr);
    Stmt stmt(raw);
    if (rc != SQLITE_OK) return SqlError("open: read the schema", rc);
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      const unsigned char* name = sqlite3_column_text(stmt.get(), 0);
      tables.emplace_back(name ? reinterpret_cast<const char*>(name) : "");
    }
    if (rc != SQLITE_DONE) return SqlError("open: read the schema", rc);
  }
  for (const auto& table : tables) {
    bool own = false;
    for (std::string_view t : kOwnTables) own = own || table == t;
    if (!own) {
      return Refuse(ErrorCode::kIo, "open",
                    "not an outbox database (it has a table \"" + table + "\")");
    }
  }
  if (tables.empty()) {
    Status created = Exec("open: create the schema",
                          ("BEGIN IMMEDIATE;" + std::string(kSchema) + "COMMIT;").c_str());
    if (!created) {
      sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      return created;
    }
    return Ok();
  }
  // Ours: the schema version must be one this build writes.
  sqlite3_stmt* raw = nullptr;
  const char* sql = "SELECT value FROM outbox_meta WHERE key = 'schema_version'";
  const int rc = sqlite3_prepare_v2(db.get(), sql, -1, &raw, nullptr);
  Stmt stmt(raw);
  if (rc != SQLITE_OK) return SqlError("open: read the schema version", rc);
  if (sqlite3_step(stmt.get()) != SQLITE_ROW) {
    return Refuse(ErrorCode::kIo, "open", "not an outbox database (no schema version)");
  }
  const std::int64_t version = sqlite3_column_int64(stmt.get(), 0);
  if (version != kSchemaVersion) {
    return Refuse(ErrorCode::kUnsupported, "open",
                  "schema version " + std::to_string(version) + ", this build reads " +
                      std::to_string(kSchemaVersion));
  }
  return Ok();
}

Outbox::Outbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Outbox::~Outbox() = default;

Result<std::unique_ptr<Outbox>> Outbox::Open(const std::filesystem::path& path,
                                             OutboxLimits limits) {
  if (limits.max_messages == 0) {
    return Fail(ErrorCode::kInvalidArgument, path.string() + ": outbox: max_messages is 0");
  }
  if (limits.max_age.count() <= 0) {
    return Fail(ErrorCode::kInvalidArgument, path.string() + ": outbox: max_age is " +
                                                 std::to_string(limits.max_age.count()) +
                                                 " s, must be positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->limits = limits;
  sqlite3* raw = nullptr;
  const int open_rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  impl->db.reset(raw);  // owned even when open failed: sqlite3 allocates a handle for the message
  if (open_rc != SQLITE_OK) return impl->SqlError("open", open_rc);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  EF_RETURN_IF_ERROR(impl->CheckSchema());
  {
    // WAL: appends do not block reads. NORMAL: a commit is not synced until the WAL is
    // checkpointed, so a power cut may lose the last few telemetry messages (never corrupt the
    // file); telemetry is not worth an fsync per window.
    sqlite3_stmt* mode_raw = nullptr;
    const int rc = sqlite3_prepare_v2(raw, "PRAGMA journal_mode=WAL", -1, &mode_raw, nullptr);
    Stmt mode(mode_raw);
    if (rc != SQLITE_OK || sqlite3_step(mode.get()) != SQLITE_ROW) {
      return impl->SqlError("open: set journal_mode=WAL", rc);
    }
    const unsigned char* text = sqlite3_column_text(mode.get(), 0);
    const std::string got = text ? reinterpret_cast<const char*>(text) : "";
    if (got != "wal") {
      return impl->Refuse(ErrorCode::kIo, "open", "journal_mode is '" + got + "', not 'wal'");
    }
  }
  EF_RETURN_IF_ERROR(impl->Exec("open: set synchronous=NORMAL", "PRAGMA synchronous=NORMAL"));
  for (std::size_t i = 0; i < kSql.size(); ++i) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(raw, kSql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    impl->stmts[i] = Stmt(stmt);
    if (rc != SQLITE_OK) return impl->SqlError(std::string("open: prepare ") + kSql[i], rc);
  }
  {
    Impl::Use count(*impl, Sql::kCount, "open: count rows");
    EF_ASSIGN_OR_RETURN(const bool row, count.Step());
    impl->pending = row ? count.Int(0) : 0;
  }
  EF_RETURN_IF_ERROR(impl->ReadSequence());
  return std::unique_ptr<Outbox>(new Outbox(std::move(impl)));
}

Status Outbox::Append(std::span<const OutgoingMessage> messages) {
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const OutgoingMessage& m = messages[i];
    const std::string where = "append: message " + std::to_string(i);
    if (m.topic.empty()) return impl_->Refuse(ErrorCode::kInvalidArgument, where, "empty topic");
    // What the broker would refuse can never leave the outbox; refuse it here instead.
    if (mosquitto_pub_topic_check2(m.topic.c_str(), m.topic.size()) != MOSQ_ERR_SUCCESS ||
        mosquitto_validate_utf8(m.topic.c_str(), static_cast<int>(m.topic.size())) !=
            MOSQ_ERR_SUCCESS) {
      return impl_->Refuse(ErrorCode::kInvalidArgument, where,
                           "topic \"" + m.topic +
                               "\" is not a topic to publish to (wildcard, NUL, invalid UTF-8 "
                               "or longer than 65535 bytes)");
    }
    if (!m.numbered && m.payload.size() > kMaxPayload) {
      return impl_->Refuse(ErrorCode::kInvalidArgument, where + " (" + m.topic + ")",
                           "payload of " + std::to_string(m.payload.size()) +
                               " bytes is larger than an MQTT packet allows");
    }
    if (m.qos < 0 || m.qos > 2) {
      return impl_->Refuse(ErrorCode::kInvalidArgument, where + " (" + m.topic + ")",
                           "qos " + std::to_string(m.qos) + " is not 0, 1 or 2");
    }
  }
  if (messages.empty()) return Ok();
  constexpr std::string_view kOp = "append";
  std::lock_guard lock(impl_->mu);
  Impl::Transaction txn(*impl_);
  EF_RETURN_IF_ERROR(txn.Begin(kOp));
  Delta delta;
  std::int64_t pending = impl_->pending;
  const std::int64_t now = NowMs();
  {
    Impl::Use next(*impl_, Sql::kNextId, "append: read next_id");
    EF_ASSIGN_OR_RETURN(const bool row, next.Step());
    if (!row) return impl_->Refuse(ErrorCode::kIo, kOp, "outbox_meta has no next_id");
    delta.next_id = next.Int(0);
  }
  std::int64_t next_seq = impl_->next_seq;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const OutgoingMessage& m = messages[i];
    std::string numbered_payload;
    if (m.numbered) {
      numbered_payload = m.numbered(Sequence{impl_->stream, static_cast<std::uint64_t>(next_seq)});
      if (numbered_payload.size() > kMaxPayload) {
        return impl_->Refuse(ErrorCode::kInvalidArgument,
                             "append: message " + std::to_string(i) + " (" + m.topic + ")",
                             "payload of " + std::to_string(numbered_payload.size()) +
                                 " bytes is larger than an MQTT packet allows");
      }
      delta.next_seq = ++next_seq;
    }
    const std::string& payload = m.numbered ? numbered_payload : m.payload;
    if (m.supersede) {
      Impl::Use del(*impl_, Sql::kDeleteTopic, "append: supersede");
      del.BindText(1, m.topic);
      EF_ASSIGN_OR_RETURN(const std::int64_t gone, del.Run());
      delta.superseded += gone;
      pending -= gone;
    }
    Impl::Use insert(*impl_, Sql::kInsert, kOp);
    insert.Bind(1, delta.next_id++)
        .BindText(2, m.topic)
        .BindBlob(3, payload)
        .Bind(4, m.qos)
        .Bind(5, m.retain ? 1 : 0)
        .Bind(6, m.supersede ? 1 : 0)
        .Bind(7, now);
    EF_ASSIGN_OR_RETURN(const std::int64_t added, insert.Run());
    delta.appended += added;
    pending += added;
  }
  const auto max = static_cast<std::int64_t>(impl_->limits.max_messages);
  if (pending > max) {
    Impl::Use drop(*impl_, Sql::kDeleteOldest, "append: drop beyond max_messages");
    drop.Bind(1, pending - max);
    EF_ASSIGN_OR_RETURN(const std::int64_t gone, drop.Run());
    delta.dropped += gone;
    pending -= gone;
  }
  EF_ASSIGN_OR_RETURN(const std::int64_t expired, impl_->ExpireOld("append: drop beyond max_age"));
  delta.dropped += expired;
  pending -= expired;
  return txn.Commit(kOp, delta, pending);
}

Result<std::vector<OutboxRow>> Outbox::After(std::int64_t after_id, std::size_t limit) {
  std::lock_guard lock(impl_->mu);
  EF_ASSIGN_OR_RETURN(const bool expired,
                      impl_->HasExpired("read: find expired rows", impl_->ExpiryCutoff()));
  if (expired) {
    constexpr std::string_view kOp = "read: drop beyond max_age";
    Impl::Transaction txn(*impl_);
    EF_RETURN_IF_ERROR(txn.Begin(kOp));
    EF_ASSIGN_OR_RETURN(const std::int64_t gone, impl_->ExpireOld(kOp));
    Delta delta;
    delta.dropped = gone;
    EF_RETURN_IF_ERROR(txn.Commit(kOp, delta, impl_->pending - gone));
  }
  std::vector<OutboxRow> rows;
  if (limit == 0) return rows;
  Impl::Use read(*impl_, Sql::kAfter, "read");
  read.Bind(1, after_id)
      .Bind(2, static_cast<std::int64_t>(
                   std::min<std::size_t>(limit, static_cast<std::size_t>(INT64_MAX))));
  for (;;) {
    EF_ASSIGN_OR_RETURN(const bool more, read.Step());
    if (!more) break;
    OutboxRow row;
    row.id = read.Int(0);
    row.topic = read.Bytes(1);
    row.payload = read.Bytes(2);
    row.qos = static_cast<int>(read.Int(3));
    row.retain = read.Int(4) != 0;
    row.created_ms = read.Int(5);
    rows.push_back(std::move(row));
  }
  return rows;
}

Status Outbox::Ack(std::span<const std::int64_t> ids) {
  if (ids.empty()) return Ok();
  constexpr std::string_view kOp = "ack";
  std::lock_guard lock(impl_->mu);
  Impl::Transaction txn(*impl_);
  EF_RETURN_IF_ERROR(txn.Begin(kOp));
  Delta delta;
  for (std::int64_t id : ids) {
    Impl::Use del(*impl_, Sql::kDeleteId, kOp);
    del.Bind(1, id);
    EF_ASSIGN_OR_RETURN(const std::int64_t gone, del.Run());
    delta.acked += gone;
  }
  return txn.Commit(kOp, delta, impl_->pending - delta.acked);
}

Result<OutboxStats> Outbox::Stats() {
  std::lock_guard lock(impl_->mu);
  OutboxStats stats;
  stats.pending = static_cast<std::uint64_t>(impl_->pending);
  Impl::Use read(*impl_, Sql::kReadMeta, "read counters");
  for (;;) {
    EF_ASSIGN_OR_RETURN(const bool more, read.Step());
    if (!more) break;
    const std::string key = read.Bytes(0);
    const auto value = static_cast<std::uint64_t>(read.Int(1));
    if (key == "appended_total") stats.appended_total = value;
    if (key == "acked_total") stats.acked_total = value;
    if (key == "dropped_total") stats.dropped_total = value;
    if (key == "superseded_total") stats.superseded_total = value;
    if (key == "next_seq") stats.numbered_total = value - 1;
  }
  return stats;
}

std::string Outbox::SequenceStream() const { return impl_->stream; }

}  // namespace edgefleet::telemetry
