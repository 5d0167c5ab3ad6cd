#include "http/server.hpp"

#include <fmt/format.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "http/file_range_body.hpp"
#include "http/worker_pool.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using unix_socket = net::local::stream_protocol;
using SteadyClock = std::chrono::steady_clock;

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view View(boost::beast::string_view v) { return {v.data(), v.size()}; }

std::pair<std::string, std::string> JsonError(int /*status*/, std::string_view message) {
  return {nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                  nlohmann::json::error_handler_t::replace),
          "application/json"};
}

}  // namespace

std::string Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (IEquals(key, name)) return value;
  }
  return {};
}

bool Request::HasHeader(std::string_view name) const {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& h) { return IEquals(h.first, name); });
}

void Response::SetHeader(std::string name, std::string value) {
  for (auto& [key, v] : headers) {
    if (IEquals(key, name)) {
      v = std::move(value);
      return;
    }
  }
  headers.emplace_back(std::move(name), std::move(value));
}

void Router::Add(std::string method, const std::string& pattern, Lane lane, Handler handler) {
  routes_.push_back({std::move(method), std::regex(pattern), lane, std::move(handler)});
}

struct Server::Impl {
  explicit Impl(Router r, ServerOptions o)
      : router(std::move(r)),
        options(std::move(o)),
        pool(options.workers, options.queue_limit),
        acceptor(ioc) {}

  const Router router;
  const ServerOptions options;
  // Counters first: sessions destroyed with the io_context below still update them.
  std::atomic<std::uint64_t> open{0};
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> deadline_closed{0};
  std::atomic<std::uint64_t> queue_full{0};
  WorkerPool pool;
  net::io_context ioc;
  tcp::acceptor acceptor;
  std::optional<unix_socket::acceptor> unix_acceptor;  // with options.unix_socket
  std::optional<net::ssl::context> tls;                // with options.tls_cert_file
  std::vector<std::thread> threads;
  int port = 0;
  std::once_flag stop_once;
  // Closers of the live connections, so Stop can close them on their own strands.
  std::mutex live_mu;
  std::unordered_map<const void*, std::function<void()>> live;  // guarded by live_mu

  // Accepts on `on` (TCP or Unix) until it is closed; one connection over the limit is refused.
  template <class Protocol>
  void Accept(typename Protocol::acceptor& on);
  template <class Socket>
  void Refuse(Socket socket);
  template <class Protocol>
  void StartSession(typename Protocol::socket socket);
  std::pair<std::string, std::string> ErrorBody(int status, std::string_view message) const {
    return options.error_body ? options.error_body(status, message) : JsonError(status, message);
  }
};

namespace {

// The stream of a connection: plain, or TLS over it.
template <class Protocol, bool kTls>
struct StreamOf {
  using type = beast::basic_stream<Protocol>;
  static type Make(typename Protocol::socket socket, Server::Impl&) {
    return type(std::move(socket));
  }
};
template <class Protocol>
struct StreamOf<Protocol, true> {
  using type = beast::ssl_stream<beast::basic_stream<Protocol>>;
  static type Make(typename Protocol::socket socket, Server::Impl& server) {
    return type(std::move(socket), *server.tls);
  }
};

// One connection, over TCP (plain or TLS) or a Unix socket.
template <class Protocol, bool kTls = false>
class Session : public std::enable_shared_from_this<Session<Protocol, kTls>> {
  using std::enable_shared_from_this<Session<Protocol, kTls>>::shared_from_this;
  static constexpr bool kTcp = std::is_same_v<Protocol, tcp>;
  using Stream = typename StreamOf<Protocol, kTls>::type;

