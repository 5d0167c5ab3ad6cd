#include "tests/support/postgres_server.hpp"

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/background_process.hpp"
#include "tests/support/process.hpp"

namespace fs = std::filesystem;

namespace edgefleet::testing {
namespace {

constexpr const char* kBinDir = "/usr/lib/postgresql/15/bin";
constexpr const char* kSuperuser = "edgefleet";
constexpr int kPort = 5432;  // only names the socket file: there is no TCP listener
constexpr auto kInitDbTimeout = std::chrono::seconds(60);
constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kStopTimeout = std::chrono::seconds(20);
// sun_path holds 108 bytes with the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;

using PgConn = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using PgResult = std::unique_ptr<PGresult, decltype(&PQclear)>;
using PgString = std::unique_ptr<char, decltype(&PQfreemem)>;

// Directories given o+x so the postgres user can reach a data directory, with their original
// mode and how many live servers need them: restored when the last one goes.
struct Grant {
  mode_t original_mode;
  int users;
};
std::map<fs::path, Grant>& Grants() {
  static std::map<fs::path, Grant> grants;
  return grants;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Percent-encodes everything but unreserved characters (and '/' when `keep_slash`).
std::string UrlEncode(const std::string& text, bool keep_slash) {
  std::string out;
  for (unsigned char c : text) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
    if (plain) {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

// Creates `path` (mode 0700) when missing and, when `uid` is set, hands it to uid:gid.
bool MakeOwnedDir(const fs::path& path, uid_t uid, gid_t gid) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    ADD_FAILURE() << "postgres server: cannot create " << path << ": " << std::strerror(errno);
    return false;
  }
  if (uid != static_cast<uid_t>(-1) && chown(path.c_str(), uid, gid) != 0) {
    ADD_FAILURE() << "postgres server: cannot chown " << path << ": " << std::strerror(errno);
    return false;
  }
  return true;
}

// The pids whose parent is `parent` (from /proc).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = ReadAll(entry.path() / "stat");
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so parse after the last ')'.
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent) {
      children.push_back(static_cast<pid_t>(std::stoi(name)));
    }
  }
  return children;
}

// True when `pid` has gone, or is a zombie (its new parent reaps it, not us).
bool Gone(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  const std::string stat = ReadAll("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close == std::string::npos || stat.find(" Z ", close) == close + 1;
}

}  // namespace

PostgresServer::PostgresServer(const fs::path& dir)
    : dir_(fs::absolute(dir)), data_dir_(dir_ / "pgdata") {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) {
    ADD_FAILURE() << "postgres server: cannot create " << dir_ << ": " << ec.message();
    return;
  }
  if (geteuid() == 0) {
    const passwd* user = getpwnam("postgres");
    if (user == nullptr) {
      ADD_FAILURE() << "postgres server: running as root needs the `postgres` system user "
                       "(Debian's postgresql-common), which initdb and postgres run as";
      return;
    }
    run_uid_ = user->pw_uid;
    run_gid_ = user->pw_gid;
    GrantTraversal(dir_);
  }
  socket_dir_ = dir_ / "sock";
  if ((socket_dir_ / (".s.PGSQL." + std::to_string(kPort))).string().size() > kMaxSocketPath) {
    std::string pattern = "/tmp/edgefleet-pg-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "postgres server: mkdtemp " << pattern << ": " << std::strerror(errno);
      return;
    }
    socket_dir_ = pattern;
    own_socket_dir_ = true;
  }
  if (!MakeOwnedDir(socket_dir_, run_uid_, run_gid_) || !InitDb()) return;
  Start();
}

PostgresServer::~PostgresServer() {
  Stop();
  std::error_code ec;
  if (own_socket_dir_) fs::remove_all(socket_dir_, ec);
  for (const auto& dir : granted_) {
    auto it = Grants().find(dir);
    if (it == Grants().end() || --it->second.users > 0) continue;
    chmod(dir.c_str(), it->second.original_mode);  // may be gone already: nothing to restore
    Grants().erase(it);
  }
}

bool PostgresServer::running() const { return postmaster_ != nullptr && postmaster_->Running(); }

std::string PostgresServer::Url(const std::string& database) const {
  return "postgresql:///" + UrlEncode(database, false) +
         "?host=" + UrlEncode(socket_dir_.string(), true) + "&port=" + std::to_string(kPort) +
         "&user=" + kSuperuser;
}

std::string PostgresServer::CreateDatabase(const std::string& name) {
  PgConn conn(PQconnectdb(Url().c_str()), &PQfinish);
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    ADD_FAILURE() << "postgres server: cannot connect to " << Url() << ": "
                  << (conn ? PQerrorMessage(conn.get()) : "out of memory");
    return {};
  }
  PgString ident(PQescapeIdentifier(conn.get(), name.data(), name.size()), &PQfreemem);
  if (ident == nullptr) {
    ADD_FAILURE() << "postgres server: bad database name \"" << name
                  << "\": " << PQerrorMessage(conn.get());
    return {};
  }
  const std::string sql = std::string("CREATE DATABASE ") + ident.get();
  PgResult result(PQexec(conn.get(), sql.c_str()), &PQclear);
  if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
    ADD_FAILURE() << "postgres server: " << sql << ": " << PQerrorMessage(conn.get());
    return {};
  }
  return Url(name);
}

