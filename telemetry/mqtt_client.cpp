#include "telemetry/mqtt_client.hpp"

#include <mosquitto.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

namespace edgefleet::telemetry {
namespace {

using Clock = std::chrono::steady_clock;
using Mosq = std::unique_ptr<mosquitto, decltype(&mosquitto_destroy)>;

// How long the loop sleeps when it has nothing to send (keepalive needs a look now and then).
constexpr auto kIdlePoll = std::chrono::milliseconds(100);
// A row appended without Wake() is noticed this late at most (a safety net: writers call Wake).
constexpr auto kRescanEvery = std::chrono::milliseconds(1000);
// After DISCONNECT is queued, how long Stop waits for it to leave the socket.
constexpr auto kDisconnectFlush = std::chrono::milliseconds(1000);
// The last libmosquitto error log lines kept to explain a failure (OpenSSL's reasons are only
// reported there).
constexpr std::size_t kKeptErrors = 4;

void InitLibrary() {
  static std::once_flag once;
  // Never cleaned up: other clients may exist until the process ends.
  std::call_once(once, [] { mosquitto_lib_init(); });
}

std::string ErrnoText(int err) { return std::strerror(err); }

// A libmosquitto return code as text; MOSQ_ERR_ERRNO means "see errno".
std::string MosqText(int rc, int saved_errno) {
  if (rc == MOSQ_ERR_ERRNO) return ErrnoText(saved_errno);
  return mosquitto_strerror(rc);
}

// Refuses options that can never work, naming the field.
Status Validate(const MqttOptions& o) {
  auto bad = [](const std::string& what) {
    return Fail(ErrorCode::kInvalidArgument, "mqtt options: " + what);
  };
  if (o.host.empty()) return bad("host is empty");
  if (o.port < 1 || o.port > 65535)
    return bad("port " + std::to_string(o.port) + " is not 1-65535");
  if (o.client_id.empty()) return bad("client_id is empty");
  if (o.client_id.size() > 65535) return bad("client_id is longer than 65535 bytes");
  if (o.keepalive_s < 5 || o.keepalive_s > 65535) {
    return bad("keepalive_s " + std::to_string(o.keepalive_s) + " is not 5-65535");
  }
  if (o.username.empty() && !o.password.empty()) return bad("password given without username");
  if (o.cert_file.empty() != o.key_file.empty()) {
    return bad("cert_file and key_file must be given together");
  }
  if (!o.cert_file.empty() && o.ca_file.empty()) {
    return bad("cert_file given without ca_file (TLS is on only with a CA)");
  }
  for (const auto& [name, path] :
       {std::pair{"ca_file", &o.ca_file}, std::pair{"cert_file", &o.cert_file},
        std::pair{"key_file", &o.key_file}}) {
    if (path->empty()) continue;
    std::ifstream in(*path);
    if (!in) {
      return bad(std::string(name) + " " + path->string() + ": cannot read: " + ErrnoText(errno));
    }
  }
  if (o.connect_timeout.count() <= 0) return bad("connect_timeout must be positive");
  if (o.reconnect_min.count() <= 0 || o.reconnect_max < o.reconnect_min) {
    return bad("reconnect_min must be positive and not above reconnect_max");
  }
  if (o.shards < 1 || o.shard >= o.shards) {
    return bad("shard " + std::to_string(o.shard) + " of " + std::to_string(o.shards) +
               " does not exist");
  }
  if (o.max_inflight < 1 || o.max_inflight > 65535) {
    return bad("max_inflight " + std::to_string(o.max_inflight) + " is not 1-65535");
  }
  if (o.will) {
    if (mosquitto_pub_topic_check2(o.will->topic.c_str(), o.will->topic.size()) !=
            MOSQ_ERR_SUCCESS ||
        mosquitto_validate_utf8(o.will->topic.c_str(), static_cast<int>(o.will->topic.size())) !=
            MOSQ_ERR_SUCCESS) {
      return bad("will topic \"" + o.will->topic + "\" is not a valid topic to publish to");
    }
    if (o.will->qos < 0 || o.will->qos > 2) {
      return bad("will qos " + std::to_string(o.will->qos) + " is not 0, 1 or 2");
    }
  }
  for (std::size_t i = 0; i < o.subscriptions.size(); ++i) {
    const std::string& s = o.subscriptions[i];
    if (mosquitto_sub_topic_check2(s.c_str(), s.size()) != MOSQ_ERR_SUCCESS ||
        mosquitto_validate_utf8(s.c_str(), static_cast<int>(s.size())) != MOSQ_ERR_SUCCESS) {
      return bad("subscriptions[" + std::to_string(i) + "] \"" + s +
                 "\" is not a valid topic filter");
    }
  }
  return Ok();
}

// An eventfd the network thread polls beside the socket, so Wake and Stop need not wait for a
// poll timeout.
class WakeFd final {
 public:
  WakeFd() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~WakeFd() {
    if (fd_ >= 0) close(fd_);
  }
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;
  int fd() const { return fd_; }
  void Signal() const {
    const std::uint64_t one = 1;
    ssize_t ignored = write(fd_, &one, sizeof(one));  // only fails when the counter is full
    (void)ignored;
  }
  void Drain() const {
    std::uint64_t value = 0;
    ssize_t ignored = read(fd_, &value, sizeof(value));
    (void)ignored;
  }