 public:
  Session(typename Protocol::socket socket, Server::Impl& server)
      : stream_(StreamOf<Protocol, kTls>::Make(std::move(socket), server)), server_(server) {
    server_.open.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ec;
    // Responses go out whole; Nagle would hold a small one back for the peer's delayed ACK.
    if constexpr (kTcp) {
      Lowest().socket().set_option(tcp::no_delay(true), ec);
      const auto peer = Lowest().socket().remote_endpoint(ec);
      if (!ec) remote_ = fmt::format("{}:{}", peer.address().to_string(), peer.port());
    } else {
      remote_ = "unix";
    }
  }
  ~Session() {
    {
      std::lock_guard lock(server_.live_mu);
      server_.live.erase(this);
    }
    server_.open.fetch_sub(1, std::memory_order_relaxed);
  }

  void Start() {
    {
      std::lock_guard lock(server_.live_mu);
      server_.live[this] = [weak = this->weak_from_this()] {
        if (auto self = weak.lock()) {
          net::dispatch(self->stream_.get_executor(), [self] { self->Close(); });
        }
      };
    }
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Handshake(); });
  }

 private:
  beast::basic_stream<Protocol>& Lowest() { return beast::get_lowest_layer(stream_); }

  // TLS first, within the first request's deadline; a plain connection goes straight on.
  void Handshake() {
    if constexpr (kTls) {
      Lowest().expires_after(server_.options.request_deadline);
      stream_.async_handshake(
          net::ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
            if (ec == beast::error::timeout) {
              self->server_.deadline_closed.fetch_add(1, std::memory_order_relaxed);
            }
            if (ec) return self->Close();
            self->ReadHeader();
          });
    } else {
      ReadHeader();
    }
  }

  void ReadHeader() {
    request_read_ = false;
    request_ = Request{};
    request_.remote = remote_;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options.max_header_bytes));
    parser_->body_limit(server_.options.max_body_bytes);
    QuickAck();
    // One deadline for the whole request, idle time before it included.
    Lowest().expires_after(server_.options.request_deadline);
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnHeader(ec); });
  }

  // The request's head, known once the header was read, so errors the layer answers itself can
  // be decorated (on_layer_error).
  void FillHead() {
    // (Also after a header error such as body_limit, where the fields read so far are kept.)
    if (!request_.method.empty() || !parser_ || parser_->get().method_string().empty()) return;
    const auto& header = parser_->get();
    request_.method = std::string(header.method_string());
    request_.target = std::string(header.target());
    const auto q = request_.target.find('?');
    request_.path = request_.target.substr(0, q);
    if (q != std::string::npos) request_.query = request_.target.substr(q + 1);
    for (const auto& field : header) {
      request_.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
  }

  // A read failed: answer what deserves an answer, close the rest.
  void OnReadError(beast::error_code ec) {
    FillHead();
    if (ec == beast::error::timeout) {
      server_.deadline_closed.fetch_add(1, std::memory_order_relaxed);
      return Close();
    }
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted ||
        ec == net::error::bad_descriptor) {
      return Close();
    }
    if (ec == bhttp::error::body_limit) {
      return WriteError(
          413, fmt::format("request body exceeds {} bytes", server_.options.max_body_bytes));
    }
    if (ec == bhttp::error::header_limit) {
      return WriteError(
          431, fmt::format("request headers exceed {} bytes", server_.options.max_header_bytes));
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category()) {
      return WriteError(400, fmt::format("malformed request: {}", ec.message()));
    }
    Close();
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    const auto& header = parser_->get();
    FillHead();
    if (const auto length = parser_->content_length();
        length && *length > server_.options.max_body_bytes) {
      return WriteError(
          413, fmt::format("request body exceeds {} bytes", server_.options.max_body_bytes));
    }
    if (parser_->is_done()) return OnRequest();
    if (IEquals(View(header[bhttp::field::expect]), "100-continue")) {
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_,
                                                                       header.version());
      return bhttp::async_write(
          stream_, *cont, [self = shared_from_this(), cont](beast::error_code wec, std::size_t) {
            if (wec) return self->Close();
            self->ReadBody();
          });
    }
    ReadBody();
  }

  // The body, a read at a time, acknowledging each at once (see QuickAck). Beast reads at most
  // the buffer's free capacity per call, so the buffer gets room for 64 KiB reads while a body
  // arrives (a 588 KiB body took 600 reads of 1 KiB, 8 ms); it shrinks back after the request.
  void ReadBody() {
    if (buffer_.capacity() < kBodyReadBytes) buffer_.reserve(kBodyReadBytes);
    QuickAck();
    bhttp::async_read_some(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             if (ec) return self->OnReadError(ec);
                             if (!self->parser_->is_done()) return self->ReadBody();
                             self->OnRequest();
                           });
  }

  // Acknowledge at once: a client that writes its headers and body in separate segments
  // (cpp-httplib, curl) with Nagle on holds back its last partial segment until this side's ACK,
  // which Linux otherwise delays by up to 40 ms. Quick-ACK mode does not stick, so it is set
  // before every read.
  void QuickAck() {
    if constexpr (!kTcp) return;
    int one = 1;
    ::setsockopt(Lowest().socket().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
  }

  void OnRequest() {
    Lowest().expires_never();
    if (buffer_.size() == 0 && buffer_.capacity() > kIdleBufferBytes) buffer_.shrink_to_fit();
    request_read_ = true;
    ++served_;
    auto message = parser_->release();
    keep_alive_ = message.keep_alive();
    response_ = Response{};
    request_.body = std::move(message.body());

    request_.head = request_.method == "HEAD";
    const std::string_view method =
        request_.head ? std::string_view("GET") : std::string_view(request_.method);
    const Router::Route* route = nullptr;
    for (const auto& r : server_.router.routes()) {
      std::smatch m;
      if (r.method != method || !std::regex_match(request_.path, m, r.pattern)) continue;
      route = &r;
      request_.matches.assign(m.begin(), m.end());
      break;
    }
    if (!route) {
      return WriteError(404, fmt::format("no route for {} {}", request_.method, request_.path),
                        /*close=*/false);
    }
    if (route->lane == Lane::kInline) {
      RunHandler(*route);
      return Write();
    }
    const auto enqueued = SteadyClock::now();
    const bool queued = server_.pool.TryPost([self = shared_from_this(), route, enqueued] {
      self->request_.queue_wait = SteadyClock::now() - enqueued;
      self->RunHandler(*route);
      net::post(self->stream_.get_executor(), [self] { self->Write(); });
    });
    if (!queued) {
      server_.queue_full.fetch_add(1, std::memory_order_relaxed);
      WriteError(503, "server busy: the inference queue is full; retry later", /*close=*/false,
                 /*retry_after=*/true);
    }
  }

  void RunHandler(const Router::Route& route) {
    try {
      route.handler(request_, response_);
    } catch (const std::exception& e) {
      Fail500(e.what());
    } catch (...) {
      Fail500("unknown exception");
    }
  }

  void Fail500(std::string_view what) {
    if (server_.options.on_exception) server_.options.on_exception(request_, what);
    response_ = Response{};
    response_.status = 500;
    std::tie(response_.body, response_.content_type) = server_.ErrorBody(500, "internal error");
  }

  void WriteError(int status, std::string message, bool close = true, bool retry_after = false) {
    Lowest().expires_never();
    response_ = Response{};
    response_.status = status;
    std::tie(response_.body, response_.content_type) = server_.ErrorBody(status, message);
    response_.close = close;
    if (retry_after) {
      response_.SetHeader("Retry-After", std::to_string(server_.options.retry_after_s));
    }
    if (server_.options.on_layer_error) server_.options.on_layer_error(request_, response_);
    Write();
  }

  void Write() {
    bool close =
        response_.close || !keep_alive_ || served_ >= server_.options.keep_alive_max_requests;
    if (request_.head) {
      auto out = std::make_shared<bhttp::response<bhttp::empty_body>>();
      Fill(*out, close);
      // The length the GET would have sent; no body follows a HEAD's header.
      out->content_length(response_.file ? response_.file->length() : response_.body.size());
      return Send(std::move(out), close);
    }
    if (response_.file) {
      auto out = std::make_shared<bhttp::response<FileRangeBody>>();
      Fill(*out, close);
      out->body() = response_.file;
      out->prepare_payload();
      return Send(std::move(out), close);
    }
    auto out = std::make_shared<bhttp::response<bhttp::string_body>>();
    Fill(*out, close);
    out->body() = std::move(response_.body);
    out->prepare_payload();
    Send(std::move(out), close);
  }

  // Status and headers of response_ onto `out`; a "Connection: close" header sets `close`.
  template <class Message>
  void Fill(Message& out, bool& close) {
    out.version(11);
    out.result(static_cast<unsigned>(response_.status));
    for (const auto& [name, value] : response_.headers) {
      if (IEquals(name, "Connection")) {
        if (IEquals(value, "close")) close = true;
        continue;
      }
      if (IEquals(name, "Content-Length")) continue;
      out.set(name, value);
    }
    if (response_.file || !response_.body.empty() || !response_.content_type.empty()) {
      out.set(bhttp::field::content_type, response_.content_type);
    }
    out.keep_alive(!close);
  }

  // Writes `out` a piece at a time; the write deadline is for each piece, so a large file goes
  // out at the client's pace while a client that stops reading is closed.
  template <class Message>
  void Send(std::shared_ptr<Message> out, bool close) {
    using Serializer = bhttp::serializer<false, typename Message::body_type>;
    auto serializer = std::make_shared<Serializer>(*out);
    WriteSome(std::move(out), std::move(serializer), close);
  }

  template <class Message, class Serializer>
  void WriteSome(std::shared_ptr<Message> out, std::shared_ptr<Serializer> serializer, bool close) {
    Lowest().expires_after(server_.options.write_deadline);
    auto& sr = *serializer;
    bhttp::async_write_some(
        stream_, sr,
        [self = shared_from_this(), out = std::move(out), serializer = std::move(serializer),
         close](beast::error_code ec, std::size_t) mutable {
          if (!ec && !serializer->is_done()) {
            return self->WriteSome(std::move(out), std::move(serializer), close);
          }
          self->Written(ec, close);
        });
  }

  void Written(beast::error_code ec, bool close) {
    if (server_.options.on_response) {
      response_.body.clear();
      server_.options.on_response(request_, response_);
    }
    response_.file.reset();
    if (ec) return Close();
    if (close) return request_read_ ? Close() : Linger();
    ReadHeader();
  }

  // A response went out before the request's body was read (413, 400): stop sending, then read
  // and drop what the client still sends for a short while, so it can finish its write and read
  // the answer instead of getting a reset in the middle of its body.
  void Linger() {
    beast::error_code ec;
    Lowest().socket().shutdown(net::socket_base::shutdown_send, ec);
    Lowest().expires_after(kLinger);
    DrainSome();
  }

  void DrainSome() {
    if (!drain_) drain_ = std::make_unique<char[]>(kDrainChunk);
    stream_.async_read_some(net::buffer(drain_.get(), kDrainChunk),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kMaxDrain) return self->Close();
                              self->DrainSome();
                            });
  }

  void Close() {
    beast::error_code ec;
    Lowest().socket().shutdown(net::socket_base::shutdown_both, ec);
    Lowest().close();
  }

  Stream stream_;
  Server::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request request_;
  Response response_;
  std::string remote_;
  bool keep_alive_ = true;
  bool request_read_ = false;
  static constexpr auto kLinger = std::chrono::seconds(2);
  static constexpr std::size_t kBodyReadBytes = 64u << 10;
  static constexpr std::size_t kIdleBufferBytes = 16u << 10;
  static constexpr std::size_t kDrainChunk = 64u << 10;
  static constexpr std::size_t kMaxDrain = 256u << 20;
  std::unique_ptr<char[]> drain_;
  std::size_t drained_ = 0;
  std::size_t served_ = 0;
};

}  // namespace