std::string PostgresServer::Log() const { return ReadAll(dir_ / "postgres.log"); }

// As the postgres user when we are root; in `dir_` (a cwd the server user can reach: postgres
// resolves its own path from there); killed with the test process (pdeathsig) so a crashed test
// leaves no server behind.
std::vector<std::string> PostgresServer::Command(const std::vector<std::string>& argv) const {
  std::vector<std::string> command = {"/usr/bin/setpriv"};
  if (run_uid_ != static_cast<uid_t>(-1)) {
    command.insert(command.end(), {"--reuid=" + std::to_string(run_uid_),
                                   "--regid=" + std::to_string(run_gid_), "--init-groups"});
  }
  command.insert(command.end(), {"--pdeathsig=KILL", "--", "/usr/bin/env", "-C", dir_.string()});
  command.insert(command.end(), argv.begin(), argv.end());
  return command;
}

bool PostgresServer::InitDb() {
  std::error_code ec;
  if (fs::exists(data_dir_ / "PG_VERSION", ec)) return true;  // a cluster from an earlier server
  if (!MakeOwnedDir(data_dir_, run_uid_, run_gid_)) return false;
  // --no-sync only skips initdb's final flush of the new files; the server keeps fsync on.
  const ProcessResult r =
      RunProcess(Command({std::string(kBinDir) + "/initdb", "--pgdata=" + data_dir_.string(),
                          std::string("--username=") + kSuperuser, "--auth=trust",
                          "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"}),
                 kInitDbTimeout);
  if (r.exit_code != 0 || r.timed_out) {
    ADD_FAILURE() << "postgres server: initdb " << data_dir_ << " failed (exit " << r.exit_code
                  << (r.timed_out ? ", timed out" : "") << "): " << r.err << r.out;
    return false;
  }
  std::ofstream conf(data_dir_ / "postgresql.conf", std::ios::app);
  conf << "\n# tests/support/postgres_server: unix socket only (-k on the command line), light\n"
       << "listen_addresses = ''\n"
       << "port = " << kPort << "\n"
       << "max_connections = 50\n"
       << "shared_buffers = 16MB\n";
  if (!conf) {
    ADD_FAILURE() << "postgres server: cannot append to " << data_dir_ / "postgresql.conf";
    return false;
  }
  return true;
}

bool PostgresServer::Start() {
  postmaster_ =
      std::make_unique<BackgroundProcess>(Command({std::string(kBinDir) + "/postgres", "-D",
                                                   data_dir_.string(), "-k", socket_dir_.string()}),
                                          dir_ / "postgres.log");
  if (postmaster_->pid() <= 0) {
    postmaster_.reset();
    return false;
  }
  const std::string url = Url();
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!postmaster_->Running()) {
      ADD_FAILURE() << "postgres server exited at start; log:\n" << Log();
      postmaster_.reset();
      return false;
    }
    if (PQping(url.c_str()) == PQPING_OK) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "postgres server did not accept connections at " << url << " within "
                << kStartTimeout.count() << " s; log:\n"
                << Log();
  Stop();
  return false;
}

void PostgresServer::Stop() {
  if (postmaster_ == nullptr) return;
  postmaster_->Signal(SIGINT);  // fast shutdown: clients are disconnected, then a checkpoint
  if (!postmaster_->Wait(kStopTimeout)) {
    ADD_FAILURE() << "postgres server did not exit within " << kStopTimeout.count()
                  << " s of SIGINT; killing it. Log:\n"
                  << Log();
    // Backends are session leaders of their own (setsid), out of the postmaster's group.
    const std::vector<pid_t> children = ChildrenOf(postmaster_->pid());
    postmaster_->KillGroup();
    for (pid_t child : children) kill(child, SIGKILL);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (pid_t child : children) {
      while (!Gone(child) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }
  postmaster_.reset();
}

// postgres must reach `dir` as its own user: every directory on the way that user cannot
// traverse gets o+x (search only, no listing) for as long as a server needs it.
void PostgresServer::GrantTraversal(const fs::path& dir) {
  std::error_code ec;
  fs::path path = fs::canonical(dir, ec);
  if (ec) {
    ADD_FAILURE() << "postgres server: " << dir << ": " << ec.message();
    return;
  }
  for (; path != path.root_path(); path = path.parent_path()) {
    auto it = Grants().find(path);
    if (it != Grants().end()) {
      ++it->second.users;
      granted_.push_back(path);
      continue;
    }
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      ADD_FAILURE() << "postgres server: stat " << path << ": " << std::strerror(errno);
      return;
    }
    const bool traversable =
        (st.st_mode & S_IXOTH) != 0 || (st.st_uid == run_uid_ && (st.st_mode & S_IXUSR) != 0);
    if (traversable) continue;
    const mode_t original = st.st_mode & 07777;
    if (chmod(path.c_str(), original | S_IXOTH) != 0) {
      ADD_FAILURE() << "postgres server: chmod o+x " << path << ": " << std::strerror(errno);
      return;
    }
    Grants().emplace(path, Grant{original, 1});
    granted_.push_back(path);
  }
}

}  // namespace edgefleet::testing
