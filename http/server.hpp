// The one HTTP layer (ARCHITECTURE.md "Seams"): an event-driven HTTP/1.1 server on Boost.Beast
// and Asio (Debian's libboost1.74-dev, header-only), for the agent's local API and, as they move
// over, the collector and the bundle server.
//
// What it promises, and why it exists (issue 14): no client can block the server.
//   - Idle and slow connections cost no thread: every read and write is asynchronous on a few
//     I/O threads.
//   - Each request has one deadline for its whole header and body (`request_deadline`, from the
//     end of the previous response or from accept), not a timeout per read: a client dripping a
//     byte every second is closed at the deadline. An idle keep-alive connection is closed when
//     the same deadline passes without a request.
//   - At most `max_connections` connections are open; one more is answered 503 with Retry-After
//     and closed at once.
//   - Handlers run in one of two lanes. kInline runs on the I/O thread and must not block
//     (health, /metrics, metadata): it never waits behind inference. kPool runs in a bounded
//     worker pool (`workers` threads, `queue_limit` waiting); a request that finds the queue full
//     is answered 503 with Retry-After at once instead of waiting.
//   - A response body can be a byte range of an open file (Response::file), sent from disk a
//     chunk at a time, so a 100 MiB download costs a 64 KiB buffer. GET routes also answer HEAD:
//     the same headers and Content-Length, no body.
//   - With `tls_cert_file` and `tls_key_file`, TCP connections speak TLS (OpenSSL); the
//     handshake is part of the first request's deadline.
//   - Bodies over `max_body_bytes` are refused with 413 (a declared length before a byte of it
//     is read), headers over `max_header_bytes` with 431, a malformed request (e.g.
//     Content-Length -1) with 400; each closes the connection. A POST without a body and without
//     Content-Length has an empty body (RFC 9112), so it is answered at once. "Expect:
//     100-continue" is answered before the body is read.
//
// Error bodies the layer writes itself are `error_body(status, message)`: by default the
// protocol's {"error": "..."} JSON.
//
// Thread safety: Start/Stop/port/stats from any thread. Handlers of the kInline lane run on the
// I/O threads, those of kPool on the pool's threads, each with its own Request and Response.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::http {

struct Request {
  std::string method;                                        // "GET", "POST", ...
  std::string target;                                        // as sent: path and query
  std::string path;                                          // target without the query
  std::string query;                                         // after '?', undecoded
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
  std::string body;
  bool head = false;   // a HEAD request, routed to the GET route: its body is not sent
  std::string remote;  // "ip:port" of the peer
  std::vector<std::string> matches;  // the route's regex groups; [0] is the whole path
  // Time the request waited for a pool worker (kPool lane; 0 for kInline).
  std::chrono::steady_clock::duration queue_wait{};

  // The first header named `name` (case-insensitive), or "" without one.
  std::string Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
};

// A byte range [offset, offset + length) of an open file, the body of a Response. Owns the
// descriptor (closed when the last response holding it is written). If the file cannot be read
// while it is sent (it shrank, an I/O error), the connection is closed mid-body, so the client
// sees a short response rather than a wrong one.
class FileRange final {
 public:
  FileRange(int fd, std::uint64_t offset, std::uint64_t length)
      : fd_(fd), offset_(offset), length_(length) {}
  ~FileRange();
  FileRange(const FileRange&) = delete;
  FileRange& operator=(const FileRange&) = delete;
  int fd() const { return fd_; }
  std::uint64_t offset() const { return offset_; }
  std::uint64_t length() const { return length_; }

 private:
  int fd_;
  std::uint64_t offset_;
  std::uint64_t length_;
};

struct Response {
  int status = 200;
  std::string body;
  std::shared_ptr<const FileRange> file;  // when set, the body instead of `body`
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response

  void SetHeader(std::string name, std::string value);
};

using Handler = std::function<void(const Request&, Response&)>;

