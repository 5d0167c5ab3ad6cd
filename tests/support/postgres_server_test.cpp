// Tests for tests/support/postgres_server: a real PostgreSQL 15 server in a temp directory,
// reached with libpq over its unix socket, and nothing left running after it.
#include "tests/support/postgres_server.hpp"

#include <libpq-fe.h>
#include <signal.h>

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <string>

#include "tests/support/temp_dir.hpp"

namespace edgefleet::testing {
namespace {

using PgConn = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using PgResult = std::unique_ptr<PGresult, decltype(&PQclear)>;

PgConn Connect(const std::string& url) {
  PgConn conn(PQconnectdb(url.c_str()), &PQfinish);
  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_OK) << url << ": " << PQerrorMessage(conn.get());
  return conn;
}

// The single value `sql` returns, or nullopt after a test failure.
std::optional<std::string> QueryValue(PGconn* conn, const std::string& sql) {
  PgResult result(PQexec(conn, sql.c_str()), &PQclear);
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK || PQntuples(result.get()) != 1) {
    ADD_FAILURE() << sql << ": " << PQerrorMessage(conn);
    return std::nullopt;
  }
  return std::string(PQgetvalue(result.get(), 0, 0));
}

// The postmaster's pid: the first line of postmaster.pid.
pid_t PostmasterPid(const PostgresServer& server) {
  const std::string text = ReadFile(server.data_dir() / "postmaster.pid");
  return static_cast<pid_t>(std::stol(text.substr(0, text.find('\n'))));
}

bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

TEST(PostgresServer, AnswersQueriesCreatesDatabasesAndLeavesNothingRunning) {
  TempDir dir;
  auto server = std::make_unique<PostgresServer>(dir / "pg");
  ASSERT_TRUE(server->running()) << server->Log();

  {
    PgConn conn = Connect(server->Url());
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK);
    EXPECT_EQ(QueryValue(conn.get(), "SELECT 1+1"), "2");
    EXPECT_EQ(QueryValue(conn.get(), "SELECT current_user"), "edgefleet");
    EXPECT_EQ(QueryValue(conn.get(), "SHOW server_encoding"), "UTF8");
    EXPECT_EQ(QueryValue(conn.get(), "SHOW listen_addresses"), "");
    EXPECT_EQ(QueryValue(conn.get(), "SHOW max_connections"), "50");
    EXPECT_EQ(QueryValue(conn.get(), "SHOW fsync"), "on");
  }

  const std::string url = server->CreateDatabase("collector");
  ASSERT_EQ(url, server->Url("collector"));
  {
    PgConn conn = Connect(url);
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK);
    EXPECT_EQ(QueryValue(conn.get(), "SELECT current_database()"), "collector");
    // A connection still open at teardown: fast shutdown must not wait for it.
    const pid_t pid = PostmasterPid(*server);
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(ProcessExists(pid));
    server.reset();
    EXPECT_FALSE(ProcessExists(pid)) << "postmaster " << pid << " still running";
  }
}

TEST(PostgresServer, CreateDatabaseReportsAnExistingName) {
  TempDir dir;
  PostgresServer server(dir / "pg");
  ASSERT_TRUE(server.running()) << server.Log();
  ASSERT_FALSE(server.CreateDatabase("twice").empty());
  std::string second;
  EXPECT_NONFATAL_FAILURE(second = server.CreateDatabase("twice"), "already exists");
  EXPECT_TRUE(second.empty());
}

TEST(PostgresServer, TwoServersRunAtOnceInDifferentDirectories) {
  TempDir dir_a;
  TempDir dir_b;
  PostgresServer a(dir_a / "pg");
  PostgresServer b(dir_b / "pg");
  ASSERT_TRUE(a.running()) << a.Log();
  ASSERT_TRUE(b.running()) << b.Log();
  EXPECT_NE(a.Url(), b.Url());
  EXPECT_NE(PostmasterPid(a), PostmasterPid(b));

  // Each has its own cluster: a database made on one is not on the other.
  ASSERT_FALSE(a.CreateDatabase("only_on_a").empty());
  PgConn on_a = Connect(a.Url());
  PgConn on_b = Connect(b.Url());
  ASSERT_EQ(PQstatus(on_a.get()), CONNECTION_OK);
  ASSERT_EQ(PQstatus(on_b.get()), CONNECTION_OK);
  const std::string count = "SELECT count(*) FROM pg_database WHERE datname = 'only_on_a'";
  EXPECT_EQ(QueryValue(on_a.get(), count), "1");
  EXPECT_EQ(QueryValue(on_b.get(), count), "0");
}

TEST(PostgresServer, RestartsOnTheSameDirectoryWithTheDataKept) {
  TempDir dir;
  {
    PostgresServer server(dir / "pg");
    ASSERT_TRUE(server.running()) << server.Log();
    PgConn conn = Connect(server.Url());
    PgResult r(PQexec(conn.get(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"),
               &PQclear);
    ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQerrorMessage(conn.get());
  }
  PostgresServer again(dir / "pg");
  ASSERT_TRUE(again.running()) << again.Log();
  PgConn conn = Connect(again.Url());
  EXPECT_EQ(QueryValue(conn.get(), "SELECT v FROM kept"), "7");
}

}  // namespace
}  // namespace edgefleet::testing
