#include "agent/fleet_link.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/log_value.hpp"
#include "manifests/time.hpp"
#include "telemetry/health.hpp"
#include "telemetry/mqtt_client.hpp"
#include "telemetry/outbox.hpp"
#include "updater/journal.hpp"

namespace edgefleet::agent {

namespace {

using manifests::NowMs;

// Transitions after which a different model (or none) may be serving, or the standby changed.
bool ChangesServing(const std::string& event) {
  static const std::set<std::string> kEvents = {"watching", "committed", "rolled_back", "abandoned",
                                                "failed"};
  return kEvents.count(event) > 0;
}

Result<std::string> ReadPassword(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in)
    return Fail(ErrorCode::kInvalidArgument, path.string() + ": cannot read the password file");
  std::string line;
  std::getline(in, line);
  if (line.empty()) return Fail(ErrorCode::kInvalidArgument, path.string() + ": empty password");
  return line;
}

}  // namespace

struct FleetLink::Impl {
  const AgentConfig* config = nullptr;
  const runtime::ModelHost* host = nullptr;
  ServingStats* serving = nullptr;
  std::vector<telemetry::BackendInfo> backends;
  std::string status_topic, telemetry_topic, events_topic;
  std::set<std::string> desired_topics;

  std::unique_ptr<telemetry::Outbox> outbox;
  std::unique_ptr<telemetry::MqttClient> client;
  telemetry::HealthSampler health;

  std::mutex journal_mu;
  std::optional<updater::Journal> journal;  // guarded by journal_mu; read-only use (standby)

  std::mutex golden_mu;
  std::map<std::pair<std::string, std::string>, double> golden;  // guarded by golden_mu

  std::mutex desired_mu;
  std::condition_variable desired_cv;
  std::deque<std::string> desired_order;               // guarded by desired_mu (topics)
  std::map<std::string, std::string> desired_payload;  // guarded by desired_mu

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;  // guarded by stop_mu
  std::thread telemetry_thread;
  std::once_flag stop_once;
  std::atomic<std::uint64_t> connections{0};           // CONNACKs seen (the network thread counts)
  std::int64_t window_start_ms = 0;                    // wall clock, for the message's start_ts
  std::chrono::steady_clock::time_point window_start;  // the window's length (immune to steps)

  explicit Impl(const std::filesystem::path& disk_dir) : health(disk_dir) {}

  std::filesystem::path GoldenFile() const { return config->state_dir / "golden_accuracy.json"; }

  void LoadGolden() {
    std::ifstream in(GoldenFile());
    if (!in) return;
    auto doc = nlohmann::json::parse(in, nullptr, false);
    if (!doc.is_array()) {
      // Only a cache of parity results: telemetry goes on without golden accuracy until the
      // next parity run rewrites it.
      spdlog::warn("event=golden_accuracy_unreadable file={} reason=\"not a JSON array\"",
                   LogValue(GoldenFile().string()));
      return;
    }
    std::lock_guard lock(golden_mu);
    for (const auto& e : doc) {
      if (e.is_object() && e.value("model", "").size() && e.contains("accuracy") &&
          e["accuracy"].is_number()) {
        golden[{e["model"].get<std::string>(), e.value("version", "")}] =
            e["accuracy"].get<double>();
      }
    }
  }

  void SaveGolden() {
    nlohmann::json doc = nlohmann::json::array();
    {
      std::lock_guard lock(golden_mu);
      for (const auto& [key, acc] : golden)
        doc.push_back({{"model", key.first}, {"version", key.second}, {"accuracy", acc}});
    }
    const auto path = GoldenFile();
    const auto tmp = path.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << doc.dump();
      if (!out) return;
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
  }