enum class Lane {
  kInline,  // on the I/O thread: must not block
  kPool,    // in the bounded worker pool
};

class Router {
 public:
  // `pattern` must match the whole path (std::regex ECMAScript); its groups become
  // Request::matches. Routes are tried in the order they were added; a request that matches
  // none (method and path) gets 404 "no route for <method> <path>".
  void Add(std::string method, const std::string& pattern, Lane lane, Handler handler);
  void Get(const std::string& pattern, Lane lane, Handler handler) {
    Add("GET", pattern, lane, std::move(handler));
  }
  void Post(const std::string& pattern, Lane lane, Handler handler) {
    Add("POST", pattern, lane, std::move(handler));
  }

  struct Route {
    std::string method;
    std::regex pattern;
    Lane lane;
    Handler handler;
  };
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free port; Server::port() reports it
  // TLS on the TCP port: PEM certificate chain and private key (both or neither). The Unix socket
  // stays plain.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Also listen on this Unix socket path (empty: TCP only). A stale socket file there is
  // replaced, any other file refused; the socket gets `unix_socket_mode` and, when given, the
  // group `unix_socket_group` before it accepts, so only that group's members can connect. It
  // is removed at Stop.
  std::string unix_socket;
  unsigned unix_socket_mode = 0660;
  std::string unix_socket_group;
  int io_threads = 1;
  std::size_t max_connections = 256;
  std::chrono::milliseconds request_deadline{10000};  // whole header + body, and idle time
  std::chrono::milliseconds write_deadline{10000};    // whole response
  std::size_t max_header_bytes = 16u << 10;
  std::size_t max_body_bytes = 16u << 20;
  std::size_t keep_alive_max_requests = 1000;
  int workers = 4;               // kPool threads
  std::size_t queue_limit = 64;  // kPool requests waiting for a worker
  int retry_after_s = 1;         // in 503s for a full queue or too many connections
  // The body of an error the layer writes itself (404, 413, 503, ...), with content type.
  std::function<std::pair<std::string, std::string>(int status, std::string_view message)>
      error_body;
  // Called on each error the layer answers itself (404, 413, 503, ...) before it is written, with
  // what is known of the request (method, path and headers once they were read; no body), so
  // the application can add its own headers (e.g. a request id). Must not block.
  std::function<void(const Request&, Response&)> on_layer_error;
  // Called after each response is written (or failed to be), from the thread that wrote it.
  std::function<void(const Request&, const Response&)> on_response;
  // Called when a handler throws; the client gets a 500. Default: nothing more.
  std::function<void(const Request&, std::string_view what)> on_exception;
};

// Counters of the layer itself since Start.
struct ServerStats {
  std::uint64_t connections_open = 0;
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;  // over max_connections
  std::uint64_t deadline_closed = 0;      // closed at request_deadline (slow or idle)
  std::uint64_t queue_full = 0;           // 503 for a full kPool queue
  std::uint64_t pool_waiting = 0;         // kPool requests waiting now
  std::uint64_t pool_running = 0;         // kPool requests running now
};

// Percent-decodes `text` (RFC 3986); with `plus_as_space`, '+' becomes ' ' (form encoding, for
// query strings). A '%' not followed by two hex digits stays as it is.
std::string PercentDecode(std::string_view text, bool plus_as_space);

// The query string's "name=value" pairs, in order, each name and value percent-decoded with '+'
// as space; a pair without '=' has an empty value; empty pairs ("a=1&&b=2") are skipped.
std::vector<std::pair<std::string, std::string>> ParseQuery(std::string_view query);

class Server final {
 public:
  // Binds host:port, starts the I/O threads and the pool. Fails with kIo when the address
  // cannot be bound, kInvalidArgument on unusable options.
  static Result<std::unique_ptr<Server>> Start(Router router, ServerOptions options);
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  ServerStats stats() const;
  // Stops accepting, lets running handlers finish, closes every connection, joins the threads.
  // Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit Server(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace edgefleet::http
