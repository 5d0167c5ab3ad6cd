#include "updater/journal.hpp"

#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/temp_dir.hpp"
#include "tests/updater/sources.hpp"

namespace edgefleet::updater {
namespace {

using ::edgefleet::testing::TempDir;
using ::edgefleet::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using State = DeploymentState;

// Raw access to the file, to look at what the Journal API does not show (pragmas, tables) and to
// forge a newer schema.
class RawDb final {
 public:
  explicit RawDb(const std::filesystem::path& path) {
    sqlite3* raw = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    db_.reset(raw);
    sqlite3_busy_timeout(raw, 5000);
  }
  // The first column of every row, as text ("" for NULL).
  std::vector<std::string> Column(const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_.get());
      return out;
    }
    std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> stmt(raw, &sqlite3_finalize);
    int rc;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(raw, 0);
      out.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db_.get());
    return out;
  }
  std::string One(const std::string& sql) {
    std::vector<std::string> rows = Column(sql);
    EXPECT_EQ(rows.size(), 1u) << sql;
    return rows.empty() ? "" : rows[0];
  }
  void Exec(const std::string& sql) {
    EXPECT_EQ(sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_.get());
  }

 private:
  std::unique_ptr<sqlite3, decltype(&sqlite3_close_v2)> db_{nullptr, &sqlite3_close_v2};
};

DeploymentRequest Request(const std::string& version, const std::string& model = "digits") {
  DeploymentRequest request;
  request.model = model;
  request.version = version;
  request.bundle_url = "http://127.0.0.1:8080/" + model + "-" + version + ".efb";
  request.bundle_size = 12345;
  request.bundle_sha256 = std::string(64, 'a');
  request.serial = 7;
  request.target = "device/box-1";
  return request;
}

Journal OpenOrDie(const std::filesystem::path& path) {
  Result<Journal> journal = Journal::Open(path);
  if (!journal) {
    ADD_FAILURE() << journal.error().message;
    std::abort();
  }
  return std::move(journal).value();
}

// Drives a deployment through the non-terminal states up to kWatching.
void AdvanceToWatching(Journal& journal, std::int64_t id) {
  for (State state : {State::kDownloading, State::kVerifying, State::kUnpacking, State::kLoading,
                      State::kParity, State::kActivating, State::kWatching}) {
    EF_ASSERT_OK(journal.RecordTransition(id, state));
  }
}

// Installs `version` all the way to kCommitted; returns the deployment.
Deployment Install(Journal& journal, const std::string& version) {
  Result<Deployment> begun = journal.BeginDeployment(Request(version));
  EXPECT_TRUE(begun) << begun.error().message;
  AdvanceToWatching(journal, begun->id);
  Result<Deployment> done = journal.Finish(begun->id, State::kCommitted, "watch passed");
  EXPECT_TRUE(done) << done.error().message;
  return *done;
}

class JournalTest : public ::testing::Test {
 protected:
  std::filesystem::path db_path() const { return dir_ / "journal.db"; }
  TempDir dir_;
};

TEST(DeploymentStateTest, NamesRoundTripAndTerminalsAreTheFourEndings) {
  std::vector<std::string> terminal;
  for (State state : AllDeploymentStates()) {
    Result<State> parsed = ParseDeploymentState(ToString(state));
    EF_ASSERT_OK(parsed);
    EXPECT_EQ(*parsed, state);
    if (IsTerminal(state)) terminal.emplace_back(ToString(state));
  }
  EXPECT_EQ(AllDeploymentStates().size(), 13u);
  EXPECT_THAT(terminal, ElementsAre("committed", "rolled_back", "failed", "abandoned"));
  Result<State> bad = ParseDeploymentState("Downloading");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "deployment state: unknown \"Downloading\"");
}

TEST_F(JournalTest, MigratesAnEmptyFileToTheLatestSchemaInWalMode) {
  { Journal journal = OpenOrDie(db_path()); }
  RawDb raw(db_path());
  EXPECT_EQ(raw.One("SELECT MAX(version) FROM schema_version"),
            std::to_string(Journal::LatestSchemaVersion()));
  EXPECT_EQ(raw.One("SELECT name FROM schema_version WHERE version = 1"), "0001_initial.sql");
  EXPECT_THAT(raw.Column("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE "
                         "'sqlite_%' ORDER BY name"),
              ElementsAre("deployments", "models", "schema_version", "serials", "transitions"));
  // WAL is a property of the file: a fresh connection sees it.
  EXPECT_EQ(raw.One("PRAGMA journal_mode"), "wal");
}

