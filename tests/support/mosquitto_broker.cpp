#include "tests/support/mosquitto_broker.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/process.hpp"

namespace fs = std::filesystem;

namespace edgefleet::testing {
namespace {

constexpr const char* kMosquitto = "/usr/sbin/mosquitto";
constexpr auto kStartTimeout = std::chrono::seconds(10);
// A restart may find the port still held (TIME_WAIT, or the old socket not yet closed).
constexpr auto kBindRetryFor = std::chrono::seconds(5);

// ---- TestPki ----

// Runs openssl; on failure fails the test with its output and returns false.
bool OpenSsl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = RunProcess(argv, std::chrono::seconds(30));
  if (r.exit_code == 0 && !r.timed_out) return true;
  std::string command;
  for (const auto& a : argv) command += a + " ";
  ADD_FAILURE() << "test PKI: `" << command << "` failed (exit " << r.exit_code << "): " << r.err
                << r.out;
  return false;
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

// A self-signed CA with an EC P-256 key.
bool MakeCa(const fs::path& cert, const fs::path& key, const std::string& cn) {
  return OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key.string(), "-out", cert.string(), "-days", "3650", "-subj",
                  "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                  "keyUsage=critical,keyCertSign,cRLSign"});
}

// A leaf certificate for `cn` signed by the CA, with the extensions in `extensions` (one per line).
bool MakeLeaf(const fs::path& dir, const fs::path& ca_cert, const fs::path& ca_key,
              const std::string& cn, const std::string& extensions, const fs::path& cert,
              const fs::path& key) {
  const fs::path csr = fs::path(cert).replace_extension(".csr");
  const fs::path ext = fs::path(cert).replace_extension(".ext");
  WriteText(ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + extensions);
  return OpenSsl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key.string(), "-out", csr.string(), "-subj", "/CN=" + cn}) &&
         OpenSsl({"x509", "-req", "-in", csr.string(), "-CA", ca_cert.string(), "-CAkey",
                  ca_key.string(), "-CAserial", (dir / "ca.srl").string(), "-CAcreateserial",
                  "-out", cert.string(), "-days", "365", "-extfile", ext.string()});
}

bool IsSafeName(const std::string& cn) {
  if (cn.empty()) return false;
  for (char c : cn) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return cn != "." && cn != "..";
}

fs::path ClientPath(const fs::path& dir, const std::string& cn, const char* ext) {
  return dir / "clients" / (cn + ext);
}

// ---- MosquittoBroker ----

}  // namespace

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