  std::vector<telemetry::ModelStatus> Models() {
    std::vector<telemetry::ModelStatus> out;
    for (const runtime::ModelStatus& m : host->List()) {
      telemetry::ModelStatus s;
      s.name = m.name;
      for (const runtime::SlotStatus& slot : m.slots) {
        telemetry::SlotInfo info{std::string(runtime::ToString(slot.slot)), slot.version.ToString(),
                                 slot.bundle_sha256};
        if (m.active && *m.active == slot.slot)
          s.active = info;
        else
          s.standby = info;
      }
      if (!s.standby) {
        std::lock_guard lock(journal_mu);
        if (journal) {
          auto rec = journal->ReadModel(m.name);
          if (rec && rec->previous && (!s.active || rec->previous->version != s.active->version)) {
            s.standby = telemetry::SlotInfo{std::string(updater::ToString(rec->previous->slot)),
                                            rec->previous->version, rec->previous->sha256};
          }
        }
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  telemetry::StatusMessage Status(bool online, std::uint64_t connection) {
    telemetry::StatusMessage s;
    s.id = telemetry::NewMessageId();
    s.device = config->device;
    s.fleet = config->fleet;
    s.ts = NowMs();
    s.online = online;
    s.agent_version = EDGEFLEET_VERSION;
    s.groups = config->groups;
    s.backends = backends;
    s.connection = connection;
    if (online) s.models = Models();
    if (auto stats = outbox->Stats()) {
      s.outbox_pending = stats->pending;
      s.outbox_dropped = stats->dropped_total;
    }
    return s;
  }

  void Append(const std::vector<telemetry::OutgoingMessage>& messages, std::string_view what) {
    if (auto ok = outbox->Append(messages); !ok) {
      spdlog::error("event=outbox_error what={} error={}", what, LogValue(ok.error().message));
      return;
    }
    if (client) client->Wake();
  }

  void QueueStatus(bool online) {
    const std::uint64_t connection = connections.load();
    telemetry::OutgoingMessage m{status_topic, telemetry::EncodeStatus(Status(online, connection)),
                                 1, true, true};
    Append({m}, "status");
  }

  void OnMessage(const telemetry::MqttMessage& m) {
    if (desired_topics.count(m.topic) == 0) {
      spdlog::warn("event=mqtt_message_ignored topic={} reason=\"not a desired-state topic\"",
                   LogValue(m.topic));
      return;
    }
    spdlog::info("event=desired_received topic={} bytes={} retained={}", LogValue(m.topic),
                 m.payload.size(), m.retain);
    {
      std::lock_guard lock(desired_mu);
      if (desired_payload.count(m.topic) == 0) desired_order.push_back(m.topic);
      desired_payload[m.topic] = m.payload;
    }
    desired_cv.notify_all();
  }

  // Closes the telemetry window: one message per model version that served, had feedback or
  // is active (so health keeps flowing while idle), in one outbox transaction.
  void CloseWindow() {
    if (serving == nullptr) return;
    const std::int64_t end_ms = NowMs();
    const auto end = std::chrono::steady_clock::now();
    const double window_s = std::chrono::duration<double>(end - window_start).count();
    const std::vector<WindowStats> windows = serving->TakeWindows();
    const telemetry::Health box = health.Sample();
    const std::vector<telemetry::ModelStatus> models = Models();
    std::uint64_t dropped = 0;
    if (auto stats = outbox->Stats()) dropped = stats->dropped_total;

    std::vector<telemetry::OutgoingMessage> batch;
    std::set<std::pair<std::string, std::string>> reported;
    auto role_of = [&](const std::string& model, const std::string& version,
                       std::string* slot) -> std::string {
      for (const auto& m : models) {
        if (m.name != model) continue;
        if (m.active && m.active->version == version) {
          *slot = m.active->slot;
          return "active";
        }
        if (m.standby && m.standby->version == version) {
          *slot = m.standby->slot;
          return "previous";
        }
      }
      return "previous";
    };
    auto emit = [&](const WindowStats& w) {
      telemetry::TelemetryWindow t;
      t.id = telemetry::NewMessageId();
      t.device = config->device;
      t.ts = end_ms;
      t.start_ts = window_start_ms;
      t.window_s = window_s;
      t.model = w.model;
      t.version = w.version;
      t.role = role_of(w.model, w.version, &t.slot);
      if (t.slot.empty()) t.slot = "A";
      t.count = w.requests;
      t.errors = w.client_errors + w.server_errors;
      t.server_errors = w.server_errors;
      t.latency = w.latency;
      t.latency.UpdatePercentiles();
      const std::uint64_t ok = w.latency.count;
      if (ok > 0) {
        t.stage_ms = {w.preprocess_ms / static_cast<double>(ok),
                      w.infer_ms / static_cast<double>(ok),
                      w.postprocess_ms / static_cast<double>(ok)};
      }
      t.throughput_rps = window_s > 0 ? static_cast<double>(w.requests) / window_s : 0;
      t.labeled = w.labeled;
      t.correct = w.correct;
      {
        std::lock_guard lock(golden_mu);
        auto it = golden.find({w.model, w.version});
        if (it != golden.end()) t.golden_accuracy = it->second;
      }
      t.predictions = w.predictions;
      t.confidence_mean = w.confidence_mean;
      t.confidence_std = w.confidence_std;
      t.health = box;
      t.outbox_dropped = dropped;
      batch.push_back(
          {telemetry_topic, "", 1, false, false, [t](const telemetry::Sequence& seq) mutable {
             t.seq = {seq.stream, seq.n};
             return telemetry::EncodeTelemetry(t);
           }});
      spdlog::info(
          "event=telemetry_window model={} version={} count={} errors={} labeled={} "
          "p50_ms={:.3f} p99_ms={:.3f} window_s={:.1f}",
          LogValue(t.model), LogValue(t.version), t.count, t.errors, t.labeled, t.latency.p50,
          t.latency.p99, window_s);
    };
    for (const WindowStats& w : windows) {
      std::string slot;
      const bool active = role_of(w.model, w.version, &slot) == "active";
      if (w.requests == 0 && w.labeled == 0 && !active) continue;
      reported.insert({w.model, w.version});
      emit(w);
    }
    for (const auto& m : models) {
      if (!m.active || reported.count({m.name, m.active->version})) continue;
      WindowStats idle;
      idle.model = m.name;
      idle.version = m.active->version;
      emit(idle);
    }
    window_start_ms = end_ms;
    window_start = end;
    if (!batch.empty()) Append(batch, "telemetry");
  }

  void TelemetryLoop() {
    const auto period =
        std::chrono::milliseconds(static_cast<std::int64_t>(config->telemetry.window_s * 1000.0));
    auto next = std::chrono::steady_clock::now() + period;
    std::unique_lock lock(stop_mu);
    while (!stopping) {
      if (stop_cv.wait_until(lock, next, [&] { return stopping; })) break;
      lock.unlock();
      CloseWindow();
      lock.lock();
      next += period;
      const auto now = std::chrono::steady_clock::now();
      if (next < now) next = now + period;  // a stalled box skips, it does not burst
    }
  }
};

FleetLink::FleetLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FleetLink::~FleetLink() { Stop(std::chrono::milliseconds(0)); }

Result<std::unique_ptr<FleetLink>> FleetLink::Start(const AgentConfig& config,
                                                    std::vector<telemetry::BackendInfo> backends,
                                                    const runtime::ModelHost& host,
                                                    ServingStats* stats) {
  auto impl = std::make_unique<Impl>(config.state_dir);
  impl->config = &config;
  impl->host = &host;
  impl->serving = stats;
  impl->backends = std::move(backends);
  impl->status_topic = telemetry::DeviceTopic(config.fleet, config.device, "status");
  impl->telemetry_topic = telemetry::DeviceTopic(config.fleet, config.device, "telemetry");
  impl->events_topic = telemetry::DeviceTopic(config.fleet, config.device, "events");
  impl->desired_topics.insert(telemetry::DeviceTopic(config.fleet, config.device, "desired"));
  for (const auto& g : config.groups)
    impl->desired_topics.insert(telemetry::GroupDesiredTopic(config.fleet, g));

  telemetry::OutboxLimits limits;
  limits.max_messages = static_cast<std::size_t>(config.telemetry.outbox_max_messages);
  limits.max_age = std::chrono::seconds(config.telemetry.outbox_max_age_s);
  EF_ASSIGN_OR_RETURN(impl->outbox,
                      telemetry::Outbox::Open(config.state_dir / "outbox.db", limits));
  {
    auto journal = updater::Journal::Open(config.state_dir / "journal.db");
    if (!journal) return journal.error();
    impl->journal.emplace(std::move(journal).value());
  }
  impl->LoadGolden();
  // A status queued by an earlier run (e.g. "offline" at a clean stop while the broker was down)
  // would otherwise be published after this run's birth record and leave the device looking
  // offline; a fresh one supersedes it in the outbox.
  impl->QueueStatus(true);

  const auto& mq = config.mqtt;
  telemetry::MqttOptions options;
  options.host = mq.host;
  options.port = mq.port;
  options.client_id = mq.client_id.empty() ? config.device : mq.client_id;
  options.username = mq.username;
  if (!mq.password_file.empty()) {
    EF_ASSIGN_OR_RETURN(options.password, ReadPassword(mq.password_file));
  }
  options.keepalive_s = static_cast<int>(mq.keepalive_s);
  options.ca_file = mq.ca_file;
  options.cert_file = mq.cert_file;
  options.key_file = mq.key_file;
  options.reconnect_min = std::chrono::milliseconds(mq.reconnect_min_ms);
  options.reconnect_max = std::chrono::milliseconds(mq.reconnect_max_ms);
  options.subscriptions.assign(impl->desired_topics.begin(), impl->desired_topics.end());
  options.max_incoming_bytes = telemetry::kMaxPayloadBytes;
  Impl* self = impl.get();
  options.will = telemetry::MqttMessage{impl->status_topic,
                                        telemetry::EncodeStatus(self->Status(false, 0)), 1, true};
  options.birth = [self](std::uint64_t connection) -> std::optional<telemetry::MqttMessage> {
    return telemetry::MqttMessage{self->status_topic,
                                  telemetry::EncodeStatus(self->Status(true, connection)), 1, true};
  };
  telemetry::MqttHandlers handlers;
  handlers.on_message = [self](const telemetry::MqttMessage& m) { self->OnMessage(m); };
  handlers.on_rejected = [](const std::string& topic, const std::string& reason) {
    spdlog::warn("event=mqtt_message_rejected topic={} reason={}", LogValue(topic),
                 LogValue(reason));
  };
  const std::string broker = mq.host + ":" + std::to_string(mq.port);
  handlers.on_connection = [self, broker](bool up, const std::string& reason) {
    if (up) {
      spdlog::info("event=mqtt_connected broker={} connection={}", LogValue(broker),
                   ++self->connections);
    } else {
      spdlog::warn("event=mqtt_disconnected broker={} reason={}", LogValue(broker),
                   LogValue(reason));
    }
  };
  impl->window_start_ms = NowMs();
  impl->window_start = std::chrono::steady_clock::now();
  EF_ASSIGN_OR_RETURN(
      impl->client,
      telemetry::MqttClient::Start(std::move(options), impl->outbox.get(), std::move(handlers)));
  if (stats != nullptr) impl->telemetry_thread = std::thread([self] { self->TelemetryLoop(); });
  spdlog::info("event=fleet_link_started broker={} tls={} window_s={} outbox={}", LogValue(broker),
               mq.ca_file.empty() ? "off" : "on", config.telemetry.window_s,
               LogValue((config.state_dir / "outbox.db").string()));
  return std::unique_ptr<FleetLink>(new FleetLink(std::move(impl)));
}

void FleetLink::Event(telemetry::EventMessage event) {
  event.id = telemetry::NewMessageId();
  event.device = impl_->config->device;
  event.ts = NowMs();
  if (event.event == "parity_report" && !event.parity_json.empty()) {
    auto report = nlohmann::json::parse(event.parity_json, nullptr, false);
    if (report.is_object() && report.contains("accuracy") && report["accuracy"].is_number()) {
      {
        std::lock_guard lock(impl_->golden_mu);
        impl_->golden[{event.model, event.version}] = report["accuracy"].get<double>();
      }
      impl_->SaveGolden();
    }
  }
  const bool changes = ChangesServing(event.event);
  impl_->Append({{impl_->events_topic, "", 1, false, false,
                  [event](const telemetry::Sequence& seq) mutable {
                    event.seq = {seq.stream, seq.n};
                    return telemetry::EncodeEvent(event);
                  }}},
                "event");
  if (changes) impl_->QueueStatus(true);
}

void FleetLink::StatusChanged() { impl_->QueueStatus(true); }

std::optional<DesiredDocument> FleetLink::NextDesired(std::chrono::milliseconds wait) {
  std::unique_lock lock(impl_->desired_mu);
  if (!impl_->desired_cv.wait_for(lock, wait, [&] { return !impl_->desired_order.empty(); })) {
    return std::nullopt;
  }
  DesiredDocument doc;
  doc.topic = impl_->desired_order.front();
  impl_->desired_order.pop_front();
  doc.payload = std::move(impl_->desired_payload[doc.topic]);
  impl_->desired_payload.erase(doc.topic);
  return doc;
}

void FleetLink::Stop(std::chrono::milliseconds drain) {
  std::call_once(impl_->stop_once, [&] {
    {
      std::lock_guard lock(impl_->stop_mu);
      impl_->stopping = true;
    }
    impl_->stop_cv.notify_all();
    if (impl_->telemetry_thread.joinable()) impl_->telemetry_thread.join();
    impl_->CloseWindow();
    impl_->QueueStatus(false);
    const auto deadline = std::chrono::steady_clock::now() + drain;
    while (impl_->client && impl_->client->connected() &&
           std::chrono::steady_clock::now() < deadline) {
      auto stats = impl_->outbox->Stats();
      if (!stats || stats->pending == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (impl_->client) impl_->client->Stop();
    auto stats = impl_->outbox->Stats();
    spdlog::info("event=fleet_link_stopped outbox_pending={}", stats ? stats->pending : 0);
  });
}

}  // namespace edgefleet::agent
