// The collector's intake: an MQTT subscriber (telemetry::MqttClient, no outbox) on the fleet's
// device status, telemetry and events topics and its rollout status topics, a bounded queue, and
// one writer thread that checks each message (ClassifyMessage) and stores a burst of them in one
// transaction (CollectorStore::Apply), so thousands of windows per second cost a few commits.
//
// A message that is not one of ours (unknown topic, not JSON, over 64 KiB, wrong types, a
// payload whose "device" is not the topic's device) is refused: one log line
// `event=message_rejected topic=... error=...` and a counter; the collector carries on. The
// device is always the topic's: the broker's ACL lets a device publish only under its own name.
//
// Rollout status: edgefleet/v1/<fleet>/rollout/<id>/status, retained, QoS 1, published by
// `edgefleet rollout` (the broker's ACL grants these topics to the operator identity only). The
// payload is a JSON object of at most 64 KiB (keys other than these are kept but not read):
//   {"id": "digits-1.1.0-20261121T093000Z" ([A-Za-z0-9._-]{1,64}, the topic's <id>),
//    "ts": <Unix ms, the publisher's clock: the newest wins>, "fleet" (the topic's), "group",
//    "model", "version", "bundle" (URL), "state": running|paused|completed|halted|aborted,
//    "reason" (may be empty), "started_ts", "finished_ts" (0 while it runs),
//    "success_threshold", "error_threshold" (0..1), "wave" (current, 1-based; 0 before the first),
//    "waves": [{"percent" (cumulative share of the group, a number 0..100), "devices",
//               "succeeded", "failed", "pending", "state": waiting|running|done|halted}],
//    "devices": {"total", "succeeded", "failed", "updating", "waiting", "restored"},
//    "failures": [{"device", "reason"}] (at most 20)}
// Counts are non-negative integers.
//
// Falling behind and loss: the collector says it is behind (log, CollectorCounters::behind)
// when a message has waited 5 s unstored or its queue is half full, and it reads mosquitto's
// drop counter ($SYS/broker/publish/messages/dropped, logged `event=broker_dropped` when it
// rises). What was lost on the way shows per device as missing sequence numbers
// (collector_store.hpp).
//
// Thread safety: Start/Stop/Counters may be called from any thread; Stop is idempotent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "deploy/collector/collector_spool.hpp"
#include "deploy/collector/collector_store.hpp"
#include "manifests/result.hpp"
#include "telemetry/mqtt_client.hpp"

namespace edgefleet::deploy {

// "edgefleet/v1/<fleet>/rollout/<id>/status".
std::string RolloutStatusTopic(std::string_view fleet, std::string_view id);
// A rollout id: [A-Za-z0-9._-]{1,64}.
bool IsRolloutId(std::string_view id);

// Parses a rollout status payload (see above). Fails with kLimit over
// telemetry::kMaxPayloadBytes, kParse naming every field that is missing, of the wrong type or
// out of range.
Result<RolloutStatus> ParseRolloutStatus(std::string_view payload);

// Parses one incoming message and checks it against its topic. Fails with kInvalidArgument when
// the topic is not a device status/telemetry/events topic or a rollout status topic, kLimit when
// the payload is over telemetry::kMaxPayloadBytes, kParse (the parser's field-precise message,
// or the field whose value cannot be true, such as an id or fleet that is not the topic's)
// otherwise.
Result<IncomingMessage> ClassifyMessage(std::string_view topic, std::string_view payload,
                                        std::int64_t received_ms);

struct CollectorCounters {
  // Messages stored: new windows and events, statuses that became a device's current one.
  std::uint64_t status = 0;
  std::uint64_t telemetry = 0;
  std::uint64_t events = 0;
  std::uint64_t rollouts = 0;       // rollout statuses that became the rollout's current one
  std::uint64_t duplicates = 0;     // ids stored before (at-least-once redelivery)
  std::uint64_t stale = 0;          // statuses older than the device's (rollout's) current one
  std::uint64_t rejected = 0;       // refused messages (see above)
  std::uint64_t store_retries = 0;  // batches written again after a database error
  std::uint64_t batches = 0;        // transactions committed (messages per batch: stored / this)
  std::uint64_t lost = 0;           // messages dropped at shutdown while the database failed
  std::uint64_t queued = 0;         // waiting for the writer now
  std::int64_t lag_ms = 0;          // how long the oldest message not yet stored has waited
  // Said (log `event=collector_behind`) when a message waited 5 s or the queue is half full,
  // until the writer caught up (`event=collector_caught_up`): before anything can be dropped.
  bool behind = false;
  // The broker's own count of messages it dropped for full client queues
  // ($SYS/broker/publish/messages/dropped, mosquitto; every client, since the broker started);
  // -1 until the broker sent it (a broker without it, or an ACL that hides it).
  std::int64_t broker_dropped = -1;
  std::uint64_t connections = 0;  // successful broker connections so far
  bool connected = false;
};

struct CollectorOptions {
  telemetry::MqttOptions mqtt;  // broker, TLS, credentials, client id; subscriptions are set here
  std::string fleet;            // a fleet name, or "+" for every fleet
  std::size_t max_queue = 100000;  // the network thread waits (TCP backpressure) beyond this
  // Messages per transaction at most. A writer that has fallen behind takes up to this many at
  // once: each commit rewrites every device's newest index leaf however many of its messages it
  // holds, so a larger transaction is cheaper per message (bench/RESULTS.md, runs 9 and 10; at
  // 10,000 devices on 2 cores it still did not catch up).
  std::size_t max_batch = 50000;
  // How long the writer gathers messages into one transaction, from the oldest one's arrival
  // (unless max_batch are waiting): fewer, larger commits cost less CPU per message, and the
  // store lag grows by at most this. 0: commit whatever is queued at once.
  std::int64_t batch_wait_ms = 1000;
  // Files <spool>.<n> that hold every received message until it is stored, so a SIGKILL loses
  // none (deploy/collector/collector_spool.hpp); empty: none (a kill loses what was received, not
  // stored).
  std::filesystem::path spool;
  // A shared-subscription group name ([A-Za-z0-9._-]{1,64}): telemetry and events are
  // subscribed as $share/<share>/..., so the broker hands each message to one collector of the
  // group. Statuses and rollout statuses are not shared: each collector stores every one, in the
  // order the broker received it (a device's birth and last will must not be reordered by
  // going to two collectors), and the store keeps the newest. Empty: no group.
  std::string share;
};

class Collector final {
 public:
  // Starts the writer thread and the MQTT client (which connects in the background and retries
  // while the broker is down). Fails with kInvalidArgument for a bad fleet or unusable MQTT
  // options (the MQTT client's message).
  static Result<std::unique_ptr<Collector>> Start(CollectorOptions options, CollectorStore store);
  ~Collector();  // Stop()
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // Disconnects, stores what is queued, joins the writer. A database that keeps failing is
  // retried until Stop, then its batch is counted as lost.
  void Stop();
  CollectorCounters Counters() const;

  struct Impl;

 private:
  explicit Collector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::deploy