TEST_F(JournalTest, ReopeningKeepsEverythingAndDoesNotMigrateAgain) {
  std::int64_t id = 0;
  {
    Journal journal = OpenOrDie(db_path());
    Install(journal, "1.0.0");
    Result<Deployment> begun = journal.BeginDeployment(Request("1.1.0"));
    EF_ASSERT_OK(begun);
    id = begun->id;
    EF_ASSERT_OK(journal.RecordTransition(id, State::kDownloading, "fetching"));
    EF_ASSERT_OK(journal.RecordDownloadBytes(id, 4096));
    EXPECT_EQ(journal.AcceptSerial("device/box-1", 7, "d7").value(),
              Journal::SerialVerdict::kAccepted);
  }
  Journal journal = OpenOrDie(db_path());
  Result<ModelRecord> record = journal.ReadModel("digits");
  EF_ASSERT_OK(record);
  ASSERT_TRUE(record->active);
  EXPECT_EQ(record->active->slot, Slot::kA);
  EXPECT_EQ(record->active->version, "1.0.0");
  EXPECT_EQ(record->highest_version, "1.0.0");
  Result<std::vector<Deployment>> in_progress = journal.InProgress();
  EF_ASSERT_OK(in_progress);
  ASSERT_EQ(in_progress->size(), 1u);
  const Deployment& d = in_progress->front();
  EXPECT_EQ(d.id, id);
  EXPECT_EQ(d.state, State::kDownloading);
  EXPECT_EQ(d.slot, Slot::kB);
  EXPECT_EQ(d.reason, "fetching");
  EXPECT_EQ(d.download_bytes, 4096u);
  EXPECT_EQ(d.request.bundle_url, "http://127.0.0.1:8080/digits-1.1.0.efb");
  EXPECT_EQ(d.request.bundle_size, 12345u);
  EXPECT_EQ(d.request.serial, 7u);
  EXPECT_EQ(d.request.target, "device/box-1");
  EXPECT_EQ(journal.LastSerial("device/box-1").value(), std::optional<std::uint64_t>(7));
  RawDb raw(db_path());
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM schema_version"),
            std::to_string(Journal::LatestSchemaVersion()));
}

