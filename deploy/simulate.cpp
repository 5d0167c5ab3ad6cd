// `edgefleet simulate`: see simulate.hpp. One thread runs every connection through one epoll
// set with the simulator's own MQTT packets (deploy/sim_mqtt.hpp says why not libmosquitto), so
// ten thousand devices cost ten thousand sockets, not threads, and about two system calls per
// message; a schedule ordered by due time finds what is due without visiting every device.
#include "deploy/simulate.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <queue>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "deploy/common/files.hpp"
#include "deploy/common/stop_signals.hpp"
#include "deploy/sim_device.hpp"
#include "deploy/sim_mqtt.hpp"
#include "manifests/log_value.hpp"
#include "manifests/time.hpp"

namespace edgefleet::deploy {
namespace {

using manifests::LogValue;
using manifests::NowMs;
using nlohmann::json;
using Kind = SimMessage::Kind;

constexpr int kKeepaliveS = 30;
constexpr std::int64_t kReconnectMs = 1000;
constexpr std::int64_t kConnectTimeoutMs = 15000;
constexpr std::int64_t kDrainMs = 10000;  // at the end: waiting for PUBACKs and DISCONNECTs

std::size_t Index(Kind k) { return static_cast<std::size_t>(k); }

// A stable hash of the device name decides whether it fails updates: FNV-1a, then splitmix64's
// finalizer (FNV alone barely moves the low bits between sim-00001 and sim-00002).
std::uint64_t NameHash(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

struct Totals {
  std::array<std::uint64_t, 3> sent{};   // by Kind
  std::array<std::uint64_t, 3> acked{};  // PUBACK received
  std::array<std::uint64_t, 3> unacked_at_loss{};
  std::uint64_t publish_failed = 0;
  std::uint64_t connects = 0;  // CONNACKs accepted
  std::uint64_t refused = 0;   // CONNACKs refusing
  std::uint64_t lost = 0;      // connections lost (or never completed)
  std::uint64_t desired_messages = 0;
  std::uint64_t protocol_errors = 0;  // packets the broker should not have sent
};

constexpr std::size_t kMaxSimName = 1024;
constexpr std::size_t kMaxInflight = 1000;      // per device; more unacknowledged: not sent
constexpr std::size_t kMaxIncoming = 1u << 20;  // a packet from the broker above this: an error
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

struct Conn {
  enum class State { kIdle, kTcp, kMqtt, kUp };  // no socket, connecting, CONNECT sent, CONNACK'd
  std::unique_ptr<SimDevice> device;
  int fd = -1;
  State state = State::kIdle;
  std::uint32_t armed = 0;  // the epoll events this socket is registered for
  bool stopping = false;    // DISCONNECT sent: a loss is the end, not a reason to reconnect
  std::int64_t started_ms = 0;
  std::int64_t retry_ms = 0;         // when to connect again (0: not waiting)
  std::int64_t last_out_ms = 0;      // the last bytes written (keepalive)
  std::int64_t ping_ms = 0;          // a PINGREQ unanswered since (0: none)
  std::int64_t queued_due = kNever;  // the time this device waits for in the schedule
  std::int64_t next_read_ms = 0;     // with --read-every-s: the next read of a connected socket
  std::uint64_t connections = 0;
  std::size_t attempts = 0;  // TCP connects tried: which resolved address is next
  std::uint16_t last_id = 0;
  std::vector<std::pair<std::uint16_t, Kind>> inflight;  // PUBACKs arrive in order
  std::string out;                                       // bytes not written yet, from out_off
  std::size_t out_off = 0;
  std::string in;  // a packet not read whole yet
  const std::vector<std::string>* topics = nullptr;

  bool connected() const { return state == State::kUp; }
};

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_INET;
};

class Simulation final {
 public:
  Simulation(const SimulateOptions& o, const HostPort& broker) : o_(o), broker_(broker) {
    profile_.fleet = o.fleet;
    profile_.groups = o.groups;
    profile_.model = o.model;
    profile_.version = o.version;
    profile_.window_s = o.window_s;
    profile_.event_every_s = o.event_every_s;
    profile_.update_s = o.update_s;
    read_every_ms_ = std::llround(o.read_every_s * 1000);
  }
  ~Simulation() {
    for (Conn& c : conns_) Drop(c);
    if (epoll_ >= 0) close(epoll_);
  }
  Simulation(const Simulation&) = delete;
  Simulation& operator=(const Simulation&) = delete;

