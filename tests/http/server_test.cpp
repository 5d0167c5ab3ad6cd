// The HTTP layer against real loopback sockets: slow and idle clients, the connection limit, the
// pool's queue limit, body and header limits, keep-alive, and Expect: 100-continue. Raw sockets
// play the hostile clients; cpp-httplib's client plays a well-behaved one.
#include "http/server.hpp"
#include "tests/support/httplib_prime.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace edgefleet::http {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// A raw TCP client on loopback: sends what the test says, reads what comes back.
class RawClient {
 public:
  explicit RawClient(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  bool Send(std::string_view bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Reads until the peer closes, `until` appears, or `timeout` passes.
  std::string Read(milliseconds timeout, std::string_view until = {}) {
    std::string out;
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (::poll(&p, 1, static_cast<int>(std::max<long>(left, 0))) <= 0) break;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
      if (!until.empty() && out.find(until) != std::string::npos) break;
    }
    return out;
  }
  bool closed() const { return closed_; }

 private:
  int fd_;
  bool connected_ = false;
  bool closed_ = false;
};

// A handler that blocks until the test opens the gate.
class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool AwaitWaiting(int n, milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return waiting_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

Router TestRoutes(Gate* gate = nullptr) {
  Router router;
  router.Get("/health", Lane::kInline, [](const Request&, Response& res) { res.body = "{}"; });
  router.Post("/echo/([a-z]+)", Lane::kPool, [](const Request& req, Response& res) {
    res.body = req.matches[1] + ":" + req.body;
    res.content_type = "text/plain";
  });
  router.Post("/block", Lane::kPool, [gate](const Request&, Response& res) {
    if (gate) gate->Wait();
    res.body = "done";
  });
  router.Get("/throw", Lane::kPool,
             [](const Request&, Response&) { throw std::runtime_error("boom"); });
  return router;
}

std::unique_ptr<Server> StartServer(Router router, ServerOptions options = {}) {
  auto server = Server::Start(std::move(router), std::move(options));
  EXPECT_TRUE(server) << server.error().message;
  return server ? std::move(server).value() : nullptr;
}

TEST(HttpServer, RoutesMatchTheWholePathAndUnknownOnesGetJsonErrors) {
  std::atomic<int> exceptions{0};
  ServerOptions options;
  options.on_exception = [&](const Request&, std::string_view what) {
    if (what == "boom") ++exceptions;
  };
  auto server = StartServer(TestRoutes(), options);
  ASSERT_TRUE(server);
  httplib::Client client("127.0.0.1", server->port());
  auto res = client.Post("/echo/abc", "hello", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "abc:hello");
  res = client.Post("/echo/ABC", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->body, R"({"error":"no route for POST /echo/ABC"})");
  res = client.Get("/echo/abc");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404) << "a route for another method";
  res = client.Get("/throw");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(res->body, R"({"error":"internal error"})");
  EXPECT_EQ(exceptions.load(), 1);
}

TEST(HttpServer, KeepAliveServesManyRequestsOnOneConnection) {
  auto server = StartServer(TestRoutes());
  ASSERT_TRUE(server);
  httplib::Client client("127.0.0.1", server->port());
  client.set_keep_alive(true);
  for (int i = 0; i < 20; ++i) {
    auto res = client.Post("/echo/k", std::to_string(i), "text/plain");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->body, "k:" + std::to_string(i));
  }
  EXPECT_EQ(server->stats().connections_accepted, 1u);
}