TEST_F(JournalTest, RefusesASecondDeploymentInProgressForTheSameModel) {
  Journal journal = OpenOrDie(db_path());
  Result<Deployment> first = journal.BeginDeployment(Request("1.0.0"));
  EF_ASSERT_OK(first);
  EF_ASSERT_OK(journal.RecordTransition(first->id, State::kDownloading));
  Result<Deployment> second = journal.BeginDeployment(Request("1.1.0"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(second.error().message,
            db_path().string() +
                ": begin deployment 'digits' 1.1.0: a deployment is already in "
                "progress (id " +
                std::to_string(first->id) + ", state downloading)");
  // Another model is independent; after the first ends, the model accepts a new one.
  EF_ASSERT_OK(journal.BeginDeployment(Request("3.0.0", "faces")));
  EF_ASSERT_OK(journal.Finish(first->id, State::kFailed, "parity: top-1 0.41 < 0.95"));
  EF_ASSERT_OK(journal.BeginDeployment(Request("1.1.0")));
}

TEST_F(JournalTest, TransitionsAreOrderedAndSurviveReopening) {
  std::int64_t id = 0;
  {
    Journal journal = OpenOrDie(db_path());
    Result<Deployment> begun = journal.BeginDeployment(Request("1.0.0"));
    EF_ASSERT_OK(begun);
    id = begun->id;
    EF_ASSERT_OK(journal.RecordTransition(id, State::kDownloading));
    EF_ASSERT_OK(journal.RecordTransition(id, State::kDownloading, "resumed after restart"));
    EF_ASSERT_OK(journal.RecordTransition(id, State::kVerifying));
    EF_ASSERT_OK(journal.Finish(id, State::kFailed, "sha256 mismatch"));
  }
  Journal journal = OpenOrDie(db_path());
  Result<std::vector<Transition>> transitions = journal.Transitions(id);
  EF_ASSERT_OK(transitions);
  ASSERT_EQ(transitions->size(), 5u);
  const std::vector<std::pair<std::optional<State>, State>> expected = {
      {std::nullopt, State::kPending},
      {State::kPending, State::kDownloading},
      {State::kDownloading, State::kDownloading},
      {State::kDownloading, State::kVerifying},
      {State::kVerifying, State::kFailed}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const Transition& t = (*transitions)[i];
    EXPECT_EQ(t.from, expected[i].first) << i;
    EXPECT_EQ(t.to, expected[i].second) << i;
    EXPECT_EQ(t.deployment_id, id);
    if (i > 0) {
      EXPECT_GT(t.seq, (*transitions)[i - 1].seq);
      EXPECT_GE(t.at_ms, (*transitions)[i - 1].at_ms);
    }
  }
  EXPECT_EQ((*transitions)[2].reason, "resumed after restart");
  EXPECT_EQ((*transitions)[4].reason, "sha256 mismatch");
  Result<Deployment> finished = journal.ReadDeployment(id);
  EF_ASSERT_OK(finished);
  EXPECT_EQ(finished->state, State::kFailed);
  EXPECT_EQ(finished->reason, "sha256 mismatch");
  EXPECT_TRUE(journal.InProgress()->empty());

  // History is append-only, even for someone with a raw connection.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  EXPECT_NE(sqlite3_exec(db, "DELETE FROM transitions", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_THAT(sqlite3_errmsg(db), HasSubstr("append-only"));
  sqlite3_close(db);
}

TEST_F(JournalTest, RefusesTransitionsOutsideTheContract) {
  Journal journal = OpenOrDie(db_path());
  Result<Deployment> begun = journal.BeginDeployment(Request("1.0.0"));
  EF_ASSERT_OK(begun);
  const std::int64_t id = begun->id;
  Status terminal = journal.RecordTransition(id, State::kCommitted);
  ASSERT_FALSE(terminal);
  EXPECT_EQ(terminal.error().message, db_path().string() + ": record transition of deployment " +
                                          std::to_string(id) +
                                          " to committed: a terminal state is entered with Finish");
  Result<Deployment> not_terminal = journal.Finish(id, State::kParity);
  ASSERT_FALSE(not_terminal);
  EXPECT_EQ(not_terminal.error().code, ErrorCode::kInvalidArgument);
  EF_ASSERT_OK(journal.Finish(id, State::kAbandoned, "superseded by serial 8"));
  Status after_end = journal.RecordTransition(id, State::kDownloading);
  ASSERT_FALSE(after_end);
  EXPECT_THAT(after_end.error().message, HasSubstr("is not in progress (state abandoned)"));
  Status unknown = journal.RecordTransition(9999, State::kDownloading);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(unknown.error().message,
            db_path().string() +
                ": record transition of deployment 9999 to downloading: no deployment 9999");
  EXPECT_EQ(journal.Transitions(id)->size(), 2u);  // refusals wrote nothing
}

TEST_F(JournalTest, FinishMovesActivePreviousAndHighestTogether) {
  Journal journal = OpenOrDie(db_path());
  const Deployment v1 = Install(journal, "1.0.0");
  EXPECT_EQ(v1.slot, Slot::kA);
  const Deployment v2 = Install(journal, "1.2.0");
  EXPECT_EQ(v2.slot, Slot::kB);
  Result<ModelRecord> record = journal.ReadModel("digits");
  EF_ASSERT_OK(record);
  ASSERT_TRUE(record->active && record->previous);
  EXPECT_EQ(record->active->slot, Slot::kB);
  EXPECT_EQ(record->active->version, "1.2.0");
  EXPECT_EQ(record->active->sha256, std::string(64, 'a'));
  EXPECT_EQ(record->previous->slot, Slot::kA);
  EXPECT_EQ(record->previous->version, "1.0.0");
  EXPECT_EQ(record->highest_version, "1.2.0");

  // A candidate that is rolled back changes nothing but, having been unpacked over slot A, the
  // previous model is gone.
  Result<Deployment> v3 = journal.BeginDeployment(Request("1.10.0"));
  EF_ASSERT_OK(v3);
  EXPECT_EQ(v3->slot, Slot::kA);
  EXPECT_FALSE(journal.ReadModel("digits")->previous);
  AdvanceToWatching(journal, v3->id);
  EF_ASSERT_OK(journal.RecordTransition(v3->id, State::kRollingBack, "p95 latency 2.3x"));
  EF_ASSERT_OK(journal.Finish(v3->id, State::kRolledBack, "p95 latency 2.3x"));
  record = journal.ReadModel("digits");
  EXPECT_EQ(record->active->version, "1.2.0");
  EXPECT_EQ(record->highest_version, "1.2.0");

  // 1.10.0 > 1.2.0 in semver though not as text: highest follows semver.
  Install(journal, "1.10.0");
  EXPECT_EQ(journal.ReadModel("digits")->highest_version, "1.10.0");
}

TEST_F(JournalTest, RefusesAVersionBelowTheHighestUnlessDowngradeIsAllowed) {
  Journal journal = OpenOrDie(db_path());
  Install(journal, "2.0.0");
  Result<Deployment> old = journal.BeginDeployment(Request("1.9.9"));
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error().message,
            db_path().string() +
                ": begin deployment 'digits' 1.9.9: version 1.9.9 is below the "
                "highest committed 2.0.0 and the desired state does not allow "
                "a downgrade");
  DeploymentRequest allowed = Request("1.9.9");
  allowed.allow_downgrade = true;
  Result<Deployment> begun = journal.BeginDeployment(allowed);
  EF_ASSERT_OK(begun);
  EXPECT_TRUE(begun->request.allow_downgrade);
  EF_ASSERT_OK(journal.Finish(begun->id, State::kCommitted));
  Result<ModelRecord> record = journal.ReadModel("digits");
  EXPECT_EQ(record->active->version, "1.9.9");
  EXPECT_EQ(record->highest_version, "2.0.0");  // never lowered
  Result<Deployment> bad = journal.BeginDeployment(Request("two"));
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message,
              StartsWith(db_path().string() + ": begin deployment 'digits' two: version: "));
}