template <class Socket>
void Server::Impl::Refuse(Socket socket) {
  refused.fetch_add(1, std::memory_order_relaxed);
  const auto [body, type] =
      ErrorBody(503, fmt::format("too many connections (limit {})", options.max_connections));
  const std::string text = fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {}\r\nContent-Type: {}\r\n"
      "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
      options.retry_after_s, type, body.size(), body);
  beast::error_code ec;
  socket.non_blocking(true, ec);  // a fresh socket's send buffer takes this; never wait for it
  net::write(socket, net::buffer(text), ec);
  socket.shutdown(net::socket_base::shutdown_both, ec);
  socket.close(ec);
}

template <class Protocol>
void Server::Impl::StartSession(typename Protocol::socket socket) {
  if constexpr (std::is_same_v<Protocol, tcp>) {
    if (tls) return std::make_shared<Session<tcp, true>>(std::move(socket), *this)->Start();
  }
  std::make_shared<Session<Protocol>>(std::move(socket), *this)->Start();
}

template <class Protocol>
void Server::Impl::Accept(typename Protocol::acceptor& on) {
  on.async_accept(net::make_strand(ioc),
                  [this, &on](beast::error_code ec, typename Protocol::socket socket) {
                    if (ec == net::error::operation_aborted || !on.is_open()) return;
                    if (!ec) {
                      accepted.fetch_add(1, std::memory_order_relaxed);
                      if (open.load(std::memory_order_relaxed) >= options.max_connections) {
                        Refuse(std::move(socket));
                      } else {
                        StartSession<Protocol>(std::move(socket));
                      }
                    }
                    Accept<Protocol>(on);
                  });
}