 private:
  int fd_;
};

}  // namespace

struct MqttClient::Impl {
  MqttOptions options;
  Outbox* outbox = nullptr;
  MqttHandlers handlers;
  WakeFd wake_fd;
  std::thread thread;

  std::mutex stop_mu;  // serializes Stop()
  std::atomic<bool> stopping{false};
  std::atomic<bool> woken{false};
  std::atomic<bool> is_connected{false};

  mutable std::mutex counters_mu;
  MqttCounters counters;  // guarded by counters_mu

  // ---- Network thread only ----
  // Events recorded by libmosquitto callbacks, handled after the loop call returns.
  struct Events {
    bool connack = false;
    int connack_rc = 0;
    bool disconnected = false;
    int disconnect_rc = 0;
    std::vector<int> published_mids;
    std::vector<std::string> errors;  // libmosquitto's MOSQ_LOG_ERR lines, newest last
  } events;
  // One connection's publishing state; reset with every new handle.
  std::unordered_map<int, std::int64_t> row_of_mid;
  std::int64_t cursor = 0;
  bool more_rows = true;
  Clock::time_point last_scan{};
  std::mt19937_64 rng{std::random_device{}()};

  void Bump(std::uint64_t MqttCounters::*field, std::uint64_t by = 1) {
    std::lock_guard lock(counters_mu);
    counters.*field += by;
  }

  void Run();
  MqttCounters Counters() const;
  // Makes a handle with every option set; returns null and a reason when libmosquitto refuses.
  Mosq NewHandle(std::string& reason);
  // One connection attempt through to its end; returns why it ended.
  std::string Session();
  // Subscribes, publishes the birth and reports the connection; returns why it failed, or "".
  std::string OnConnected(mosquitto* mosq);
  void PumpOutbox(mosquitto* mosq, std::string& failure);
  void SettleAcks();
  // A failure's text: libmosquitto's code or errno, the OpenSSL errors it logged, and for TLS
  // connections a note that the handshake failed.
  std::string Explain(int rc, int saved_errno) const;
  void SleepBackoff(int attempt);
  void Report(bool up, const std::string& reason) {
    if (handlers.on_connection) handlers.on_connection(up, reason);
  }