TEST_F(JournalTest, ManualRollbackSwapsActiveAndPrevious) {
  Journal journal = OpenOrDie(db_path());
  Result<ModelRecord> none = journal.RollBackToPrevious("digits");
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().message, HasSubstr("no previous model to roll back to"));
  Install(journal, "1.0.0");
  Install(journal, "1.1.0");
  Result<ModelRecord> record = journal.RollBackToPrevious("digits");
  EF_ASSERT_OK(record);
  EXPECT_EQ(record->active->version, "1.0.0");
  EXPECT_EQ(record->active->slot, Slot::kA);
  EXPECT_EQ(record->previous->version, "1.1.0");
  EXPECT_EQ(record->highest_version, "1.1.0");
  EXPECT_EQ(journal.ReadModel("digits")->active->version, "1.0.0");
}

TEST_F(JournalTest, SerialsOnlyIncrease) {
  Journal journal = OpenOrDie(db_path());
  EXPECT_EQ(journal.LastSerial("group/lab").value(), std::nullopt);
  using V = Journal::SerialVerdict;
  EXPECT_EQ(journal.AcceptSerial("group/lab", 5, "aa").value(), V::kAccepted);
  EXPECT_EQ(journal.AcceptSerial("group/lab", 5, "aa").value(), V::kSameDocument);  // re-read
  EXPECT_EQ(journal.AcceptSerial("group/lab", 5, "bb").value(), V::kReplay);        // other content
  EXPECT_EQ(journal.AcceptSerial("group/lab", 4, "aa").value(), V::kReplay);        // older
  EXPECT_EQ(journal.LastSerial("group/lab").value(), std::optional<std::uint64_t>(5));
  EXPECT_EQ(journal.AcceptSerial("group/lab", 6, "cc").value(), V::kAccepted);
  EXPECT_EQ(journal.AcceptSerial("group/lab", 5, "aa").value(), V::kReplay);       // now older
  EXPECT_EQ(journal.AcceptSerial("device/box-1", 1, "aa").value(), V::kAccepted);  // per target
  EXPECT_EQ(journal.LastSerial("group/lab").value(), std::optional<std::uint64_t>(6));
  auto huge = journal.AcceptSerial("group/lab", std::uint64_t{1} << 63, "aa");
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JournalTest, MigratesASchemaOneJournalKeepingItsSerials) {
  // A journal as the first release wrote it: migration 0001 only, one serial accepted.
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db_path().c_str(), &raw), SQLITE_OK);
    std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
    // From the source tree: __FILE__ is relative to the build directory (../../tests/...), so
    // paths built from it break when the build directory is not exactly one level deep.
    const auto sql_path =
        std::filesystem::path(EDGEFLEET_SOURCE_DIR) / "updater" / "migrations" / "0001_initial.sql";
    const std::string schema_one =
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_ms INTEGER NOT NULL) STRICT;" +
        ::edgefleet::testing::ReadFile(sql_path) +
        ";INSERT INTO schema_version VALUES (1, '0001_initial.sql', 0);"
        "INSERT INTO serials (target, serial) VALUES ('group/lab', 9);";
    ASSERT_EQ(sqlite3_exec(raw, schema_one.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(raw);
  }
  Journal journal = OpenOrDie(db_path());
  EXPECT_EQ(journal.LastSerial("group/lab").value(), std::optional<std::uint64_t>(9));
  using V = Journal::SerialVerdict;
  // The old row has no digest: nothing can pass for the document it recorded.
  EXPECT_EQ(journal.AcceptSerial("group/lab", 9, "aa").value(), V::kReplay);
  EXPECT_EQ(journal.AcceptSerial("group/lab", 10, "aa").value(), V::kAccepted);
  RawDb raw(db_path());
  EXPECT_EQ(raw.One("SELECT MAX(version) FROM schema_version"), "2");
}