// The attack of issue 14: 64 connections dripping a header byte every 200 ms and 64 idle ones
// hold no thread; health answers at once throughout; each slow or idle connection is closed at
// its deadline.
TEST(HttpServer, SlowAndIdleConnectionsNeitherBlockOthersNorOutliveTheirDeadline) {
  ServerOptions options;
  options.request_deadline = milliseconds(1500);
  options.workers = 2;
  auto server = StartServer(TestRoutes(), options);
  ASSERT_TRUE(server);
  std::vector<std::unique_ptr<RawClient>> slow;
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 64; ++i) {
    slow.push_back(std::make_unique<RawClient>(server->port()));
    idle.push_back(std::make_unique<RawClient>(server->port()));
    ASSERT_TRUE(slow.back()->connected() && idle.back()->connected());
  }
  const auto start = Clock::now();
  const std::string header = "POST /echo/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz";
  std::atomic<bool> stop{false};
  std::thread dripper([&] {
    for (std::size_t at = 0; at < header.size() && !stop; ++at) {
      for (auto& c : slow) c->Send(header.substr(at, 1));
      std::this_thread::sleep_for(milliseconds(200));
    }
  });
  httplib::Client good("127.0.0.1", server->port());
  good.set_keep_alive(true);
  double worst_ms = 0;
  int answered = 0;
  while (Clock::now() - start < milliseconds(1200)) {
    const auto t0 = Clock::now();
    auto res = good.Get("/health");
    worst_ms =
        std::max(worst_ms, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (res && res->status == 200) ++answered;
    auto echo = good.Post("/echo/ok", "1", "text/plain");
    if (echo && echo->status == 200) ++answered;
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_GE(answered, 20);
  EXPECT_LT(worst_ms, 100.0) << "a health probe waited behind slow connections";
  // Every slow and idle connection is closed by the server at ~1.5 s, none answered.
  for (auto* group : {&slow, &idle}) {
    for (auto& c : *group) {
      const std::string got = c->Read(milliseconds(3000));
      EXPECT_TRUE(c->closed()) << "a connection outlived its deadline";
      EXPECT_EQ(got.find("200 OK"), std::string::npos) << got;
    }
  }
  const double closed_after_s = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_LT(closed_after_s, 4.0);
  stop = true;
  dripper.join();
  EXPECT_GE(server->stats().deadline_closed, 128u);
}

TEST(HttpServer, OneConnectionOverTheLimitGets503WithRetryAfterAtOnce) {
  ServerOptions options;
  options.max_connections = 4;
  auto server = StartServer(TestRoutes(), options);
  ASSERT_TRUE(server);
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 4; ++i) held.push_back(std::make_unique<RawClient>(server->port()));
  for (int i = 0; i < 50 && server->stats().connections_open < 4; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(server->stats().connections_open, 4u);
  RawClient extra(server->port());
  const auto t0 = Clock::now();
  const std::string got = extra.Read(milliseconds(2000));
  EXPECT_LT(Clock::now() - t0, milliseconds(500));
  EXPECT_EQ(got.rfind("HTTP/1.1 503", 0), 0u) << got;
  EXPECT_NE(got.find("Retry-After: 1"), std::string::npos) << got;
  EXPECT_NE(got.find("too many connections (limit 4)"), std::string::npos) << got;
  EXPECT_TRUE(extra.closed());
  EXPECT_EQ(server->stats().connections_refused, 1u);
  held.clear();  // the slots free up
  for (int i = 0; i < 100 && server->stats().connections_open > 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  httplib::Client client("127.0.0.1", server->port());
  auto res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

// A full pool queue answers 503 with Retry-After at once; health (inline) never waits behind
// the pool.
TEST(HttpServer, AFullQueueIsRefusedAtOnceAndHealthNeverWaitsBehindThePool) {
  Gate gate;
  ServerOptions options;
  options.workers = 1;
  options.queue_limit = 1;
  auto server = StartServer(TestRoutes(&gate), options);
  ASSERT_TRUE(server);
  const int port = server->port();
  auto post_block = [port] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    auto res = c.Post("/block", "", "text/plain");
    return res ? res->status : -1;
  };
  testing::PrimeHttplibClient();
  std::thread running([&] { EXPECT_EQ(post_block(), 200); });
  ASSERT_TRUE(gate.AwaitWaiting(1, seconds(5)));
  std::thread queued([&] { EXPECT_EQ(post_block(), 200); });
  for (int i = 0; i < 200 && server->stats().pool_waiting < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_EQ(server->stats().pool_waiting, 1u);

  httplib::Client client("127.0.0.1", port);
  const auto t0 = Clock::now();
  auto refused = client.Post("/block", "", "text/plain");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->get_header_value("Retry-After"), "1");
  EXPECT_LT(Clock::now() - t0, milliseconds(500));
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_LT(Clock::now() - t0, milliseconds(500));
  EXPECT_EQ(server->stats().queue_full, 1u);

  gate.Open();
  running.join();
  queued.join();
}

TEST(HttpServer, BodiesOverTheLimitAndMalformedLengthsAreRefusedAtOnce) {
  ServerOptions options;
  options.max_body_bytes = 1000;
  options.max_header_bytes = 2000;
  auto server = StartServer(TestRoutes(), options);
  ASSERT_TRUE(server);
  auto exchange = [&](const std::string& request) {
    RawClient c(server->port());
    c.Send(request);
    const auto t0 = Clock::now();
    std::string got = c.Read(milliseconds(3000));
    EXPECT_LT(Clock::now() - t0, milliseconds(1000)) << request.substr(0, 80);
    return got;
  };
  // A declared length over the limit: 413 before any body byte is sent.
  std::string got = exchange("POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
  EXPECT_NE(got.find("request body exceeds 1000 bytes"), std::string::npos) << got;
  // A chunked body that grows over the limit.
  std::string chunked = "POST /echo/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) chunked += "1f4\r\n" + std::string(500, 'a') + "\r\n";
  got = exchange(chunked);
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
  // Content-Length -1: 400 at once.
  got = exchange("POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
  // Headers over the limit: 431.
  got =
      exchange("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(3000, 'b') + "\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 431", 0), 0u) << got;
  // A POST with no body and no Content-Length (curl -X POST, Triton's client): answered at once.
  got = exchange("POST /echo/empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
  EXPECT_NE(got.find("empty:"), std::string::npos) << got;
}

TEST(HttpServer, ExpectContinueIsAnsweredBeforeTheBody) {
  auto server = StartServer(TestRoutes());
  ASSERT_TRUE(server);
  RawClient c(server->port());
  ASSERT_TRUE(c.Send(
      "POST /echo/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  const std::string interim = c.Read(milliseconds(2000), "\r\n\r\n");
  EXPECT_EQ(interim.rfind("HTTP/1.1 100 Continue", 0), 0u) << interim;
  ASSERT_TRUE(c.Send("hello"));
  const std::string got = c.Read(milliseconds(2000), "e:hello");
  EXPECT_NE(got.find("e:hello"), std::string::npos) << got;
}

TEST(HttpServer, StopClosesConnectionsAndIsIdempotent) {
  auto server = StartServer(TestRoutes());
  ASSERT_TRUE(server);
  RawClient idle(server->port());
  ASSERT_TRUE(idle.connected());
  // Accepted and waiting for its request: Stop must close it, not leave it to the destructor.
  for (int i = 0; i < 200 && server->stats().connections_open < 1; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_EQ(server->stats().connections_open, 1u);
  server->Stop();
  EXPECT_EQ(server->stats().connections_open, 0u);
  server->Stop();
  idle.Read(milliseconds(1000));
  EXPECT_TRUE(idle.closed());
  auto busy = Server::Start(TestRoutes(), ServerOptions{});
  ASSERT_TRUE(busy);
  ServerOptions same;
  same.port = (*busy)->port();
  auto clash = Server::Start(TestRoutes(), same);
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, ErrorCode::kIo);
  EXPECT_NE(clash.error().message.find("cannot listen"), std::string::npos);
}

// The Unix socket beside TCP: its mode and group are set before it accepts, curl infers through
// it, and (when the test runs as root, as CI does) a user outside the group is refused while one
// in it gets through; a regular file at the path is never replaced.
TEST(HttpServer, AUnixSocketCarriesItsModeAndGroupAndAdmitsOnlyTheGroup) {
  namespace fs = std::filesystem;
  testing::TempDir temp;
  const fs::path dir = temp.path();
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const bool root = ::geteuid() == 0;
  const group* g = root ? ::getgrnam("nogroup") : ::getgrgid(::getegid());
  ASSERT_NE(g, nullptr);
  const gid_t gid = g->gr_gid;
  ServerOptions options;
  options.unix_socket = (dir / "api.sock").string();
  options.unix_socket_mode = 0660;
  options.unix_socket_group = g->gr_name;
  {
    auto server = StartServer(TestRoutes(), options);
    ASSERT_TRUE(server);
    struct stat st {};
    ASSERT_EQ(::stat(options.unix_socket.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ(st.st_gid, gid);
    const std::vector<std::string> curl = {
        "curl", "-s",   "--max-time",    "5",  "--unix-socket",       options.unix_socket,
        "-X",   "POST", "--data-binary", "hi", "http://box/echo/unix"};
    auto as = [&](std::vector<std::string> prefix) {
      prefix.insert(prefix.end(), curl.begin(), curl.end());
      return testing::RunProcess(prefix, seconds(10));
    };
    auto got = as({});
    EXPECT_EQ(got.exit_code, 0) << got.err;
    EXPECT_EQ(got.out, "unix:hi");
    // TCP still answers.
    httplib::Client client("127.0.0.1", server->port());
    auto res = client.Get("/health");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    if (root) {
      // nobody in the socket's group gets through; nobody in another group (daemon) is refused
      // by the file's permissions (curl exit 7: could not connect).
      got = as({"setpriv", "--reuid=65534", "--regid=" + std::to_string(gid), "--clear-groups"});
      EXPECT_EQ(got.exit_code, 0) << got.err;
      EXPECT_EQ(got.out, "unix:hi");
      got = as({"setpriv", "--reuid=65534", "--regid=1", "--clear-groups"});
      EXPECT_EQ(got.exit_code, 7) << "curl: could not connect; " << got.err;
      EXPECT_EQ(got.out, "");
    }
  }
  EXPECT_FALSE(fs::exists(options.unix_socket)) << "Stop removes the socket";
  // A regular file at the path is refused, not replaced.
  std::ofstream(options.unix_socket) << "keep me";
  auto refused = Server::Start(TestRoutes(), options);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("is not a socket"), std::string::npos)
      << refused.error().message;
  EXPECT_TRUE(fs::exists(options.unix_socket));
  options.unix_socket_group = "no-such-group-edgefleet";
  fs::remove(options.unix_socket);
  refused = Server::Start(TestRoutes(), options);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("does not exist"), std::string::npos);
}

}  // namespace
}  // namespace edgefleet::http
