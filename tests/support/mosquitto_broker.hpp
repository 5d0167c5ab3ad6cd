// A real mosquitto broker for tests: /usr/sbin/mosquitto started on a free loopback port with a
// config written into a temp directory, optionally with TLS (client certificates required) and
// an ACL file; it can be stopped and started again on the same port (broker outages). Plus a test
// PKI made with the openssl command: a CA, a server certificate for 127.0.0.1/localhost, client
// certificates whose CN is the MQTT identity, and a second, unrelated CA.
//
// Thread safety: for the test's main thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace edgefleet::testing {

struct TestPki {
  std::filesystem::path dir;
  std::filesystem::path ca_cert, ca_key;
  std::filesystem::path server_cert, server_key;
  std::filesystem::path other_ca_cert;  // a CA that signed nothing here (the "wrong CA")
  // Client certificate and key for `cn` (made on first request, then reused).
  std::filesystem::path ClientCert(const std::string& cn) const;
  std::filesystem::path ClientKey(const std::string& cn) const;
};
// Makes the CA, server and other CA under `dir`, and client certificates for `clients`. Fails
// the current test (ADD_FAILURE + returns a PKI with empty paths) when openssl fails.
TestPki MakeTestPki(const std::filesystem::path& dir, const std::vector<std::string>& clients);

// A TCP port on 127.0.0.1 that nobody listens on right now (bound to port 0, then released), or
// 0 when no socket could be bound.
int FreeLoopbackPort();

struct BrokerOptions {
  // TLS listener with client certificates required and the certificate CN used as username.
  const TestPki* tls = nullptr;
  std::filesystem::path acl_file;  // empty: no ACL
  std::string extra_config;        // appended to mosquitto.conf verbatim
};

class MosquittoBroker final {
 public:
  // Writes <dir>/mosquitto.conf, picks a free loopback port, starts the broker and waits (up to
  // 10 s) until it accepts connections. Fails the test (ADD_FAILURE) when it does not come up.
  MosquittoBroker(const std::filesystem::path& dir, BrokerOptions options = {});
  ~MosquittoBroker();  // kills the broker
  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  bool running() const { return pid_ > 0; }
  // SIGTERM, wait for exit (the port is closed; clients see the connection drop).
  void Stop();
  // Starts again on the same port. Persistence is on (in `dir`), so retained messages and
  // sessions survive a Stop/Start as they do on a production broker.
  void Start();
  // The broker's log so far (for failure messages).
  std::string Log() const;

 private:
  std::filesystem::path dir_;
  BrokerOptions options_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace edgefleet::testing
