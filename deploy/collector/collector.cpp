#include "deploy/collector/collector.hpp"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/json_fields.hpp"
#include "manifests/log_value.hpp"
#include "manifests/time.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::deploy {
namespace {

using manifests::LogValue;
using nlohmann::json;

// A window counts at most this many requests (4.3 billion: 430 million per second over a 10 s
// window). Larger claims are refused so the running sums can never overflow 64 bits.
constexpr std::uint64_t kMaxWindowCounter = std::uint64_t{1} << 32;

Unexpected Refuse(std::string_view field, const std::string& why) {
  return Fail(ErrorCode::kParse, std::string(field) + ": " + why);
}

Status CheckDevice(const std::string& payload_device, const std::string& topic_device) {
  if (payload_device == topic_device) return Ok();
  return Refuse("device", "payload says " + manifests::QuoteName(payload_device) +
                              " but the topic is device " + manifests::QuoteName(topic_device));
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

using manifests::NowMs;

// Mosquitto's own drop counter (see ReadBrokerDropped).
constexpr const char* kBrokerDroppedTopic = "$SYS/broker/publish/messages/dropped";
// A message that waited this long unstored means the writer is behind.
constexpr std::int64_t kBehindLagMs = 5000;
// How much lower the writer thread's priority is than the rest of the collector (nice levels).
// Under CPU contention (the broker, the collector and others on a few cores) the network thread
// must be scheduled promptly: the broker hands it at most max_inflight_messages (100 in the
// shipped config) unacknowledged messages, so each wait for a core caps the delivery rate, and
// what the broker cannot deliver fills its queue for this client and is dropped. The writer
// loses little by waiting: it commits whatever has queued meanwhile in one larger transaction,
// which costs less per message (bench/RESULTS.md, run 10).
constexpr int kWriterNiceness = 5;

// Lowers the calling thread's priority by `levels` (Linux: nice values are per thread).
void LowerThisThreadsPriority(int levels) {
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, tid);
  if (now == -1 && errno != 0) return;
  if (setpriority(PRIO_PROCESS, tid, std::min(19, now + levels)) != 0) {
    spdlog::warn("event=writer_priority_unchanged error={}", std::strerror(errno));
  }
}

// Rollout status fields (see collector.hpp).
constexpr std::string_view kRolloutStates[] = {"running", "paused", "completed", "halted",
                                               "aborted"};
constexpr std::string_view kWaveStates[] = {"waiting", "running", "done", "halted"};

template <std::size_t N>
bool OneOf(const std::string& value, const std::string_view (&allowed)[N]) {
  return std::find(std::begin(allowed), std::end(allowed), value) != std::end(allowed);
}

template <std::size_t N>
std::string Listed(const std::string_view (&allowed)[N]) {
  std::string out;
  for (std::string_view a : allowed) out += (out.empty() ? "" : "|") + std::string(a);
  return out;
}

// A non-negative integer count.
std::optional<std::uint64_t> ReadCount(manifests::FieldReader& r, const json& obj,
                                       std::string_view key, const std::string& path) {
  std::optional<std::int64_t> v = r.Integer(obj, key, path);
  if (!v) return std::nullopt;
  if (*v < 0) {
    r.Problem(path, "expected a count (0 or more), found " + std::to_string(*v));
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(*v);
}

template <std::size_t N>
std::optional<std::string> ReadEnum(manifests::FieldReader& r, const json& obj,
                                    std::string_view key, const std::string& path,
                                    const std::string_view (&allowed)[N]) {
  std::optional<std::string> v = r.String(obj, key, path);
  if (!v) return std::nullopt;
  if (!OneOf(*v, allowed)) {
    r.Problem(path, "expected " + Listed(allowed) + ", found " + manifests::QuoteForMessage(*v));
    return std::nullopt;
  }
  return v;
}

// Calls read(item, path) for each element of the array at `key` that is an object; records a
// problem for the others.
template <typename Read>
void ForEachObject(manifests::FieldReader& r, const json& array, std::string_view key, Read read) {
  for (std::size_t i = 0; i < array.size(); ++i) {
    const std::string path = manifests::Index(key, i);
    if (array[i].is_object()) {
      read(array[i], path);
    } else {
      r.Problem(path,
                "expected an object, found " + std::string(manifests::JsonTypeName(array[i])));
    }
  }
}

void ReadRolloutStatus(manifests::FieldReader& r, const json& doc, RolloutStatus& m) {
  using manifests::Child;
  if (auto v = r.String(doc, "id", "id")) {
    if (IsRolloutId(*v)) {
      m.id = *v;
    } else {
      r.Problem("id", "expected 1 to 64 characters from [A-Za-z0-9._-], found " +
                          manifests::QuoteForMessage(*v));
    }
  }
  if (auto v = r.Integer(doc, "ts", "ts")) m.ts = *v;
  if (auto v = manifests::ReadName(r, doc, "fleet", "fleet")) m.fleet = *v;
  if (auto v = manifests::ReadName(r, doc, "group", "group")) m.group = *v;
  if (auto v = manifests::ReadName(r, doc, "model", "model")) m.model = *v;
  if (auto v = r.String(doc, "version", "version")) m.version = *v;
  if (auto v = r.String(doc, "bundle", "bundle")) m.bundle = *v;
  if (auto v = ReadEnum(r, doc, "state", "state", kRolloutStates)) m.state = *v;
  if (auto v = r.String(doc, "reason", "reason")) m.reason = *v;
  if (auto v = r.Integer(doc, "started_ts", "started_ts")) m.started_ts = *v;
  if (auto v = r.Integer(doc, "finished_ts", "finished_ts")) m.finished_ts = *v;
  for (auto [key, out] : {std::pair{"success_threshold", &m.success_threshold},
                          std::pair{"error_threshold", &m.error_threshold}}) {
    if (auto v = r.Number(doc, key, key)) {
      if (*v < 0 || *v > 1) {
        r.Problem(key, "expected a fraction from 0 to 1, found " + std::to_string(*v));
      } else {
        *out = *v;
      }
    }
  }
  if (auto v = ReadCount(r, doc, "wave", "wave")) m.wave = *v;
  if (const json* waves = r.Array(doc, "waves", "waves")) {
    ForEachObject(r, *waves, "waves", [&](const json& w, const std::string& path) {
      RolloutWave wave;
      if (auto v = r.Number(w, "percent", Child(path, "percent"))) {
        if (*v < 0 || *v > 100) {
          r.Problem(Child(path, "percent"), "expected 0 to 100, found " + std::to_string(*v));
        } else {
          wave.percent = *v;
        }
      }
      const std::pair<const char*, std::uint64_t*> counts[] = {{"devices", &wave.devices},
                                                               {"succeeded", &wave.succeeded},
                                                               {"failed", &wave.failed},
                                                               {"pending", &wave.pending}};
      for (const auto& [key, out] : counts) {
        if (auto v = ReadCount(r, w, key, Child(path, key))) *out = *v;
      }
      if (auto v = ReadEnum(r, w, "state", Child(path, "state"), kWaveStates)) wave.state = *v;
      m.waves.push_back(std::move(wave));
    });
  }
  if (const json* devices = r.Object(doc, "devices", "devices")) {
    RolloutDeviceCounts& d = m.devices;
    const std::pair<const char*, std::uint64_t*> counts[] = {
        {"total", &d.total},       {"succeeded", &d.succeeded}, {"failed", &d.failed},
        {"updating", &d.updating}, {"waiting", &d.waiting},     {"restored", &d.restored}};
    for (const auto& [key, out] : counts) {
      if (auto v = ReadCount(r, *devices, key, Child("devices", key))) *out = *v;
    }
  }
  if (const json* failures = r.Array(doc, "failures", "failures")) {
    if (failures->size() > kMaxRolloutFailures) {
      r.Problem("failures", "expected at most " + std::to_string(kMaxRolloutFailures) +
                                " entries, found " + std::to_string(failures->size()));
    } else {
      ForEachObject(r, *failures, "failures", [&](const json& f, const std::string& path) {
        RolloutFailure failure;
        if (auto v = r.String(f, "device", Child(path, "device"))) failure.device = *v;
        if (auto v = r.String(f, "reason", Child(path, "reason"))) failure.reason = *v;
        m.failures.push_back(std::move(failure));
      });
    }
  }
}

// The <fleet> and <id> of "edgefleet/v1/<fleet>/rollout/<id>/status"; nullopt for any other
// topic (a malformed one included: it is refused as not one of ours).
std::optional<std::pair<std::string, std::string>> SplitRolloutTopic(std::string_view topic) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = topic.find('/', start);
    levels.push_back(topic.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (levels.size() != 6 ||
      topic.substr(0, telemetry::kTopicRoot.size() + 1) !=
          std::string(telemetry::kTopicRoot) + "/" ||
      levels[3] != "rollout" || levels[5] != "status") {
    return std::nullopt;
  }
  return std::pair{std::string(levels[2]), std::string(levels[4])};
}

struct RawMessage {
  std::string topic;
  std::string payload;
  std::int64_t received_ms = 0;
  std::uint64_t spooled = 0;  // the spool generation holding it; 0: not spooled
};

}  // namespace

std::string RolloutStatusTopic(std::string_view fleet, std::string_view id) {
  return std::string(telemetry::kTopicRoot) + "/" + std::string(fleet) + "/rollout/" +
         std::string(id) + "/status";
}

bool IsRolloutId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

Result<RolloutStatus> ParseRolloutStatus(std::string_view payload) {
  constexpr std::string_view kSource = "rollout status";
  try {
    EF_ASSIGN_OR_RETURN(json doc,
                        manifests::ParseJsonText(payload, kSource, telemetry::kMaxPayloadBytes));
    manifests::FieldReader reader{std::string(kSource)};
    if (!doc.is_object()) {
      reader.Problem("", "expected an object, found " + std::string(manifests::JsonTypeName(doc)));
      return Unexpected(reader.ToStatus().error());
    }
    RolloutStatus m;
    ReadRolloutStatus(reader, doc, m);
    EF_RETURN_IF_ERROR(reader.ToStatus());
    return m;
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kParse, std::string(kSource) + ": " + e.what());
  }
}

