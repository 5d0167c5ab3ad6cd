#include "deploy/collector.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "manifests/log_value.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::deploy {
namespace {

using manifests::LogValue;

// A window counts at most this many requests (4.3 billion: 430 million per second over a 10 s
// window). Larger claims are refused so the running sums can never overflow 64 bits.
constexpr std::uint64_t kMaxWindowCounter = std::uint64_t{1} << 32;

Unexpected Refuse(std::string_view field, const std::string& why) {
  return Fail(ErrorCode::kParse, std::string(field) + ": " + why);
}

Status CheckDevice(const std::string& payload_device, const std::string& topic_device) {
  if (payload_device == topic_device) return Ok();
  return Refuse("device", "payload says '" + payload_device + "' but the topic is device '" +
                              topic_device + "'");
}

Status CheckWindow(const telemetry::TelemetryWindow& w) {
  const std::pair<const char*, std::uint64_t> counters[] = {
      {"count", w.count},     {"errors", w.errors},   {"server_errors", w.server_errors},
      {"labeled", w.labeled}, {"correct", w.correct}, {"latency_ms.le_inf", w.latency.count}};
  for (const auto& [field, value] : counters) {
    if (value > kMaxWindowCounter) {
      return Refuse(field, std::to_string(value) + " is more than one window can hold (" +
                               std::to_string(kMaxWindowCounter) + ")");
    }
  }
  if (w.errors > w.count) {
    return Refuse("errors",
                  std::to_string(w.errors) + " failed of " + std::to_string(w.count) + " requests");
  }
  if (w.correct > w.labeled) {
    return Refuse("accuracy.correct", std::to_string(w.correct) + " correct of " +
                                          std::to_string(w.labeled) + " labeled");
  }
  if (!(w.latency.sum_ms >= 0) || !(w.latency.max_ms >= 0)) {
    return Refuse("latency_ms", "negative sum or max");
  }
  return Ok();
}

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct RawMessage {
  std::string topic;
  std::string payload;
  std::int64_t received_ms = 0;
};

}  // namespace

Result<IncomingMessage> ClassifyMessage(std::string_view topic, std::string_view payload,
                                        std::int64_t received_ms) {
  if (payload.size() > telemetry::kMaxPayloadBytes) {
    return Fail(ErrorCode::kLimit, "payload: " + std::to_string(payload.size()) +
                                       " bytes, more than the " +
                                       std::to_string(telemetry::kMaxPayloadBytes) + " allowed");
  }
  Result<telemetry::TopicParts> parts = telemetry::ParseTopic(topic);
  if (!parts) return Fail(ErrorCode::kInvalidArgument, parts.error().message);
  if (parts->kind != "device" ||
      (parts->leaf != "status" && parts->leaf != "telemetry" && parts->leaf != "events")) {
    return Fail(ErrorCode::kInvalidArgument,
                "topic: not a device status, telemetry or events topic");
  }
  IncomingMessage in;
  in.fleet = parts->fleet;
  in.received_ms = received_ms;
  in.json = std::string(payload);
  if (parts->leaf == "status") {
    EF_ASSIGN_OR_RETURN(telemetry::StatusMessage m, telemetry::ParseStatus(payload));
    EF_RETURN_IF_ERROR(CheckDevice(m.device, parts->name));
    if (m.fleet != parts->fleet) {
      return Refuse("fleet",
                    "payload says '" + m.fleet + "' but the topic is fleet '" + parts->fleet + "'");
    }
    in.message = std::move(m);
  } else if (parts->leaf == "telemetry") {
    EF_ASSIGN_OR_RETURN(telemetry::TelemetryWindow m, telemetry::ParseTelemetry(payload));
    EF_RETURN_IF_ERROR(CheckDevice(m.device, parts->name));
    EF_RETURN_IF_ERROR(CheckWindow(m));
    in.message = std::move(m);
  } else {
    EF_ASSIGN_OR_RETURN(telemetry::EventMessage m, telemetry::ParseEvent(payload));
    EF_RETURN_IF_ERROR(CheckDevice(m.device, parts->name));
    if (m.serial > static_cast<std::uint64_t>(INT64_MAX)) {
      return Refuse("serial", std::to_string(m.serial) + " is above 2^63-1");
    }
    in.message = std::move(m);
  }
  return in;
}

