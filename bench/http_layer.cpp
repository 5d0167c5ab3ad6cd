// Benchmark (issue 14, acceptance 2): the HTTP layer (http/server.hpp, Boost.Beast) against the
// cpp-httplib server the local API used before, in the same run, with the same handler and the
// same worker count. N keep-alive clients (one thread each, a minimal HTTP/1.1 client that writes
// each request in one send, so neither server waits for a delayed ACK) post a 4 KiB body for
// `seconds`; the handler costs about `work_us` of CPU (a stand-in for a small model's
// inference). Reported per server and N: requests per second, p50 and p99 latency, the worst
// client's time to its first response against the p50 (starvation), and 503s. Where
// libmicrohttpd is installed (libmicrohttpd-dev, the other candidate issue 14 names), its server
// runs beside them: a pool of 8 epoll threads, each running the handler for its connections.
//
//   http_layer [seconds=5] [work_us=200] [clients=1,4,16,64] [io_threads=1]
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http/server.hpp"

#ifdef EDGEFLEET_HAVE_MHD
#include <microhttpd.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kWorkers = 8;  // the local API's inference workers, and httplib's thread pool

std::string Work(const std::string& body, int work_us) {
  // Busy work of about work_us: hash the body until the time is spent.
  const auto end = Clock::now() + std::chrono::microseconds(work_us);
  std::uint64_t h = 1469598103934665603ULL;
  do {
    for (char c : body) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  } while (Clock::now() < end);
  return std::to_string(h);
}

// A keep-alive HTTP/1.1 client over one socket: one send per request, reads the status line,
// headers and a Content-Length body. Returns the status, or -1 on a transport error.
class RawClient {
 public:
  explicit RawClient(int port) : port_(port) {}
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  void Open() {
    if (fd_ < 0 && !Connect()) Reset();
  }
  int Post(const std::string& path, const std::string& body) {
    if (fd_ < 0 && !Connect()) return -1;
    const std::string request = "POST " + path +
                                " HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                                "application/octet-stream\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
    if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return Reset();
    }
    std::size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return Reset();
    }
    const int status = std::atoi(in_.c_str() + 9);
    std::size_t length = 0;
    const auto at = in_.find("Content-Length: ");
    if (at != std::string::npos && at < end)
      length = std::strtoul(in_.c_str() + at + 16, nullptr, 10);
    const bool close = in_.find("Connection: close") < end;
    while (in_.size() < end + 4 + length) {
      if (!Fill()) return Reset();
    }
    in_.erase(0, end + 4 + length);
    if (close) Reset();
    return status;
  }

 private:
  bool Connect() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  bool Fill() {
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  int Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    in_.clear();
    return -1;
  }
  int port_;
  int fd_ = -1;
  std::string in_;
};

struct Result {
  double rps = 0, p50 = 0, p99 = 0, worst_first = 0, p99_first = 0;
  long busy = 0, failed = 0;
};