namespace {

// Binds the Unix socket at options.unix_socket: a stale socket file there is replaced, anything
// else is refused; then its mode and group are set before it accepts (the listen backlog fills
// only after listen, so no client can connect under other permissions).
Status ListenUnix(Server::Impl& impl) {
  const ServerOptions& o = impl.options;
  const std::string& path = o.unix_socket;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("http: {} exists and is not a socket; refusing to replace it",
                              manifests::LogValue(path)));
    }
    ::unlink(path.c_str());
  }
  gid_t gid = static_cast<gid_t>(-1);
  if (!o.unix_socket_group.empty()) {
    const group* g = ::getgrnam(o.unix_socket_group.c_str());
    if (g == nullptr) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("http: unix socket group {} does not exist",
                              manifests::LogValue(o.unix_socket_group)));
    }
    gid = g->gr_gid;
  }
  beast::error_code ec;
  impl.unix_acceptor.emplace(impl.ioc);
  const unix_socket::endpoint endpoint(path);
  impl.unix_acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl.unix_acceptor->bind(endpoint, ec);
  if (ec) {
    return Fail(ErrorCode::kIo, fmt::format("http: cannot bind unix socket {}: {}",
                                            manifests::LogValue(path), ec.message()));
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(o.unix_socket_mode)) != 0 ||
      (gid != static_cast<gid_t>(-1) && ::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0)) {
    const int err = errno;
    ::unlink(path.c_str());
    return Fail(ErrorCode::kIo,
                fmt::format("http: cannot set mode {:o} and group {} on {}: {}", o.unix_socket_mode,
                            manifests::LogValue(o.unix_socket_group), manifests::LogValue(path),
                            std::strerror(err)));
  }
  impl.unix_acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    ::unlink(path.c_str());
    return Fail(ErrorCode::kIo, fmt::format("http: cannot listen on {}: {}",
                                            manifests::LogValue(path), ec.message()));
  }
  return Ok();
}

}  // namespace