  // ---- libmosquitto callbacks (network thread, inside mosquitto_loop_* calls) ----
  static Impl* Self(void* obj) { return static_cast<Impl*>(obj); }
  static void OnConnect(mosquitto*, void* obj, int rc) {
    Self(obj)->events.connack = true;
    Self(obj)->events.connack_rc = rc;
  }
  static void OnDisconnect(mosquitto*, void* obj, int rc) {
    Self(obj)->events.disconnected = true;
    Self(obj)->events.disconnect_rc = rc;
  }
  static void OnPublish(mosquitto*, void* obj, int mid) {
    Self(obj)->events.published_mids.push_back(mid);
  }
  static void OnLog(mosquitto*, void* obj, int level, const char* text) {
    if (level != MOSQ_LOG_ERR || text == nullptr) return;
    auto& errors = Self(obj)->events.errors;
    if (errors.size() == kKeptErrors) errors.erase(errors.begin());
    errors.emplace_back(text);
  }
  static void OnMessage(mosquitto*, void* obj, const mosquitto_message* m) {
    Impl* self = Self(obj);
    const std::string topic = m->topic ? m->topic : "";
    const auto size = static_cast<std::size_t>(std::max(m->payloadlen, 0));
    if (size > self->options.max_incoming_bytes) {
      self->Bump(&MqttCounters::rejected);
      if (self->handlers.on_rejected) {
        self->handlers.on_rejected(topic, "payload of " + std::to_string(size) +
                                              " bytes exceeds the limit of " +
                                              std::to_string(self->options.max_incoming_bytes));
      }
      return;
    }
    self->Bump(&MqttCounters::received);
    if (self->handlers.on_message) {
      MqttMessage message;
      message.topic = topic;
      if (size > 0) message.payload.assign(static_cast<const char*>(m->payload), size);
      message.qos = m->qos;
      message.retain = m->retain;
      self->handlers.on_message(message);
    }
  }
};

std::string MqttClient::Impl::Explain(int rc, int saved_errno) const {
  std::string text = rc == MOSQ_ERR_SUCCESS ? "closed by the broker" : MosqText(rc, saved_errno);
  if (!events.errors.empty()) {
    text += " (";
    for (std::size_t i = 0; i < events.errors.size(); ++i) {
      text += (i > 0 ? "; " : "") + events.errors[i];
    }
    text += ")";
  }
  // Before CONNACK on a TLS connection, a protocol error is the handshake: the broker's
  // certificate did not verify, or the broker refused ours (a TLS alert).
  bool openssl_said = false;
  for (const auto& e : events.errors) {
    openssl_said = openssl_said || e.find("OpenSSL") != std::string::npos;
  }
  const bool tls_failure =
      !options.ca_file.empty() && !is_connected &&
      (rc == MOSQ_ERR_TLS || (rc == MOSQ_ERR_ERRNO && saved_errno == EPROTO) || openssl_said);
  if (tls_failure) text = "TLS handshake failed (certificate check or TLS alert): " + text;
  return text;
}

Mosq MqttClient::Impl::NewHandle(std::string& reason) {
  // A fresh handle per connection: libmosquitto never resends on its own; our outbox is the
  // only memory of what still has to be sent (options.clean_session: see the header).
  Mosq mosq(mosquitto_new(options.client_id.c_str(), options.clean_session, this),
            &mosquitto_destroy);
  if (!mosq) {
    reason = "cannot create a libmosquitto handle: " + ErrnoText(errno);
    return Mosq(nullptr, &mosquitto_destroy);
  }
  mosquitto* m = mosq.get();
  auto check = [&reason](const char* what, int rc) {
    if (rc != MOSQ_ERR_SUCCESS && reason.empty()) {
      reason = std::string(what) + ": " + MosqText(rc, errno);
    }
  };
  check("protocol version", mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311));
  // Threaded: packets (PUBACKs included) are queued, not written inside loop_read; the session
  // loop writes them after loop_read returns, i.e. after on_message (options.ack_after_handler).
  if (options.ack_after_handler) check("threaded", mosquitto_threaded_set(m, true));
  // Our cap, not libmosquitto's default of 20: it decides how many rows wait for a PUBACK.
  check("max inflight",
        mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, static_cast<int>(options.max_inflight)));
  if (!options.username.empty()) {
    check("username",
          mosquitto_username_pw_set(m, options.username.c_str(),
                                    options.password.empty() ? nullptr : options.password.c_str()));
  }
  if (!options.ca_file.empty()) {
    check("tls files", mosquitto_tls_set(
                           m, options.ca_file.c_str(), nullptr,
                           options.cert_file.empty() ? nullptr : options.cert_file.c_str(),
                           options.key_file.empty() ? nullptr : options.key_file.c_str(), nullptr));
    // Verify the broker's certificate against the CA and its name against `host`.
    check("tls options", mosquitto_tls_opts_set(m, 1, nullptr, nullptr));
  }
  if (options.will) {
    const MqttMessage& w = *options.will;
    check("will", mosquitto_will_set(m, w.topic.c_str(), static_cast<int>(w.payload.size()),
                                     w.payload.data(), w.qos, w.retain));
  }
  mosquitto_connect_callback_set(m, &Impl::OnConnect);
  mosquitto_disconnect_callback_set(m, &Impl::OnDisconnect);
  mosquitto_publish_callback_set(m, &Impl::OnPublish);
  mosquitto_message_callback_set(m, &Impl::OnMessage);
  mosquitto_log_callback_set(m, &Impl::OnLog);
  if (!reason.empty()) return Mosq(nullptr, &mosquitto_destroy);
  return mosq;
}

std::string MqttClient::Impl::OnConnected(mosquitto* mosq) {
  is_connected = true;
  std::uint64_t connection = 0;
  {
    std::lock_guard lock(counters_mu);
    connection = ++counters.connections;
  }
  for (const auto& topic : options.subscriptions) {
    const int rc = mosquitto_subscribe(mosq, nullptr, topic.c_str(), 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      return "subscribing to \"" + topic + "\" failed: " + MosqText(rc, errno);
    }
  }
  if (options.birth) {
    if (std::optional<MqttMessage> birth = options.birth(connection)) {
      const int rc = mosquitto_publish(mosq, nullptr, birth->topic.c_str(),
                                       static_cast<int>(birth->payload.size()),
                                       birth->payload.data(), birth->qos, birth->retain);
      if (rc != MOSQ_ERR_SUCCESS) {
        return "publishing the birth message on \"" + birth->topic + "\" (qos " +
               std::to_string(birth->qos) + ") failed: " + MosqText(rc, errno);
      }
    }
  }
  Report(true, "connected to " + options.host + ":" + std::to_string(options.port) +
                   " (connection " + std::to_string(connection) + ")");
  return {};
}