double Pct(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

Result Drive(int port, int clients, double seconds) {
  const std::string body(4096, 'x');
  std::mutex mu;
  std::vector<double> all;
  std::vector<double> firsts;
  std::atomic<long> busy{0}, failed{0};
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      RawClient client(port);
      client.Open();  // every client connected before any sends: the first requests arrive together
      ready.fetch_add(1);
      while (ready.load() < clients) std::this_thread::yield();
      std::vector<double> mine;
      double first = -1;
      while (Clock::now() < end) {
        const auto t0 = Clock::now();
        const int status = client.Post("/infer", body);
        const auto t1 = Clock::now();
        if (first < 0) first = std::chrono::duration<double, std::milli>(t1 - t0).count();
        if (status < 0) {
          ++failed;
          continue;
        }
        if (status == 503) {
          ++busy;
          continue;
        }
        mine.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::lock_guard lock(mu);
      all.insert(all.end(), mine.begin(), mine.end());
      firsts.push_back(first);
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  Result r;
  r.rps = static_cast<double>(all.size()) / elapsed;
  r.p50 = Pct(all, 0.5);
  r.p99 = Pct(all, 0.99);
  r.worst_first = *std::max_element(firsts.begin(), firsts.end());
  r.p99_first = Pct(firsts, 0.99);
  r.busy = busy;
  r.failed = failed;
  return r;
}

}  // namespace

#ifdef EDGEFLEET_HAVE_MHD
// libmicrohttpd 0.9.75 as a local API would run it: 8 threads, each with its own epoll set and
// its connections, running the handler on the thread that read the request; 10 s idle timeout.
struct MhdServer {
  MHD_Daemon* daemon = nullptr;
  int work_us = 0;
  int port = 0;
};

MHD_Result MhdHandler(void* cls, MHD_Connection* connection, const char*, const char*, const char*,
                      const char* upload, size_t* upload_size, void** state) {
  auto* body = static_cast<std::string*>(*state);
  if (body == nullptr) {  // the headers: keep a body for this request
    *state = new std::string();
    return MHD_YES;
  }
  if (*upload_size > 0) {
    body->append(upload, *upload_size);
    *upload_size = 0;
    return MHD_YES;
  }
  const std::string out = Work(*body, static_cast<MhdServer*>(cls)->work_us);
  MHD_Response* response = MHD_create_response_from_buffer(
      out.size(), const_cast<char*>(out.data()), MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(response, "Content-Type", "text/plain");
  const MHD_Result queued = MHD_queue_response(connection, 200, response);
  MHD_destroy_response(response);
  return queued;
}

void MhdCompleted(void*, MHD_Connection*, void** state, MHD_RequestTerminationCode) {
  delete static_cast<std::string*>(*state);
  *state = nullptr;
}

bool StartMhd(MhdServer& server) {
  server.daemon = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, nullptr, nullptr, &MhdHandler, &server,
      MHD_OPTION_THREAD_POOL_SIZE, static_cast<unsigned>(kWorkers), MHD_OPTION_CONNECTION_TIMEOUT,
      10u, MHD_OPTION_NOTIFY_COMPLETED, &MhdCompleted, nullptr, MHD_OPTION_END);
  if (server.daemon == nullptr) return false;
  const MHD_DaemonInfo* info = MHD_get_daemon_info(server.daemon, MHD_DAEMON_INFO_BIND_PORT);
  server.port = info != nullptr ? info->port : 0;
  return server.port > 0;
}
#endif

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5;
  const int work_us = argc > 2 ? std::atoi(argv[2]) : 200;
  const int io_threads = argc > 4 ? std::atoi(argv[4]) : 1;
  std::vector<int> counts = {1, 4, 16, 64};
  if (argc > 3) {
    counts.clear();
    std::stringstream list(argv[3]);
    for (std::string item; std::getline(list, item, ',');) counts.push_back(std::stoi(item));
  }

  // The layer, configured as the local API is (8 workers, 64 waiting, 256 connections).
  edgefleet::http::Router router;
  router.Post("/infer", edgefleet::http::Lane::kPool,
              [work_us](const edgefleet::http::Request& req, edgefleet::http::Response& res) {
                res.body = Work(req.body, work_us);
                res.content_type = "text/plain";
              });
  edgefleet::http::ServerOptions options;
  options.workers = kWorkers;
  options.io_threads = io_threads;
  auto layer = edgefleet::http::Server::Start(std::move(router), options);
  if (!layer) {
    std::fprintf(stderr, "%s\n", layer.error().message.c_str());
    return 1;
  }

  // cpp-httplib as the local API ran it: 8 threads, each connection holds one; 5 s keep-alive,
  // up to 1000 requests per connection.
  httplib::Server old;
  old.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  old.set_keep_alive_timeout(5);
  old.set_keep_alive_max_count(1000);
  old.set_tcp_nodelay(true);
  old.Post("/infer", [work_us](const httplib::Request& req, httplib::Response& res) {
    res.set_content(Work(req.body, work_us), "text/plain");
  });
  const int old_port = old.bind_to_any_port("127.0.0.1");
  std::thread old_thread([&] { old.listen_after_bind(); });
  while (!old.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  struct Candidate {
    const char* name;
    int port;
  };
  std::vector<Candidate> servers = {{"beast", (*layer)->port()}, {"httplib", old_port}};
#ifdef EDGEFLEET_HAVE_MHD
  MhdServer mhd;
  mhd.work_us = work_us;
  if (!StartMhd(mhd)) {
    std::fprintf(stderr, "libmicrohttpd did not start\n");
    return 1;
  }
  servers.push_back({"mhd", mhd.port});
#endif

  std::printf("load average before: %s\n", [] {
    std::FILE* f = std::fopen("/proc/loadavg", "r");
    static char buf[64] = {};
    if (f && std::fgets(buf, sizeof(buf), f)) buf[std::strlen(buf) - 1] = 0;
    if (f) std::fclose(f);
    return buf;
  }());
  std::printf("%-10s %7s %10s %9s %9s %14s %14s %6s %6s\n", "server", "clients", "req/s", "p50 ms",
              "p99 ms", "p99 first ms", "worst first ms", "503s", "failed");
  for (int n : counts) {
    for (const Candidate& server : servers) {
      const Result r = Drive(server.port, n, seconds);
      std::printf("%-10s %7d %10.0f %9.3f %9.3f %14.1f %14.1f %6ld %6ld\n", server.name, n, r.rps,
                  r.p50, r.p99, r.p99_first, r.worst_first, r.busy, r.failed);
      std::fflush(stdout);
    }
  }
#ifdef EDGEFLEET_HAVE_MHD
  MHD_stop_daemon(mhd.daemon);
#endif
  old.stop();
  old_thread.join();
  (*layer)->Stop();
  return 0;
}