Server::Server(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Stop(); }

Result<std::unique_ptr<Server>> Server::Start(Router router, ServerOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return Fail(ErrorCode::kInvalidArgument, "http: port must be in 0..65535");
  }
  if (options.io_threads < 1 || options.io_threads > 64 || options.workers < 1 ||
      options.workers > 1024 || options.queue_limit < 1 || options.max_connections < 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "http: io_threads must be in 1..64, workers in 1..1024, queue_limit and "
                "max_connections >= 1");
  }
  if (options.request_deadline.count() <= 0 || options.write_deadline.count() <= 0) {
    return Fail(ErrorCode::kInvalidArgument, "http: deadlines must be > 0");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "http: TLS needs both a certificate and a key file");
  }
  auto impl = std::make_shared<Impl>(std::move(router), std::move(options));
  const ServerOptions& o = impl->options;
  beast::error_code ec;
  if (!o.tls_cert_file.empty()) {
    impl->tls.emplace(net::ssl::context::tls_server);
    impl->tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                               net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                               net::ssl::context::no_tlsv1_1,
                           ec);
    if (!ec) impl->tls->use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("http: {}: cannot load the TLS certificate chain: {}",
                              manifests::LogValue(o.tls_cert_file), ec.message()));
    }
    impl->tls->use_private_key_file(o.tls_key_file, net::ssl::context::pem, ec);
    if (ec) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("http: {}: cannot load the TLS private key: {}",
                              manifests::LogValue(o.tls_key_file), ec.message()));
    }
    if (::SSL_CTX_check_private_key(impl->tls->native_handle()) != 1) {
      return Fail(
          ErrorCode::kInvalidArgument,
          fmt::format("http: the TLS private key {} does not match the certificate {}",
                      manifests::LogValue(o.tls_key_file), manifests::LogValue(o.tls_cert_file)));
    }
  }
  const auto address = net::ip::make_address(o.host, ec);
  if (ec) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("http: host '{}' is not an IP address", o.host));
  }
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(o.port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Fail(ErrorCode::kIo,
                fmt::format("http: cannot listen on {}:{}: {}", o.host, o.port, ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint().port();
  if (!o.unix_socket.empty()) {
    if (auto ok = ListenUnix(*impl); !ok) return ok.error();
  }
  impl->Accept<tcp>(impl->acceptor);
  if (impl->unix_acceptor) impl->Accept<unix_socket>(*impl->unix_acceptor);
  for (int i = 0; i < o.io_threads; ++i) {
    impl->threads.emplace_back([raw = impl.get()] { raw->ioc.run(); });
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const { return impl_->port; }

ServerStats Server::stats() const {
  ServerStats s;
  s.connections_open = impl_->open.load(std::memory_order_relaxed);
  s.connections_accepted = impl_->accepted.load(std::memory_order_relaxed);
  s.connections_refused = impl_->refused.load(std::memory_order_relaxed);
  s.deadline_closed = impl_->deadline_closed.load(std::memory_order_relaxed);
  s.queue_full = impl_->queue_full.load(std::memory_order_relaxed);
  s.pool_waiting = impl_->pool.waiting();
  s.pool_running = impl_->pool.running();
  return s;
}

void Server::Stop() {
  std::call_once(impl_->stop_once, [this] {
    Impl& impl = *impl_;
    net::post(impl.ioc, [&impl] {
      beast::error_code ec;
      impl.acceptor.close(ec);
      if (impl.unix_acceptor) impl.unix_acceptor->close(ec);
    });
    // Running handlers finish; queued ones are dropped with their connections.
    impl.pool.Shutdown();
    // Every open connection is closed on its strand; its pending read then ends and the session
    // goes. Bounded: a connection that does not go within 2 s goes with the io_context.
    std::vector<std::function<void()>> closers;
    {
      std::lock_guard lock(impl.live_mu);
      for (auto& [key, close] : impl.live) closers.push_back(close);
    }
    for (auto& close : closers) close();
    closers.clear();
    const auto deadline = SteadyClock::now() + std::chrono::seconds(2);
    while (impl.open.load(std::memory_order_relaxed) > 0 && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    impl.ioc.stop();
    for (auto& t : impl.threads) t.join();
    impl.threads.clear();
    if (impl.unix_acceptor) ::unlink(impl.options.unix_socket.c_str());
  });
}

}  // namespace edgefleet::http
