// `edgefleet simulate`: see simulate.hpp. One thread runs every connection through one epoll
// set, calling libmosquitto's loop_read / loop_write / loop_misc per socket (the external-loop
// use the library documents), so ten thousand devices cost ten thousand sockets, not threads.
#include "deploy/simulate.hpp"

#include <mosquitto.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "deploy/common/files.hpp"
#include "deploy/common/stop_signals.hpp"
#include "deploy/sim_device.hpp"
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
};

struct Conn {
  std::unique_ptr<SimDevice> device;
  mosquitto* mosq = nullptr;
  int fd = -1;
  bool connected = false;
  bool out_armed = false;
  bool lost = false;      // set by the disconnect callback
  bool stopping = false;  // DISCONNECT sent: a loss is the end, not a reason to reconnect
  std::int64_t started_ms = 0;
  std::int64_t retry_ms = 0;  // when to connect again (0: not waiting)
  std::uint64_t connections = 0;
  std::unordered_map<int, Kind> inflight;  // mid -> kind
  Totals* totals = nullptr;
  const std::vector<std::string>* topics = nullptr;
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
  }
  ~Simulation() {
    for (Conn& c : conns_) Drop(c);
    if (epoll_ >= 0) close(epoll_);
  }
  Simulation(const Simulation&) = delete;
  Simulation& operator=(const Simulation&) = delete;

  Status Init() {
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
      conns_[i].totals = &totals_;
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
    for (;;) {
      const std::int64_t now = NowMs();
      if (now >= end_ms) break;
      if ((signo = stop.Wait(std::chrono::milliseconds(0))) != 0) break;
      // Open connections at the configured rate.
      const auto allowed = static_cast<std::size_t>(static_cast<double>(now - start) / 1000.0 *
                                                    static_cast<double>(o_.connect_rate)) +
                           1;
      while (opened < conns_.size() && opened < allowed) Open(conns_[opened++], now);

      PollOnce(5);
      // What is due: windows, events, update steps (only on a live connection; a real agent
      // would queue them in its outbox, the simulator just does not make them).
      for (Conn& c : conns_) {
        if (!c.connected || c.device->NextDue() > now) continue;
        due.clear();
        c.device->TakeDue(now, &due);
        for (const SimMessage& m : due) PublishOn(c, m);
        Settle(c, MOSQ_ERR_SUCCESS, now);
      }
      if (now >= next_misc) {
        next_misc = now + 1000;
        for (Conn& c : conns_) {
          if (c.mosq != nullptr) {
            Settle(c, mosquitto_loop_misc(c.mosq), now);
            if (c.mosq != nullptr && !c.connected && now - c.started_ms > kConnectTimeoutMs) {
              Lose(c, now);
            }
          } else if (c.retry_ms != 0 && now >= c.retry_ms) {
            Open(c, now);
          }
        }
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
         {{"accepted", totals_.connects}, {"refused", totals_.refused}, {"lost", totals_.lost}}},
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
  static void OnConnect(mosquitto* m, void* obj, int rc) {
    auto* c = static_cast<Conn*>(obj);
    if (rc != 0) {
      ++c->totals->refused;
      c->lost = true;
      return;
    }
    ++c->totals->connects;
    c->connected = true;
    c->device->OnConnected(NowMs());
    for (const auto& t : *c->topics) (void)mosquitto_subscribe(m, nullptr, t.c_str(), 1);
    SimMessage birth = c->device->Status(true, ++c->connections, NowMs());
    PublishOn(*c, birth);
  }
  static void OnDisconnect(mosquitto*, void* obj, int) { static_cast<Conn*>(obj)->lost = true; }
  static void OnPublish(mosquitto*, void* obj, int mid) {
    auto* c = static_cast<Conn*>(obj);
    auto it = c->inflight.find(mid);
    if (it == c->inflight.end()) return;
    ++c->totals->acked[Index(it->second)];
    c->inflight.erase(it);
  }
  static void OnMessage(mosquitto*, void* obj, const mosquitto_message* m) {
    auto* c = static_cast<Conn*>(obj);
    ++c->totals->desired_messages;
    c->device->OnDesired(m->topic,
                         std::string_view(static_cast<const char*>(m->payload),
                                          static_cast<std::size_t>(std::max(0, m->payloadlen))),
                         NowMs());
  }

  static void PublishOn(Conn& c, const SimMessage& m) {
    int mid = 0;
    const int rc =
        mosquitto_publish(c.mosq, &mid, m.topic.c_str(), static_cast<int>(m.payload.size()),
                          m.payload.data(), 1, m.retain);
    if (rc != MOSQ_ERR_SUCCESS) {
      ++c.totals->publish_failed;
      return;
    }
    ++c.totals->sent[Index(m.kind)];
    c.inflight[mid] = m.kind;
  }

  void Open(Conn& c, std::int64_t now) {
    c.retry_ms = 0;
    c.lost = false;
    c.connected = false;
    c.started_ms = now;
    const std::string& name = c.device->name();
    c.mosq = mosquitto_new(name.c_str(), true, &c);
    if (c.mosq == nullptr) return Lose(c, now);
    (void)mosquitto_int_option(c.mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    if (!o_.username.empty()) {
      (void)mosquitto_username_pw_set(c.mosq, o_.username.c_str(),
                                      o_.password.empty() ? nullptr : o_.password.c_str());
    }
    const SimMessage will = c.device->Status(false, 0, now);
    (void)mosquitto_will_set(c.mosq, will.topic.c_str(), static_cast<int>(will.payload.size()),
                             will.payload.data(), 1, true);
    mosquitto_connect_callback_set(c.mosq, &OnConnect);
    mosquitto_disconnect_callback_set(c.mosq, &OnDisconnect);
    mosquitto_publish_callback_set(c.mosq, &OnPublish);
    mosquitto_message_callback_set(c.mosq, &OnMessage);
    if (mosquitto_connect_async(c.mosq, broker_.host.c_str(), broker_.port, kKeepaliveS) !=
        MOSQ_ERR_SUCCESS) {
      return Lose(c, now);
    }
    c.fd = mosquitto_socket(c.mosq);
    if (c.fd < 0) return Lose(c, now);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = static_cast<std::uint64_t>(&c - conns_.data());
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev) != 0) return Lose(c, now);
    c.out_armed = true;
  }

  // Waits up to `timeout_ms` for sockets that can be read or written, and serves them.
  void PollOnce(int timeout_ms) {
    std::array<epoll_event, 256> events{};
    const int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout_ms);
    const std::int64_t now = NowMs();
    for (int k = 0; k < n; ++k) {
      Conn& c = conns_[events[k].data.u64];
      if (c.mosq == nullptr) continue;
      int rc = MOSQ_ERR_SUCCESS;
      if (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) rc = mosquitto_loop_read(c.mosq, 8);
      if (rc == MOSQ_ERR_SUCCESS && c.mosq && (events[k].events & EPOLLOUT)) {
        rc = mosquitto_loop_write(c.mosq, 8);
      }
      Settle(c, rc, now);
    }
  }

  // After any call into the library: a lost connection is dropped (and retried), and the socket
  // is watched for writing exactly while the library has bytes to write.
  void Settle(Conn& c, int rc, std::int64_t now) {
    if (c.mosq == nullptr) return;
    if (rc == MOSQ_ERR_SUCCESS && !c.lost && mosquitto_socket(c.mosq) >= 0 &&
        mosquitto_want_write(c.mosq)) {
      rc = mosquitto_loop_write(c.mosq, 8);
    }
    if (rc != MOSQ_ERR_SUCCESS || c.lost || mosquitto_socket(c.mosq) < 0) return Lose(c, now);
    const bool want = mosquitto_want_write(c.mosq);
    if (want != c.out_armed) {
      epoll_event ev{};
      ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
      ev.data.u64 = static_cast<std::uint64_t>(&c - conns_.data());
      (void)epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
      c.out_armed = want;
    }
  }

  void Drop(Conn& c) {
    if (c.mosq == nullptr) return;
    if (c.fd >= 0) (void)epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    for (const auto& [mid, kind] : c.inflight) ++totals_.unacked_at_loss[Index(kind)];
    c.inflight.clear();
    mosquitto_destroy(c.mosq);
    c.mosq = nullptr;
    c.fd = -1;
    c.connected = false;
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
    for (Conn& c : conns_) {
      c.retry_ms = 0;
      if (!c.connected) {
        c.stopping = true;
        Drop(c);
        continue;
      }
      PublishOn(c, c.device->Status(false, c.connections, now));
      Settle(c, MOSQ_ERR_SUCCESS, now);
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
      if (c.mosq == nullptr) continue;
      c.stopping = true;
      (void)mosquitto_disconnect(c.mosq);
      (void)mosquitto_loop_write(c.mosq, 8);
      Drop(c);
    }
  }

  void Progress(const char* event, std::int64_t elapsed_ms) const {
    std::size_t connected = 0;
    std::uint64_t late = 0;
    for (const Conn& c : conns_) {
      connected += c.connected ? 1 : 0;
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
  std::size_t failing_ = 0;
  int epoll_ = -1;
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
  if (o.connect_rate == 0 || o.connect_rate > 100000) {
    return bad("--connect-rate: expected 1..100000, found " + std::to_string(o.connect_rate));
  }
  if (o.prefix.empty() || o.prefix.find_first_of("/+#") != std::string::npos) {
    return bad("--prefix: expected a non-empty name without '/', '+' or '#', found " +
               LogValue(o.prefix));
  }
  if (!o.password.empty() && o.username.empty()) return bad("--password: given without --username");
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
  // Three descriptors per device (libmosquitto keeps a socket pair beside each connection's
  // socket) and a few for the process: raise the limit to that, the hard one too where the
  // process may (root), or say what is missing.
  rlimit nofile{};
  const auto need = static_cast<rlim_t>(options.devices * 3 + 64);
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < need) {
    rlimit raised{need, std::max(need, nofile.rlim_max)};
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      return Fail(ErrorCode::kLimit, "--devices: " + std::to_string(options.devices) +
                                         " connections need " + std::to_string(need) +
                                         " open files (three per device); the hard limit "
                                         "(ulimit -Hn) is " +
                                         std::to_string(nofile.rlim_max) +
                                         " and could not be raised: " + strerror(errno));
    }
  }
  const StopSignals stop;
  UseKeyValueLog("edgefleet-simulate");
  mosquitto_lib_init();
  Simulation sim(options, broker);
  EF_RETURN_IF_ERROR(sim.Init());
  spdlog::info(
      "event=simulate_started broker={} fleet={} devices={} duration_s={:.1f} window_s={} "
      "fail_share={}",
      LogValue(options.broker), LogValue(options.fleet), options.devices,
      static_cast<double>(options.duration.count()) / 1000.0, options.window_s, options.fail_share);
  const std::int64_t start = NowMs();
  const int signo = sim.Run(start + options.duration.count(), stop);
  json report = sim.Report(NowMs() - start);
  if (signo != 0) report["stopped_by"] = StopSignals::Name(signo);
  const std::string text = report.dump(1) + "\n";
  out << text << std::flush;
  if (options.report) EF_RETURN_IF_ERROR(WriteFileAtomically(*options.report, text));
  mosquitto_lib_cleanup();
  return Ok();
}

}  // namespace edgefleet::deploy