TEST_F(JournalTest, RefusesADatabaseFromANewerSchema) {
  { Journal journal = OpenOrDie(db_path()); }
  {
    RawDb raw(db_path());
    raw.Exec("INSERT INTO schema_version (version, name, applied_ms) VALUES (99, 'future', 0)");
  }
  Result<Journal> journal = Journal::Open(db_path());
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(journal.error().message,
            db_path().string() + ": open: schema version 99 is newer than this build supports (" +
                std::to_string(Journal::LatestSchemaVersion()) +
                "); refusing to touch a file written by a newer build");
}

TEST_F(JournalTest, AFileThatIsNotADatabaseGivesAClearError) {
  std::string garbage(8192, '\0');
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 131 + 7);
  WriteFile(db_path(), garbage);
  Result<Journal> journal = Journal::Open(db_path());
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.error().code, ErrorCode::kIntegrity);
  EXPECT_EQ(journal.error().message,
            db_path().string() + ": open: set journal_mode=WAL: file is not a database");
  EXPECT_EQ(testing::ReadFile(db_path()), garbage);  // and it was left alone

  Result<Journal> missing_dir = Journal::Open(dir_ / "no" / "such" / "journal.db");
  ASSERT_FALSE(missing_dir);
  EXPECT_EQ(missing_dir.error().code, ErrorCode::kIo);
  EXPECT_THAT(missing_dir.error().message,
              StartsWith((dir_ / "no" / "such" / "journal.db").string() + ": open: "));
}

