// The collector's intake: an MQTT subscriber (telemetry::MqttClient, no outbox) on the fleet's
// device status, telemetry and events topics, a bounded queue, and one writer thread that checks
// each message (ClassifyMessage) and stores a burst of them in one transaction
// (CollectorStore::Apply), so thousands of windows per second cost a few commits.
//
// A message that is not one of ours (unknown topic, not JSON, over 64 KiB, wrong types, a
// payload whose "device" is not the topic's device) is refused: one log line
// `event=message_rejected topic=... error=...` and a counter; the collector carries on. The
// device is always the topic's: the broker's ACL lets a device publish only under its own name.
//
// Thread safety: Start/Stop/Counters may be called from any thread; Stop is idempotent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "deploy/collector_store.hpp"
#include "manifests/result.hpp"
#include "telemetry/mqtt_client.hpp"

namespace edgefleet::deploy {

// Parses one incoming message and checks it against its topic. Fails with kInvalidArgument when
// the topic is not a device status/telemetry/events topic, kLimit when the payload is over
// telemetry::kMaxPayloadBytes, kParse (the parser's field-precise message, or the field whose
// value cannot be true) otherwise.
Result<IncomingMessage> ClassifyMessage(std::string_view topic, std::string_view payload,
                                        std::int64_t received_ms);

struct CollectorCounters {
  // Messages stored: new windows and events, statuses that became a device's current one.
  std::uint64_t status = 0;
  std::uint64_t telemetry = 0;
  std::uint64_t events = 0;
  std::uint64_t duplicates = 0;     // ids stored before (at-least-once redelivery)
  std::uint64_t stale = 0;          // statuses older than the device's current one
  std::uint64_t rejected = 0;       // refused messages (see above)
  std::uint64_t store_retries = 0;  // batches written again after a database error
  std::uint64_t lost = 0;           // messages dropped at shutdown while the database failed
  std::uint64_t queued = 0;         // waiting for the writer now
  std::uint64_t connections = 0;    // successful broker connections so far
  bool connected = false;
};

struct CollectorOptions {
  telemetry::MqttOptions mqtt;  // broker, TLS, credentials, client id; subscriptions are set here
  std::string fleet;            // a fleet name, or "+" for every fleet
  std::size_t max_queue = 100000;  // the network thread waits (TCP backpressure) beyond this
  std::size_t max_batch = 5000;    // messages per transaction at most
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