void MqttClient::Impl::PumpOutbox(mosquitto* mosq, std::string& failure) {
  if (outbox == nullptr || !is_connected) return;
  const auto now = Clock::now();
  if (woken.exchange(false) || now - last_scan >= kRescanEvery) more_rows = true;
  const std::size_t room = options.max_inflight - std::min(options.max_inflight, row_of_mid.size());
  if (!more_rows || room == 0) return;
  last_scan = now;
  Result<std::vector<OutboxRow>> rows = outbox->After(cursor, room);
  if (!rows) return;  // the file is busy or failing; the next scan tries again
  more_rows = rows->size() == room;
  for (const OutboxRow& row : *rows) {
    cursor = row.id;
    if (options.shards > 1 && OutboxShard(row.topic, options.shards) != options.shard) continue;
    int mid = 0;
    const int rc =
        mosquitto_publish(mosq, &mid, row.topic.c_str(), static_cast<int>(row.payload.size()),
                          row.payload.data(), row.qos, row.retain);
    if (rc != MOSQ_ERR_SUCCESS) {
      failure =
          "publishing outbox row " + std::to_string(row.id) + " failed: " + MosqText(rc, errno);
      return;
    }
    row_of_mid[mid] = row.id;
    Bump(&MqttCounters::published);
  }
}

void MqttClient::Impl::SettleAcks() {
  if (events.published_mids.empty()) return;
  std::vector<std::int64_t> ids;
  for (int mid : events.published_mids) {
    auto it = row_of_mid.find(mid);
    if (it == row_of_mid.end()) continue;  // the birth message
    ids.push_back(it->second);
    row_of_mid.erase(it);
  }
  events.published_mids.clear();
  if (ids.empty()) return;
  // A failed delete leaves the rows queued: they are sent again on the next connection.
  (void)outbox->Ack(ids);
  Bump(&MqttCounters::acked, ids.size());
  if (!ids.empty()) more_rows = true;
}