// Crash safety. Fault injection: a forked child runs the real Journal against the file and writes
// one byte to a pipe after every call that returned (each call appends exactly one transition).
// The parent waits for a varying number of acknowledgements and then SIGKILLs the child at once,
// so the kill lands at an arbitrary point of the following calls: inside SQLite's WAL append, its
// fsync, the checkpoint, or between statements of a transaction. After each kill the parent opens
// the file and checks that it is consistent (integrity_check; every deployment's state is the
// target of its last transition; at most one in progress; active/previous/highest match the
// committed history) and durable (every acknowledged call is there; at most one more). The next
// child "restarts the agent": it abandons what was in progress, as recovery would, and goes on.
TEST_F(JournalTest, SurvivesSigkillAtArbitraryPointsOfTransitions) {
  constexpr int kKills = 25;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int next_minor = 0;  // versions 1.<minor>.0 increase across children
  for (int kill_index = 0; kill_index < kKills; ++kill_index) {
    std::int64_t rows_before = 0;
    {
      Journal journal = OpenOrDie(db_path());
      RawDb raw(db_path());
      rows_before = std::stoll(raw.One("SELECT COUNT(*) FROM transitions"));
      next_minor = std::stoi(raw.One("SELECT COUNT(*) FROM deployments")) + 1;
    }
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      auto ack = [&] {
        const char byte = 1;
        if (::write(fds[1], &byte, 1) != 1) ::_exit(5);
      };
      const auto child_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      Result<Journal> opened = Journal::Open(db_path());
      if (!opened) ::_exit(2);
      Journal& journal = *opened;
      Result<std::vector<Deployment>> in_progress = journal.InProgress();
      if (!in_progress) ::_exit(3);
      for (const Deployment& d : *in_progress) {
        if (!journal.Finish(d.id, State::kAbandoned, "agent restarted")) ::_exit(3);
        ack();
      }
      for (int minor = next_minor; std::chrono::steady_clock::now() < child_deadline; ++minor) {
        Result<Deployment> begun =
            journal.BeginDeployment(Request("1." + std::to_string(minor) + ".0"));
        if (!begun) ::_exit(4);
        ack();
        for (State state :
             {State::kDownloading, State::kVerifying, State::kUnpacking, State::kLoading,
              State::kParity, State::kActivating, State::kWatching}) {
          if (!journal.RecordTransition(begun->id, state, "step")) ::_exit(4);
          ack();
        }
        const State end = minor % 3 == 0 ? State::kRolledBack : State::kCommitted;
        if (!journal.Finish(begun->id, end, "done")) ::_exit(4);
        ack();
      }
      ::_exit(6);  // never reached within the test's time unless something hangs
    }
    ::close(fds[1]);
    // Kill after 1..~40 acknowledged calls, varied so kills fall on every kind of call.
    const int wait_for = 1 + (kill_index * 7) % 41;
    int acked = 0;
    char buffer[256];
    while (acked < wait_for) {
      pollfd pfd{fds[0], POLLIN, 0};
      ASSERT_EQ(::poll(&pfd, 1, 10000), 1) << "child stalled";
      const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
      ASSERT_GT(n, 0) << "child exited early";
      acked += static_cast<int>(n);
    }
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child exited with " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ssize_t n;
    while ((n = ::read(fds[0], buffer, sizeof buffer)) > 0) acked += static_cast<int>(n);
    ::close(fds[0]);

    // The database opens and is consistent.
    Journal journal = OpenOrDie(db_path());
    RawDb raw(db_path());
    ASSERT_EQ(raw.One("PRAGMA integrity_check"), "ok");
    ASSERT_TRUE(raw.Column("PRAGMA foreign_key_check").empty());
    const std::int64_t rows = std::stoll(raw.One("SELECT COUNT(*) FROM transitions"));
    EXPECT_GE(rows - rows_before, acked) << "an acknowledged transition was lost";
    EXPECT_LE(rows - rows_before, acked + 1);
    EXPECT_EQ(raw.One("SELECT COUNT(*) FROM deployments d WHERE d.state <> (SELECT to_state "
                      "FROM transitions t WHERE t.deployment_id = d.id ORDER BY seq DESC LIMIT 1)"),
              "0");
    EXPECT_EQ(raw.One("SELECT COUNT(*) FROM deployments WHERE in_progress <> (state NOT IN "
                      "('committed', 'rolled_back', 'failed', 'abandoned'))"),
              "0");
    ASSERT_LE(journal.InProgress()->size(), 1u);
    const std::vector<std::string> committed =
        raw.Column("SELECT version FROM deployments WHERE state = 'committed' ORDER BY id");
    Result<ModelRecord> record = journal.ReadModel("digits");
    EF_ASSERT_OK(record);
    if (committed.empty()) {
      EXPECT_FALSE(record->active);
    } else {
      ASSERT_TRUE(record->active);
      EXPECT_EQ(record->active->version, committed.back());
      EXPECT_EQ(record->highest_version, committed.back());  // versions only grow here
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "crash loop took too long";
  }
  Journal journal = OpenOrDie(db_path());
  RawDb raw(db_path());
  EXPECT_GT(std::stoi(raw.One("SELECT COUNT(*) FROM deployments WHERE state = 'committed'")), 0);
  EXPECT_GT(std::stoi(raw.One("SELECT COUNT(*) FROM deployments WHERE state = 'abandoned'")), 0);
}

}  // namespace
}  // namespace edgefleet::updater