struct Collector::Impl {
  CollectorOptions options;
  CollectorStore store;  // the writer thread's alone
  std::unique_ptr<telemetry::MqttClient> client;
  std::thread writer;

  mutable std::mutex mu;
  std::condition_variable has_work;   // writer waits: queue non-empty or stopping
  std::condition_variable has_space;  // network thread waits: queue below the bound or closing
  std::deque<RawMessage> queue;       // guarded by mu
  bool closing = false;               // guarded by mu: Stop began, do not wait for space
  bool stopping = false;              // guarded by mu: the network is down, drain and exit

  std::atomic<std::uint64_t> status{0}, telemetry{0}, events{0}, duplicates{0}, stale{0},
      rejected{0}, store_retries{0}, lost{0};

  Impl(CollectorOptions o, CollectorStore s) : options(std::move(o)), store(std::move(s)) {}

  void Enqueue(const telemetry::MqttMessage& m) {
    std::unique_lock lock(mu);
    has_space.wait(lock, [&] { return queue.size() < options.max_queue || closing; });
    queue.push_back({m.topic, m.payload, NowMs()});
    lock.unlock();
    has_work.notify_one();
  }

  void Reject(const std::string& topic, const std::string& error) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("event=message_rejected topic={} error={}", LogValue(topic), LogValue(error));
  }

  void Count(const IncomingMessage& in, ApplyOutcome outcome) {
    switch (outcome) {
      case ApplyOutcome::kDuplicate:
        duplicates.fetch_add(1, std::memory_order_relaxed);
        return;
      case ApplyOutcome::kStale:
        stale.fetch_add(1, std::memory_order_relaxed);
        return;
      case ApplyOutcome::kStored:
        break;
    }
    auto& counter = std::holds_alternative<telemetry::TelemetryWindow>(in.message) ? telemetry
                    : std::holds_alternative<telemetry::EventMessage>(in.message)  ? events
                                                                                   : status;
    counter.fetch_add(1, std::memory_order_relaxed);
  }

  bool Stopping() {
    std::lock_guard lock(mu);
    return stopping;
  }

  // Writes the batch; a database that is busy or full is retried with backoff until it works or
  // Stop, a batch that fails for another reason is written message by message so only the
  // message the database refuses is lost (and logged as rejected).
  void Store(const std::vector<IncomingMessage>& batch,
             const std::vector<const std::string*>& topics) {
    auto delay = std::chrono::milliseconds(100);
    while (true) {
      Result<std::vector<ApplyOutcome>> outcomes = store.Apply(batch);
      if (outcomes) {
        for (std::size_t i = 0; i < batch.size(); ++i) Count(batch[i], (*outcomes)[i]);
        return;
      }
      if (outcomes.error().code != ErrorCode::kIo) {
        spdlog::error("event=store_failed messages={} error={} action=one_by_one", batch.size(),
                      LogValue(outcomes.error().message));
        for (std::size_t i = 0; i < batch.size(); ++i) {
          Result<std::vector<ApplyOutcome>> one = store.Apply(std::span(&batch[i], 1));
          if (one) {
            Count(batch[i], one->front());
          } else {
            Reject(*topics[i], "store: " + one.error().message);
          }
        }
        return;
      }
      store_retries.fetch_add(1, std::memory_order_relaxed);
      if (Stopping()) {
        lost.fetch_add(batch.size(), std::memory_order_relaxed);
        spdlog::error("event=store_failed messages={} error={} action=dropped_at_shutdown",
                      batch.size(), LogValue(outcomes.error().message));
        return;
      }
      spdlog::error("event=store_failed messages={} error={} retry_in_ms={}", batch.size(),
                    LogValue(outcomes.error().message), delay.count());
      {
        std::unique_lock lock(mu);
        has_work.wait_for(lock, delay, [&] { return stopping; });
      }
      delay = std::min(delay * 2, std::chrono::milliseconds(5000));
    }
  }

  void WriterLoop() {
    std::vector<RawMessage> raw;
    std::vector<IncomingMessage> batch;
    std::vector<const std::string*> topics;
    while (true) {
      raw.clear();
      {
        std::unique_lock lock(mu);
        has_work.wait(lock, [&] { return !queue.empty() || stopping; });
        if (queue.empty()) return;  // stopping and drained
        const std::size_t n = std::min(queue.size(), options.max_batch);
        for (std::size_t i = 0; i < n; ++i) {
          raw.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      has_space.notify_all();
      batch.clear();
      topics.clear();
      for (const RawMessage& m : raw) {
        Result<IncomingMessage> in = ClassifyMessage(m.topic, m.payload, m.received_ms);
        if (!in) {
          Reject(m.topic, in.error().message);
          continue;
        }
        batch.push_back(std::move(*in));
        topics.push_back(&m.topic);
      }
      Store(batch, topics);
    }
  }
};

Collector::Collector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Collector::~Collector() { Stop(); }

Result<std::unique_ptr<Collector>> Collector::Start(CollectorOptions options,
                                                    CollectorStore store) {
  const std::string& fleet = options.fleet;
  if (fleet.empty() || (fleet != "+" && fleet.find_first_of("/+#") != std::string::npos)) {
    return Fail(ErrorCode::kInvalidArgument,
                "--fleet: expected a fleet name (no '/', '+' or '#') or '+' for every fleet, "
                "found '" +
                    fleet + "'");
  }
  if (options.max_queue == 0 || options.max_batch == 0) {
    return Fail(ErrorCode::kInvalidArgument, "collector: queue and batch bounds must be positive");
  }
  options.mqtt.subscriptions.clear();
  for (const char* leaf : {"status", "telemetry", "events"}) {
    options.mqtt.subscriptions.push_back(telemetry::DeviceTopic(fleet, "+", leaf));
  }
  options.mqtt.max_incoming_bytes = telemetry::kMaxPayloadBytes;
  // Back on the broker soon after it is: messages published while the collector is away are
  // lost (the client has a clean session), and after an outage the agents flush their outboxes
  // the moment they reconnect. One collector retrying every few seconds costs the broker nothing.
  options.mqtt.reconnect_min = std::chrono::milliseconds(200);
  options.mqtt.reconnect_max = std::chrono::milliseconds(2000);
  options.mqtt.will.reset();
  options.mqtt.birth = nullptr;

  auto impl = std::make_unique<Impl>(std::move(options), std::move(store));
  Impl* self = impl.get();
  self->writer = std::thread([self] { self->WriterLoop(); });
  const std::string broker =
      self->options.mqtt.host + ":" + std::to_string(self->options.mqtt.port);
  telemetry::MqttHandlers handlers;
  handlers.on_message = [self](const telemetry::MqttMessage& m) { self->Enqueue(m); };
  handlers.on_rejected = [self](const std::string& topic, const std::string& reason) {
    self->Reject(topic, reason);
  };
  handlers.on_connection = [broker](bool up, const std::string& reason) {
    if (up) {
      spdlog::info("event=broker_connected broker={}", LogValue(broker));
    } else {
      spdlog::warn("event=broker_disconnected broker={} reason={}", LogValue(broker),
                   LogValue(reason));
    }
  };
  auto collector = std::unique_ptr<Collector>(new Collector(std::move(impl)));
  Result<std::unique_ptr<telemetry::MqttClient>> client =
      telemetry::MqttClient::Start(self->options.mqtt, nullptr, std::move(handlers));
  if (!client) return Unexpected(client.error());  // ~Collector stops the writer
  self->client = std::move(*client);
  return collector;
}

void Collector::Stop() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mu);
    s.closing = true;
  }
  s.has_space.notify_all();
  if (s.client) s.client->Stop();
  {
    std::lock_guard lock(s.mu);
    s.stopping = true;
  }
  s.has_work.notify_all();
  if (s.writer.joinable()) s.writer.join();
}

CollectorCounters Collector::Counters() const {
  Impl& s = *impl_;
  auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  CollectorCounters c;
  c.status = load(s.status);
  c.telemetry = load(s.telemetry);
  c.events = load(s.events);
  c.duplicates = load(s.duplicates);
  c.stale = load(s.stale);
  c.rejected = load(s.rejected);
  c.store_retries = load(s.store_retries);
  c.lost = load(s.lost);
  {
    std::lock_guard lock(s.mu);
    c.queued = s.queue.size();
  }
  if (s.client) {
    c.connected = s.client->connected();
    c.connections = s.client->Counters().connections;
  }
  return c;
}

}  // namespace edgefleet::deploy