Result<IncomingMessage> ClassifyMessage(std::string_view topic, std::string_view payload,
                                        std::int64_t received_ms) {
  if (payload.size() > telemetry::kMaxPayloadBytes) {
    return Fail(ErrorCode::kLimit, "payload: " + std::to_string(payload.size()) +
                                       " bytes, more than the " +
                                       std::to_string(telemetry::kMaxPayloadBytes) + " allowed");
  }
  if (auto rollout = SplitRolloutTopic(topic)) {
    const auto& [fleet, id] = *rollout;
    if (!manifests::IsValidName(fleet) || !IsRolloutId(id)) {
      return Fail(ErrorCode::kInvalidArgument, "topic: not a rollout status topic (fleet " +
                                                   manifests::QuoteForMessage(fleet) + ", id " +
                                                   manifests::QuoteForMessage(id) + ")");
    }
    EF_ASSIGN_OR_RETURN(RolloutStatus m, ParseRolloutStatus(payload));
    if (m.id != id) {
      return Refuse("id", "payload says " + manifests::QuoteName(m.id) +
                              " but the topic is rollout " + manifests::QuoteName(id));
    }
    if (m.fleet != fleet) {
      return Refuse("fleet", "payload says " + manifests::QuoteName(m.fleet) +
                                 " but the topic is fleet " + manifests::QuoteName(fleet));
    }
    IncomingMessage in;
    in.fleet = fleet;
    in.received_ms = received_ms;
    in.json = std::string(payload);
    in.message = std::move(m);
    return in;
  }
  Result<telemetry::TopicParts> parts = telemetry::ParseTopic(topic);
  if (!parts) return Fail(ErrorCode::kInvalidArgument, parts.error().message);
  if (parts->kind != "device" ||
      (parts->leaf != "status" && parts->leaf != "telemetry" && parts->leaf != "events")) {
    return Fail(ErrorCode::kInvalidArgument,
                "topic: not a device status, telemetry or events topic, or a rollout status");
  }
  IncomingMessage in;
  in.fleet = parts->fleet;
  in.received_ms = received_ms;
  in.json = std::string(payload);
  if (parts->leaf == "status") {
    EF_ASSIGN_OR_RETURN(telemetry::StatusMessage m, telemetry::ParseStatus(payload));
    EF_RETURN_IF_ERROR(CheckDevice(m.device, parts->name));
    if (m.fleet != parts->fleet) {
      return Refuse("fleet", "payload says " + manifests::QuoteName(m.fleet) +
                                 " but the topic is fleet " + manifests::QuoteName(parts->fleet));
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
  CollectorStore store;                   // the writer thread's alone
  std::unique_ptr<CollectorSpool> spool;  // null: options.spool is empty
  std::unique_ptr<telemetry::MqttClient> client;
  std::thread writer;

  mutable std::mutex mu;
  std::condition_variable has_work;   // writer waits: queue non-empty or stopping
  std::condition_variable has_space;  // network thread waits: queue below the bound or closing
  std::deque<RawMessage> queue;       // guarded by mu
  bool closing = false;               // guarded by mu: Stop began, do not wait for space
  bool stopping = false;              // guarded by mu: the network is down, drain and exit

  std::int64_t inflight_since_ms = 0;  // guarded by mu: oldest message the writer holds (0: none)
  bool behind = false;                 // guarded by mu: said `collector_behind`, not caught up yet

  std::atomic<std::uint64_t> status{0}, telemetry{0}, events{0}, rollouts{0}, duplicates{0},
      stale{0}, rejected{0}, store_retries{0}, lost{0}, spool_failures{0}, batches{0};
  std::atomic<std::int64_t> broker_dropped{-1};  // the broker's $SYS counter; -1 until read

  Impl(CollectorOptions o, CollectorStore s) : options(std::move(o)), store(std::move(s)) {}

  // How long the oldest message not yet stored has waited (0 when none).
  std::int64_t LagMsLocked(std::int64_t now) const {
    std::int64_t oldest = inflight_since_ms;
    if (!queue.empty() && (oldest == 0 || queue.front().received_ms < oldest)) {
      oldest = queue.front().received_ms;
    }
    return oldest == 0 ? 0 : std::max<std::int64_t>(0, now - oldest);
  }

  // Behind: a message has waited kBehindLagMs, or the queue is half full. Said once when it
  // starts, well before the queue is full (then the network thread stops reading and the
  // broker's queue for this client fills and drops), and once when the writer has caught up.
  void UpdateBehindLocked(std::int64_t now) {
    const std::int64_t lag = LagMsLocked(now);
    const std::size_t depth = queue.size();
    if (!behind && (lag >= kBehindLagMs || depth >= options.max_queue / 2)) {
      behind = true;
      spdlog::warn("event=collector_behind lag_ms={} queued={} max_queue={}", lag, depth,
                   options.max_queue);
    } else if (behind && lag < kBehindLagMs / 2 && depth < options.max_queue / 4) {
      behind = false;
      spdlog::info("event=collector_caught_up lag_ms={} queued={}", lag, depth);
    }
  }

  void Enqueue(const telemetry::MqttMessage& m) {
    if (m.topic == kBrokerDroppedTopic) {
      ReadBrokerDropped(m.payload);
      return;
    }
    const std::int64_t now = NowMs();
    std::uint64_t spooled = 0;
    if (spool) {
      // Before this returns: libmosquitto has acknowledged the message already.
      if (Result<std::uint64_t> g = spool->Append(m.topic, m.payload, now)) {
        spooled = *g;
      } else {
        spool_failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("event=spool_failed topic={} error={}", LogValue(m.topic),
                      LogValue(g.error().message));
      }
    }
    std::unique_lock lock(mu);
    has_space.wait(lock, [&] { return queue.size() < options.max_queue || closing; });
    queue.push_back({m.topic, m.payload, now, spooled});
    UpdateBehindLocked(now);
    // The writer waits for a first message, then for a full batch (or its gathering time).
    const bool wake = queue.size() == 1 || queue.size() == options.max_batch;
    lock.unlock();
    if (wake) has_work.notify_one();
  }

  // "$SYS/broker/publish/messages/dropped": mosquitto's count of messages it dropped for any
  // client's full queue since it started (every sys_interval). A rise is logged.
  void ReadBrokerDropped(const std::string& payload) {
    if (payload.empty() || payload.size() > 18 ||
        payload.find_first_not_of("0123456789") != std::string::npos) {
      Reject(kBrokerDroppedTopic, "expected a count, found " + manifests::QuoteName(payload));
      return;
    }
    const std::int64_t now = std::stoll(payload);
    const std::int64_t before = broker_dropped.exchange(now);
    if (now > before && now > 0) {
      spdlog::warn("event=broker_dropped dropped={} new={}", now, before < 0 ? now : now - before);
    }
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
                    : std::holds_alternative<RolloutStatus>(in.message)            ? rollouts
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
  // Returns false when the batch was dropped at shutdown (it stays in the spool).
  bool Store(const std::vector<IncomingMessage>& batch,
             const std::vector<const std::string*>& topics) {
    auto delay = std::chrono::milliseconds(100);
    while (true) {
      Result<std::vector<ApplyOutcome>> outcomes = store.Apply(batch);
      if (outcomes) {
        if (!batch.empty()) batches.fetch_add(1, std::memory_order_relaxed);
        for (std::size_t i = 0; i < batch.size(); ++i) Count(batch[i], (*outcomes)[i]);
        return true;
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
        return true;
      }
      store_retries.fetch_add(1, std::memory_order_relaxed);
      if (Stopping()) {
        lost.fetch_add(batch.size(), std::memory_order_relaxed);
        spdlog::error("event=store_failed messages={} error={} action=dropped_at_shutdown{}",
                      batch.size(), LogValue(outcomes.error().message),
                      spool ? " kept_in_spool=true" : "");
        return false;
      }
      spdlog::error("event=store_failed messages={} error={} retry_in_ms={}", batch.size(),
                    LogValue(outcomes.error().message), delay.count());
      {
        std::unique_lock lock(mu);
        UpdateBehindLocked(NowMs());
        has_work.wait_for(lock, delay, [&] { return stopping; });
      }
      delay = std::min(delay * 2, std::chrono::milliseconds(5000));
    }
  }

  void WriterLoop() {
    LowerThisThreadsPriority(kWriterNiceness);
    std::vector<RawMessage> raw;
    std::vector<IncomingMessage> batch;
    std::vector<const std::string*> topics;
    while (true) {
      raw.clear();
      {
        std::unique_lock lock(mu);
        has_work.wait(lock, [&] { return !queue.empty() || stopping; });
        if (queue.empty()) return;  // stopping and drained
        // Gather: one transaction rewrites the same pages (devices, sums, index leaves) whether
        // it holds ten messages or ten thousand, so a writer that keeps up commits at most every
        // batch_wait_ms (counted from the oldest message's arrival) unless max_batch are waiting.
        const std::int64_t due = queue.front().received_ms + options.batch_wait_ms;
        if (const std::int64_t wait_ms = due - NowMs(); wait_ms > 0) {
          has_work.wait_for(lock, std::chrono::milliseconds(wait_ms),
                            [&] { return queue.size() >= options.max_batch || stopping; });
        }
        const std::size_t n = std::min(queue.size(), options.max_batch);
        inflight_since_ms = queue.front().received_ms;
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
      if (Store(batch, topics) && spool) {
        // Done in the spool: runs of one generation at a time (a batch spans at most a few).
        std::size_t i = 0;
        while (i < raw.size()) {
          std::size_t j = i;
          while (j < raw.size() && raw[j].spooled == raw[i].spooled) ++j;
          if (raw[i].spooled != 0) spool->Done(raw[i].spooled, j - i);
          i = j;
        }
      }
      std::lock_guard lock(mu);
      inflight_since_ms = 0;
      UpdateBehindLocked(NowMs());
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
                "found " +
                    manifests::QuoteName(fleet));
  }
  if (options.max_queue == 0 || options.max_batch == 0 || options.batch_wait_ms < 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "collector: queue and batch bounds must be positive, the batch wait not negative");
  }
  const std::string& share = options.share;
  if (!share.empty() &&
      (share.size() > 64 || share.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                                                    "tuvwxyz0123456789._-") != std::string::npos)) {
    return Fail(ErrorCode::kInvalidArgument,
                "--share: expected a group name of 1-64 letters, digits, '.', '_' or '-', found " +
                    manifests::QuoteName(share));
  }
  options.mqtt.subscriptions.clear();
  options.mqtt.subscriptions.push_back(telemetry::DeviceTopic(fleet, "+", "status"));
  for (const char* leaf : {"telemetry", "events"}) {
    const std::string topic = telemetry::DeviceTopic(fleet, "+", leaf);
    options.mqtt.subscriptions.push_back(share.empty() ? topic : "$share/" + share + "/" + topic);
  }
  options.mqtt.subscriptions.push_back(RolloutStatusTopic(fleet, "+"));
  options.mqtt.subscriptions.push_back(std::string(kBrokerDroppedTopic));
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
  if (!self->options.spool.empty()) {
    std::vector<CollectorSpool::Record> leftover;
    EF_ASSIGN_OR_RETURN(self->spool, CollectorSpool::Open(self->options.spool, leftover));
    for (CollectorSpool::Record& r : leftover) {
      self->queue.push_back(
          {std::move(r.topic), std::move(r.payload), r.received_ms, r.generation});
    }
    if (!leftover.empty()) {
      spdlog::info("event=spool_replayed messages={} spool={}", leftover.size(),
                   LogValue(self->options.spool.string()));
    }
  }
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
  c.rollouts = load(s.rollouts);
  c.duplicates = load(s.duplicates);
  c.stale = load(s.stale);
  c.rejected = load(s.rejected);
  c.store_retries = load(s.store_retries);
  c.batches = load(s.batches);
  c.lost = load(s.lost);
  c.broker_dropped = s.broker_dropped.load();
  {
    std::lock_guard lock(s.mu);
    c.queued = s.queue.size();
    c.lag_ms = s.LagMsLocked(NowMs());
    c.behind = s.behind;
  }
  if (s.client) {
    c.connected = s.client->connected();
    c.connections = s.client->Counters().connections;
  }
  return c;
}

}  // namespace edgefleet::deploy