  Status Init() {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(broker_.port);
    if (const int rc = getaddrinfo(broker_.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  "--broker: cannot resolve " + LogValue(broker_.host) + ": " + gai_strerror(rc));
    }
    for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
      if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
      Address address;
      std::memcpy(&address.addr, a->ai_addr, a->ai_addrlen);
      address.len = a->ai_addrlen;
      address.family = a->ai_family;
      addresses_.push_back(address);
    }
    freeaddrinfo(found);
    if (addresses_.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "--broker: " + LogValue(broker_.host) + " has no usable address");
    }
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) return Fail(ErrorCode::kIo, std::string("epoll_create1: ") + strerror(errno));
    const std::int64_t now = NowMs();
    const auto threshold = static_cast<std::uint64_t>(std::llround(
        o_.fail_share * static_cast<double>(std::numeric_limits<std::uint32_t>::max())));
    conns_.resize(o_.devices);
    topics_.resize(o_.devices);
    for (std::size_t i = 0; i < o_.devices; ++i) {
      const std::string name = fmt::format("{}{:05}", o_.prefix, i + 1);
      const std::uint64_t h = NameHash(name);
      const bool fails = o_.fail_share > 0 && (h & 0xffffffffULL) < threshold;
      conns_[i].device = std::make_unique<SimDevice>(&profile_, name, fails, h, now);
      topics_[i] = conns_[i].device->DesiredTopics();
      conns_[i].topics = &topics_[i];
      if (fails) ++failing_;
    }
    return Ok();
  }

  // Runs until `end_ms` or a signal; then says goodbye on every connection.
  int Run(std::int64_t end_ms, const StopSignals& stop) {
    const std::int64_t start = NowMs();
    std::size_t opened = 0;
    std::int64_t next_misc = start + 1000, next_progress = start + 10000;
    int signo = 0;
    std::vector<SimMessage> due;
    std::vector<std::size_t> ready;
    for (;;) {
      std::int64_t now = NowMs();
      if (now >= end_ms) break;
      if ((signo = stop.Wait(std::chrono::milliseconds(0))) != 0) break;
      // Open connections at the configured rate.
      const auto allowed = static_cast<std::size_t>(static_cast<double>(now - start) / 1000.0 *
                                                    static_cast<double>(o_.connect_rate)) +
                           1;
      while (opened < conns_.size() && opened < allowed) Open(conns_[opened++], now);

      PollOnce(5);
      // What is due: windows, events, update steps (only on a live connection; a real agent
      // would queue them in its outbox, the simulator just does not make them). The schedule
      // holds each connected device's next due time, so a pass costs what is due, not the fleet.
      now = NowMs();
      ready.clear();
      while (!schedule_.empty() && schedule_.top().first <= now) {
        const auto [when, index] = schedule_.top();
        schedule_.pop();
        if (when != conns_[index].queued_due) continue;  // superseded by an earlier time
        conns_[index].queued_due = kNever;
        ready.push_back(index);
      }
      // Taken from the schedule first, so a device still due after TakeDue waits for the next
      // pass instead of holding this one.
      for (const std::size_t index : ready) {
        Conn& c = conns_[index];
        if (!c.connected()) continue;  // scheduled again when it connects
        if (c.device->NextDue() <= now) {
          due.clear();
          c.device->TakeDue(now, &due);
          for (const SimMessage& m : due) PublishOn(c, m);
          Flush(c, now);
        }
        Schedule(c);
      }
      if (now >= next_misc) {
        next_misc = now + 1000;
        for (Conn& c : conns_) Misc(c, now);
      }
      if (now >= next_progress) {
        next_progress = now + 10000;
        Progress("simulate_progress", now - start);
      }
    }
    Goodbye();
    Progress("simulate_stopped", NowMs() - start);
    return signo;
  }

  json Report(std::int64_t elapsed_ms) const {
    std::uint64_t numbered = 0, windows = 0, windows_late = 0, events = 0, desired = 0,
                  rejected = 0, committed = 0, failed = 0;
    for (const Conn& c : conns_) {
      const auto& k = c.device->counters();
      numbered += k.numbered;
      windows += k.windows;
      windows_late += k.windows_late;
      events += k.events;
      desired += k.desired;
      rejected += k.rejected;
      committed += k.committed;
      failed += k.failed;
    }
    auto kind = [&](Kind k) {
      return json{{"sent", totals_.sent[Index(k)]},
                  {"acked", totals_.acked[Index(k)]},
                  {"unacked_at_disconnect", totals_.unacked_at_loss[Index(k)]}};
    };
    return json{
        {"fleet", o_.fleet},
        {"broker", o_.broker},
        {"devices", o_.devices},
        {"devices_failing_updates", failing_},
        {"elapsed_s", static_cast<double>(elapsed_ms) / 1000.0},
        {"connections",
         {{"accepted", totals_.connects},
          {"refused", totals_.refused},
          {"lost", totals_.lost},
          {"protocol_errors", totals_.protocol_errors}}},
        {"status", kind(Kind::kStatus)},
        {"windows", kind(Kind::kWindow)},
        {"events", kind(Kind::kEvent)},
        {"numbered", numbered},
        {"publish_failed", totals_.publish_failed},
        {"desired",
         {{"messages", totals_.desired_messages},
          {"taken", desired},
          {"rejected", rejected},
          {"committed", committed},
          {"failed", failed}}},
        {"made", {{"windows", windows}, {"events", events}, {"windows_late", windows_late}}}};
  }

 private:
  std::size_t IndexOf(const Conn& c) const { return static_cast<std::size_t>(&c - conns_.data()); }

  // Puts a connected device's next due time in the schedule unless an earlier one is there.
  void Schedule(Conn& c) {
    if (!c.connected()) return;
    const std::int64_t when = c.device->NextDue();
    if (when >= c.queued_due) return;
    c.queued_due = when;
    schedule_.emplace(when, IndexOf(c));
  }

  // Once a second per device: reconnect when due, time out a connect, keep the connection alive.
  void Misc(Conn& c, std::int64_t now) {
    if (c.fd < 0) {
      if (c.retry_ms != 0 && now >= c.retry_ms) Open(c, now);
      return;
    }
    if (!c.connected()) {
      if (now - c.started_ms > kConnectTimeoutMs) Lose(c, now);
      return;
    }
    if (read_every_ms_ > 0 && now >= c.next_read_ms) {
      c.next_read_ms = now + read_every_ms_;
      Receive(c, now);
      if (c.fd < 0) return;
      Flush(c, now);  // the PUBACKs of desired-state messages, and re-arming
      if (c.fd < 0) return;
    }
    constexpr std::int64_t keepalive_ms = kKeepaliveS * 1000;
    if (c.ping_ms != 0 && now - c.ping_ms > keepalive_ms) return Lose(c, now);
    if (c.ping_ms == 0 && now - c.last_out_ms >= keepalive_ms) {
      sim_mqtt::AppendPingreq(&c.out);
      c.ping_ms = now;
      Flush(c, now);
    }
  }

  std::uint16_t NextId(Conn& c) {
    if (++c.last_id == 0) c.last_id = 1;
    return c.last_id;
  }

  void PublishOn(Conn& c, const SimMessage& m) {
    if (c.inflight.size() >= kMaxInflight) {
      ++totals_.publish_failed;
      return;
    }
    const std::uint16_t id = NextId(c);
    sim_mqtt::AppendPublish(&c.out, m.topic, m.payload, id, m.retain);
    ++totals_.sent[Index(m.kind)];
    c.inflight.emplace_back(id, m.kind);
  }

  void Open(Conn& c, std::int64_t now) {
    c.retry_ms = 0;
    c.state = Conn::State::kIdle;
    c.started_ms = now;
    const Address& a = addresses_[c.attempts++ % addresses_.size()];
    c.fd = socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return Lose(c, now);
    const int one = 1;
    (void)setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len) != 0 &&
        errno != EINPROGRESS) {
      return Lose(c, now);
    }
    c.state = Conn::State::kTcp;
    const SimMessage will = c.device->Status(false, 0, now);
    sim_mqtt::AppendConnect(&c.out, c.device->name(), kKeepaliveS,
                            sim_mqtt::Will{will.topic, will.payload, true}, o_.username,
                            o_.password);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = IndexOf(c);
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev) != 0) return Lose(c, now);
    c.armed = ev.events;
  }

  // Whether epoll should report what arrives on `c`: always, except on a connected socket
  // with --read-every-s while the run lasts (Misc reads it then).
  bool ReadsOnArrival(const Conn& c) const {
    return read_every_ms_ == 0 || !c.connected() || draining_;
  }

  // Writes what is pending; the socket is watched for writing exactly while bytes are left, and
  // for reading as ReadsOnArrival says.
  void Flush(Conn& c, std::int64_t now) {
    if (c.fd < 0 || c.state == Conn::State::kTcp) return;
    while (c.out_off < c.out.size()) {
      const ssize_t n =
          send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<std::size_t>(n);
        c.last_out_ms = now;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        return Lose(c, now);
      }
    }
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
    }
    const std::uint32_t want = (ReadsOnArrival(c) ? EPOLLIN : 0u) | (c.out.empty() ? 0u : EPOLLOUT);
    if (want != c.armed) {
      epoll_event ev{};
      ev.events = want;  // EPOLLHUP and EPOLLERR are reported whatever this says
      ev.data.u64 = IndexOf(c);
      (void)epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
      c.armed = want;
    }
  }

  // Waits up to `timeout_ms` for sockets that can be read or written, and serves them.
  void PollOnce(int timeout_ms) {
    std::array<epoll_event, 256> events{};
    const int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout_ms);
    const std::int64_t now = NowMs();
    for (int k = 0; k < n; ++k) {
      Conn& c = conns_[events[k].data.u64];
      if (c.fd < 0) continue;
      if (c.state == Conn::State::kTcp && (events[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int error = 0;
        socklen_t len = sizeof error;
        if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
          Lose(c, now);
          continue;
        }
        c.state = Conn::State::kMqtt;
      }
      if (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) Receive(c, now);
      Flush(c, now);
    }
  }

  // Reads what the socket holds and handles every whole packet in it.
  void Receive(Conn& c, std::int64_t now) {
    std::array<char, 16384> buffer;
    for (;;) {
      const ssize_t n = read(c.fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) return Lose(c, now);  // the broker closed the connection, or an error
      c.in.append(buffer.data(), static_cast<std::size_t>(n));
      std::string_view rest(c.in);
      for (;;) {
        sim_mqtt::Packet p;
        std::size_t used = 0;
        const sim_mqtt::Read r = sim_mqtt::NextPacket(rest, kMaxIncoming, &p, &used);
        if (r == sim_mqtt::Read::kIncomplete) break;
        if (r == sim_mqtt::Read::kMalformed || !Handle(c, p, now)) {
          ++totals_.protocol_errors;
          spdlog::warn("event=simulate_protocol_error device={} packet_type={}",
                       LogValue(c.device->name()),
                       rest.empty() ? 0 : static_cast<unsigned char>(rest[0]) >> 4);
          return Lose(c, now);
        }
        if (c.fd < 0) return;  // Handle lost the connection
        rest.remove_prefix(used);
      }
      c.in.erase(0, c.in.size() - rest.size());
      if (static_cast<std::size_t>(n) < buffer.size()) return;
    }
  }

  // One packet from the broker; false: it breaks the protocol.
  bool Handle(Conn& c, const sim_mqtt::Packet& p, std::int64_t now) {
    switch (p.type) {
      case sim_mqtt::Type::kConnack: {
        std::uint8_t rc = 0;
        if (c.state != Conn::State::kMqtt || !sim_mqtt::ParseConnack(p, &rc)) return false;
        if (rc != 0) {
          ++totals_.refused;
          Lose(c, now);
          return true;
        }
        ++totals_.connects;
        c.state = Conn::State::kUp;
        c.ping_ms = 0;
        c.next_read_ms = now + read_every_ms_;
        c.device->OnConnected(now);
        sim_mqtt::AppendSubscribe(&c.out, NextId(c), *c.topics);
        PublishOn(c, c.device->Status(true, ++c.connections, now));
        Schedule(c);
        return true;
      }
      case sim_mqtt::Type::kPuback: {
        std::uint16_t id = 0;
        if (!sim_mqtt::ParsePuback(p, &id)) return false;
        for (auto it = c.inflight.begin(); it != c.inflight.end(); ++it) {
          if (it->first != id) continue;
          ++totals_.acked[Index(it->second)];
          c.inflight.erase(it);
          break;
        }
        return true;
      }
      case sim_mqtt::Type::kPublish: {
        sim_mqtt::Publish m;
        if (!c.connected() || !sim_mqtt::ParsePublish(p, &m)) return false;
        if (m.qos == 1) sim_mqtt::AppendPuback(&c.out, m.id);
        ++totals_.desired_messages;
        c.device->OnDesired(std::string(m.topic), m.payload, now);
        Schedule(c);
        return true;
      }
      case sim_mqtt::Type::kSuback:
        return c.connected();
      case sim_mqtt::Type::kPingresp:
        c.ping_ms = 0;
        return c.connected();
      default:
        return false;
    }
  }

  void Drop(Conn& c) {
    if (c.fd < 0) return;
    (void)epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    for (const auto& [id, kind] : c.inflight) ++totals_.unacked_at_loss[Index(kind)];
    c.inflight.clear();
    c.out.clear();
    c.out_off = 0;
    c.in.clear();
    c.fd = -1;
    c.state = Conn::State::kIdle;
    c.armed = 0;
  }

  void Lose(Conn& c, std::int64_t now) {
    if (!c.stopping) ++totals_.lost;
    Drop(c);
    if (!c.stopping)
      c.retry_ms =
          now + kReconnectMs + static_cast<std::int64_t>(NameHash(c.device->name()) % 1000);
  }

  // Every device publishes its offline status and disconnects; waits (bounded) for the PUBACKs.
  void Goodbye() {
    const std::int64_t now = NowMs();
    draining_ = true;  // from here every socket is read as data arrives
    for (Conn& c : conns_) {
      c.retry_ms = 0;
      if (c.connected() && read_every_ms_ > 0) Receive(c, now);  // what came since the last read
      if (!c.connected()) {
        c.stopping = true;
        Drop(c);
        continue;
      }
      PublishOn(c, c.device->Status(false, c.connections, now));
      Flush(c, now);
    }
    const std::int64_t deadline = NowMs() + kDrainMs;
    auto pending = [&] {
      std::size_t left = 0;
      for (const Conn& c : conns_) left += c.inflight.size();
      return left;
    };
    while (pending() > 0 && NowMs() < deadline) {
      PollOnce(20);
    }
    for (Conn& c : conns_) {
      if (c.fd < 0) continue;
      c.stopping = true;
      sim_mqtt::AppendDisconnect(&c.out);
      Flush(c, NowMs());
      Drop(c);
    }
  }

  void Progress(const char* event, std::int64_t elapsed_ms) const {
    std::size_t connected = 0;
    std::uint64_t late = 0;
    for (const Conn& c : conns_) {
      connected += c.connected() ? 1 : 0;
      late += c.device->counters().windows_late;
    }
    spdlog::info(
        "event={} elapsed_s={:.0f} devices={} connected={} windows={} windows_acked={} "
        "windows_late={} events={} events_acked={} lost={} publish_failed={} desired={}",
        event, static_cast<double>(elapsed_ms) / 1000.0, conns_.size(), connected,
        totals_.sent[Index(Kind::kWindow)], totals_.acked[Index(Kind::kWindow)], late,
        totals_.sent[Index(Kind::kEvent)], totals_.acked[Index(Kind::kEvent)], totals_.lost,
        totals_.publish_failed, totals_.desired_messages);
  }

  const SimulateOptions& o_;
  HostPort broker_;
  SimProfile profile_;
  std::vector<Conn> conns_;
  std::vector<std::vector<std::string>> topics_;
  Totals totals_;
  std::vector<Address> addresses_;
  std::priority_queue<std::pair<std::int64_t, std::size_t>,
                      std::vector<std::pair<std::int64_t, std::size_t>>, std::greater<>>
      schedule_;  // (due ms, device index), earliest first; stale entries are skipped
  std::size_t failing_ = 0;
  int epoll_ = -1;
  std::int64_t read_every_ms_ = 0;  // --read-every-s
  bool draining_ = false;           // Goodbye has begun
};