namespace {

bool AcceptsTcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits up to `timeout` for `pid` to exit; true when it was reaped.
bool WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

fs::path TestPki::ClientCert(const std::string& cn) const {
  const fs::path cert = ClientPath(dir, cn, ".crt");
  if (!IsSafeName(cn)) {
    ADD_FAILURE() << "test PKI: client name \"" << cn << "\" is not [A-Za-z0-9._-]+";
    return {};
  }
  if (!fs::exists(cert)) {
    fs::create_directories(cert.parent_path());
    if (!MakeLeaf(dir, ca_cert, ca_key, cn, "extendedKeyUsage=clientAuth\n", cert,
                  ClientPath(dir, cn, ".key"))) {
      return {};
    }
  }
  return cert;
}

fs::path TestPki::ClientKey(const std::string& cn) const {
  if (ClientCert(cn).empty()) return {};
  return ClientPath(dir, cn, ".key");
}

TestPki MakeTestPki(const fs::path& dir, const std::vector<std::string>& clients) {
  TestPki pki;
  pki.dir = dir;
  fs::create_directories(dir);
  const fs::path ca_cert = dir / "ca.crt";
  const fs::path ca_key = dir / "ca.key";
  const fs::path server_cert = dir / "server.crt";
  const fs::path server_key = dir / "server.key";
  const fs::path other_ca_cert = dir / "other_ca.crt";
  if (!MakeCa(ca_cert, ca_key, "edgefleet test CA") ||
      !MakeLeaf(dir, ca_cert, ca_key, "localhost",
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
                server_cert, server_key) ||
      !MakeCa(other_ca_cert, dir / "other_ca.key", "edgefleet unrelated CA")) {
    return TestPki{};
  }
  pki.ca_cert = ca_cert;
  pki.ca_key = ca_key;
  pki.server_cert = server_cert;
  pki.server_key = server_key;
  pki.other_ca_cert = other_ca_cert;
  for (const auto& cn : clients) {
    if (pki.ClientCert(cn).empty()) return TestPki{};
  }
  return pki;
}

MosquittoBroker::MosquittoBroker(const fs::path& dir, BrokerOptions options)
    : dir_(dir), options_(std::move(options)) {
  fs::create_directories(dir_);
  port_ = FreeLoopbackPort();
  if (port_ == 0) {
    ADD_FAILURE() << "mosquitto broker: no free loopback port: " << std::strerror(errno);
    return;
  }
  std::ostringstream conf;
  conf << "listener " << port_ << " 127.0.0.1\n";
  if (options_.tls != nullptr) {
    conf << "cafile " << options_.tls->ca_cert.string() << "\n"
         << "certfile " << options_.tls->server_cert.string() << "\n"
         << "keyfile " << options_.tls->server_key.string() << "\n"
         << "require_certificate true\n"
         << "use_identity_as_username true\n";
  }
  conf << "allow_anonymous true\n";
  if (!options_.acl_file.empty()) conf << "acl_file " << options_.acl_file.string() << "\n";
  conf << "persistence true\n"
       << "persistence_location " << dir_.string() << "/\n"
       << "log_dest file " << (dir_ / "mosquitto.log").string() << "\n"
       << "log_type all\n"
       << "connection_messages true\n"
       // As deploy/mosquitto/mosquitto.conf: room for what a persistent session (the
       // collector) misses while it reconnects.
       << "max_queued_messages 100000\n";
  // As root, mosquitto would switch to the `mosquitto` user, which cannot write into our dir.
  if (geteuid() == 0) conf << "user root\n";
  conf << options_.extra_config << "\n";
  WriteText(dir_ / "mosquitto.conf", conf.str());
  Start();
}

MosquittoBroker::~MosquittoBroker() {
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    WaitExit(pid_, std::chrono::seconds(10));
    pid_ = -1;
  }
}

void MosquittoBroker::Start() {
  if (pid_ > 0 || port_ == 0) return;
  const auto bind_deadline = std::chrono::steady_clock::now() + kBindRetryFor;
  const std::string conf = (dir_ / "mosquitto.conf").string();
  const std::string out_path = (dir_ / "mosquitto.out").string();
  for (;;) {
    const pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (out < 0 || null < 0) _exit(126);
      dup2(null, 0);
      dup2(out, 1);
      dup2(out, 2);
      execl(kMosquitto, kMosquitto, "-c", conf.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (pid < 0) {
      ADD_FAILURE() << "mosquitto broker: fork failed: " << std::strerror(errno);
      return;
    }
    setpgid(pid, pid);  // both sides, so a kill right after fork finds the group
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      if (AcceptsTcp(port_)) {
        pid_ = pid;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited) {
      kill(-pid, SIGKILL);
      WaitExit(pid, std::chrono::seconds(10));
      ADD_FAILURE() << "mosquitto broker did not accept connections on 127.0.0.1:" << port_
                    << " within 10 s; log:\n"
                    << Log();
      return;
    }
    const std::string log = Log();
    if (log.find("Address already in use") != std::string::npos &&
        std::chrono::steady_clock::now() < bind_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    ADD_FAILURE() << "mosquitto broker exited at start (port " << port_ << "); log:\n" << log;
    return;
  }
}

void MosquittoBroker::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  if (!WaitExit(pid_, std::chrono::seconds(10))) {
    ADD_FAILURE() << "mosquitto broker did not exit within 10 s of SIGTERM; killing it";
    kill(-pid_, SIGKILL);
    WaitExit(pid_, std::chrono::seconds(10));
  }
  pid_ = -1;
}

std::string MosquittoBroker::Log() const {
  return ReadAll(dir_ / "mosquitto.log") + ReadAll(dir_ / "mosquitto.out");
}

}  // namespace edgefleet::testing