std::string MqttClient::Impl::Session() {
  events = Events{};
  row_of_mid.clear();
  cursor = 0;
  more_rows = true;
  std::string reason;
  Mosq handle = NewHandle(reason);
  if (!handle) return reason;
  mosquitto* mosq = handle.get();
  const std::string where = options.host + ":" + std::to_string(options.port);

  errno = 0;
  int rc = mosquitto_connect_async(mosq, options.host.c_str(), options.port, options.keepalive_s);
  if (rc != MOSQ_ERR_SUCCESS) return "cannot connect to " + where + ": " + Explain(rc, errno);
  const auto connect_deadline = Clock::now() + options.connect_timeout;
  // Stopping: DISCONNECT (so the broker drops the will) once connected; a CONNACK still on its
  // way is awaited for a moment, since closing after CONNECT without DISCONNECT sends the will.
  bool stop_sent = false;
  std::optional<Clock::time_point> stop_deadline;
  for (;;) {
    if (stopping && !stop_deadline) stop_deadline = Clock::now() + kDisconnectFlush;
    if (stopping && is_connected && !stop_sent) {
      (void)mosquitto_disconnect(mosq);
      stop_sent = true;
    }
    if (stop_deadline && Clock::now() > *stop_deadline) return "client stopped";

    const int sock = mosquitto_socket(mosq);
    if (sock < 0) {
      if (stopping) return "client stopped";
      return "connection to " + where + " closed";
    }
    std::chrono::milliseconds timeout = kIdlePoll;
    if (is_connected && outbox != nullptr && (more_rows || woken) &&
        row_of_mid.size() < options.max_inflight) {
      timeout = std::chrono::milliseconds(0);
    }
    std::array<pollfd, 2> fds{};
    fds[0] = {sock, static_cast<short>(POLLIN | (mosquitto_want_write(mosq) ? POLLOUT : 0)), 0};
    fds[1] = {wake_fd.fd(), POLLIN, 0};
    const int ready = poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
    if (ready < 0 && errno != EINTR) return "poll failed: " + ErrnoText(errno);
    if (fds[1].revents & POLLIN) wake_fd.Drain();

    rc = MOSQ_ERR_SUCCESS;
    errno = 0;
    if (ready > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      rc = mosquitto_loop_read(mosq, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket(mosq) >= 0 &&
        ((ready > 0 && (fds[0].revents & POLLOUT)) || mosquitto_want_write(mosq))) {
      rc = mosquitto_loop_write(mosq, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket(mosq) >= 0) rc = mosquitto_loop_misc(mosq);
    const int loop_errno = errno;

    if (events.connack) {
      events.connack = false;
      if (events.connack_rc != 0) {
        return "the broker at " + where +
               " refused the connection: " + mosquitto_connack_string(events.connack_rc);
      }
      if (stopping) {
        is_connected = true;  // only to say goodbye: no birth, no rows, no handler
        continue;
      }
      std::string failure = OnConnected(mosq);
      if (!failure.empty()) return failure;
    }
    std::string failure;
    if (!stopping) PumpOutbox(mosq, failure);
    SettleAcks();
    if (!failure.empty()) return failure;
    if (events.disconnected || (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) ||
        mosquitto_socket(mosq) < 0) {
      if (stopping) return "client stopped";
      const int why = events.disconnected && events.disconnect_rc != 0 ? events.disconnect_rc : rc;
      return (is_connected ? "connection to " + where + " lost: "
                           : "connecting to " + where + " failed: ") +
             Explain(why, loop_errno);
    }
    if (!is_connected && Clock::now() > connect_deadline) {
      return "no CONNACK from " + where + " within " +
             std::to_string(options.connect_timeout.count()) + " ms";
    }
  }
}

void MqttClient::Impl::SleepBackoff(int attempt) {
  const auto min = options.reconnect_min;
  auto base = options.reconnect_max;
  if (attempt < 30) base = std::min(options.reconnect_max, min * (std::int64_t{1} << attempt));
  // "Equal jitter": half the delay is fixed, half random, so a fleet that lost the same broker
  // does not come back in step.
  std::uniform_int_distribution<std::int64_t> jitter(0, base.count() / 2);
  const auto delay = std::chrono::milliseconds(base.count() - base.count() / 2 + jitter(rng));
  const auto deadline = Clock::now() + delay;
  while (!stopping) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return;
    pollfd fd{wake_fd.fd(), POLLIN, 0};
    if (poll(&fd, 1, static_cast<int>(left.count())) > 0) wake_fd.Drain();
  }
}

void MqttClient::Impl::Run() {
  // A TLS write to a closed socket raises SIGPIPE (OpenSSL does not use MSG_NOSIGNAL); blocked
  // on this thread it stays pending and the write fails with EPIPE instead of killing the agent.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);

  int attempt = 0;
  while (!stopping) {
    const std::uint64_t before = Counters().connections;
    const std::string reason = Session();
    is_connected = false;
    if (Counters().connections != before) attempt = 0;  // a CONNACK resets the backoff
    Report(false, reason);
    if (stopping) break;
    SleepBackoff(attempt++);
  }
}

MqttCounters MqttClient::Impl::Counters() const {
  std::lock_guard lock(counters_mu);
  return counters;
}

std::size_t OutboxShard(std::string_view topic, std::size_t shards) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : topic) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return shards == 0 ? 0 : static_cast<std::size_t>(h % shards);
}

MqttClient::MqttClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MqttClient::~MqttClient() { Stop(); }

Result<std::unique_ptr<MqttClient>> MqttClient::Start(MqttOptions options, Outbox* outbox,
                                                      MqttHandlers handlers) {
  EF_RETURN_IF_ERROR(Validate(options));
  InitLibrary();
  auto impl = std::make_unique<Impl>();
  if (impl->wake_fd.fd() < 0) {
    return Fail(ErrorCode::kIo, "mqtt client: eventfd: " + ErrnoText(errno));
  }
  impl->options = std::move(options);
  impl->outbox = outbox;
  impl->handlers = std::move(handlers);
  // A first handle here, so options libmosquitto rejects fail Start instead of every attempt.
  // It is never connected and is destroyed at once; the network thread makes its own.
  std::string reason;
  if (!impl->NewHandle(reason)) {
    return Fail(ErrorCode::kInvalidArgument, "mqtt client: " + reason);
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<MqttClient>(new MqttClient(std::move(impl)));
}

void MqttClient::Wake() {
  impl_->woken = true;
  impl_->wake_fd.Signal();
}

void MqttClient::Stop() {
  std::lock_guard lock(impl_->stop_mu);
  impl_->stopping = true;
  impl_->wake_fd.Signal();
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool MqttClient::connected() const { return impl_->is_connected; }

MqttCounters MqttClient::Counters() const { return impl_->Counters(); }

}  // namespace edgefleet::telemetry