Status Check(const SimulateOptions& o) {
  auto bad = [](const std::string& what) { return Fail(ErrorCode::kInvalidArgument, what); };
  if (o.fleet.empty()) return bad("--fleet: must not be empty");
  if (o.devices == 0 || o.devices > kMaxSimDevices) {
    return bad("--devices: expected 1.." + std::to_string(kMaxSimDevices) + ", found " +
               std::to_string(o.devices));
  }
  if (o.duration <= std::chrono::milliseconds(0) || o.duration > kMaxSimDuration) {
    return bad("--duration: expected more than 0 and at most 24h, found " +
               std::to_string(o.duration.count()) + " ms");
  }
  if (!(o.window_s >= 0.1 && o.window_s <= 3600)) {
    return bad("--window-s: expected 0.1..3600, found " + std::to_string(o.window_s));
  }
  if (!(o.event_every_s == 0 || (o.event_every_s >= 0.1 && o.event_every_s <= 86400))) {
    return bad("--event-every-s: expected 0 (none) or 0.1..86400, found " +
               std::to_string(o.event_every_s));
  }
  if (!(o.update_s >= 0 && o.update_s <= 3600)) {
    return bad("--update-s: expected 0..3600, found " + std::to_string(o.update_s));
  }
  if (!(o.fail_share >= 0 && o.fail_share <= 1)) {
    return bad("--fail-share: expected 0..1, found " + std::to_string(o.fail_share));
  }
  if (!(o.read_every_s >= 0 && o.read_every_s <= 10)) {
    return bad("--read-every-s: expected 0..10 (under the " + std::to_string(kKeepaliveS) +
               " s keepalive), found " + std::to_string(o.read_every_s));
  }
  if (o.connect_rate == 0 || o.connect_rate > 100000) {
    return bad("--connect-rate: expected 1..100000, found " + std::to_string(o.connect_rate));
  }
  if (o.prefix.empty() || o.prefix.find_first_of("/+#") != std::string::npos) {
    return bad("--prefix: expected a non-empty name without '/', '+' or '#', found " +
               LogValue(o.prefix));
  }
  if (!o.password.empty() && o.username.empty()) return bad("--password: given without --username");
  // Names end up in MQTT string fields (topics, client id, credentials): far under their 64 KiB.
  const std::pair<const char*, const std::string*> names[] = {
      {"--fleet", &o.fleet},     {"--prefix", &o.prefix},     {"--model", &o.model},
      {"--version", &o.version}, {"--username", &o.username}, {"--password", &o.password}};
  for (const auto& [flag, value] : names) {
    if (value->size() > kMaxSimName) {
      return bad(std::string(flag) + ": expected at most " + std::to_string(kMaxSimName) +
                 " bytes, found " + std::to_string(value->size()));
    }
  }
  for (const std::string& g : o.groups) {
    if (g.size() > kMaxSimName) {
      return bad("--group: expected at most " + std::to_string(kMaxSimName) + " bytes, found " +
                 std::to_string(g.size()));
    }
  }
  return Ok();
}

}  // namespace

