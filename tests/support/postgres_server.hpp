// A real PostgreSQL 15 server for tests of the PostgreSQL-backed collector store: initdb into a
// temp directory, postgres started on a unix socket only (no TCP), stopped at teardown.
//
// The cluster: superuser "edgefleet", trust authentication, UTF8, locale C, max_connections 50,
// small shared_buffers; durability settings (fsync, synchronous_commit, full_page_writes) keep
// their defaults, so crash tests see what production sees.
//
// Running as root: initdb and postgres refuse to run as root, so when geteuid() == 0 both run as
// Debian's `postgres` system user (setpriv). The data and socket directories are then owned by
// that user, and `dir` and those of its parents it cannot traverse (a TempDir is 0700) get o+x
// while a server uses them; their modes are restored when the last server using them is
// destroyed. Everything left in `dir` is removable by root (TempDir's cleanup).
//
// Thread safety: for the test's main thread.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace edgefleet::testing {

class BackgroundProcess;

class PostgresServer final {
 public:
  // initdb into <dir>/pgdata (skipped when it already holds a cluster, e.g. from an earlier
  // server on the same `dir`: restart tests), starts postgres with its socket in <dir>/sock (or in
  // a short directory under /tmp when that path would be too long for a unix socket) and waits up
  // to 30 s until it accepts connections. Fails the test (ADD_FAILURE, with the log) when it
  // cannot; running() is then false.
  explicit PostgresServer(const std::filesystem::path& dir);
  // Fast shutdown (SIGINT), then SIGKILL to the postmaster and its children when it has not
  // exited within 20 s: nothing is left running.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  bool running() const;
  const std::filesystem::path& data_dir() const { return data_dir_; }
  // A libpq connection URL for `database` on this server, e.g.
  // "postgresql:///edgefleet?host=/tmp/edgefleet-test-x/pg/sock&port=5432&user=edgefleet".
  std::string Url(const std::string& database = "postgres") const;
  // CREATE DATABASE `name`; returns Url(name), or an empty string after ADD_FAILURE.
  std::string CreateDatabase(const std::string& name);
  // The server's log so far (for failure messages).
  std::string Log() const;

 private:
  // `argv` as the server's user, in dir_, killed when the test process dies.
  std::vector<std::string> Command(const std::vector<std::string>& argv) const;
  bool InitDb();
  bool Start();
  void Stop();
  void GrantTraversal(const std::filesystem::path& dir);

  std::filesystem::path dir_;
  std::filesystem::path data_dir_;
  std::filesystem::path socket_dir_;
  bool own_socket_dir_ = false;  // socket_dir_ is a short /tmp directory of ours, removed at end
  uid_t run_uid_ = static_cast<uid_t>(-1);  // the postgres user when we are root, else -1
  gid_t run_gid_ = static_cast<gid_t>(-1);
  std::vector<std::filesystem::path> granted_;  // directories given o+x for this server
  std::unique_ptr<BackgroundProcess> postmaster_;
};

}  // namespace edgefleet::testing