Status Simulate(const SimulateOptions& options, std::ostream& out) {
  EF_RETURN_IF_ERROR(Check(options));
  EF_ASSIGN_OR_RETURN(const HostPort broker, ParseHostPort("--broker", options.broker, 1));
  if (!IsLoopback(broker.host) && !options.allow_remote) {
    return Fail(ErrorCode::kInvalidArgument,
                "--broker: " + LogValue(broker.host) +
                    " is not a loopback address; a load tool aims at another host only with "
                    "--allow-remote");
  }
  // One descriptor per device and a few for the process: raise the limit to that, the hard one
  // too where the process may (root), or say what is missing.
  rlimit nofile{};
  const auto need = static_cast<rlim_t>(options.devices + 64);
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < need) {
    rlimit raised{need, std::max(need, nofile.rlim_max)};
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      return Fail(ErrorCode::kLimit, "--devices: " + std::to_string(options.devices) +
                                         " connections need " + std::to_string(need) +
                                         " open files (one per device); the hard limit "
                                         "(ulimit -Hn) is " +
                                         std::to_string(nofile.rlim_max) +
                                         " and could not be raised: " + strerror(errno));
    }
  }
  const StopSignals stop;
  UseKeyValueLog("edgefleet-simulate");
  Simulation sim(options, broker);
  EF_RETURN_IF_ERROR(sim.Init());
  spdlog::info(
      "event=simulate_started broker={} fleet={} devices={} duration_s={:.1f} window_s={} "
      "fail_share={} read_every_s={}",
      LogValue(options.broker), LogValue(options.fleet), options.devices,
      static_cast<double>(options.duration.count()) / 1000.0, options.window_s, options.fail_share,
      options.read_every_s);
  const std::int64_t start = NowMs();
  const int signo = sim.Run(start + options.duration.count(), stop);
  json report = sim.Report(NowMs() - start);
  if (signo != 0) report["stopped_by"] = StopSignals::Name(signo);
  const std::string text = report.dump(1) + "\n";
  out << text << std::flush;
  if (options.report) EF_RETURN_IF_ERROR(WriteFileAtomically(*options.report, text));
  return Ok();
}

}  // namespace edgefleet::deploy
