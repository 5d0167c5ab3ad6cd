// The MQTT connection (libmosquitto, MQTT 3.1.1, QoS 1): TLS with CA and client certificate,
// username/password, keepalive, a last will, reconnect with exponential backoff and jitter, a
// birth message published first on every connection, subscriptions renewed on every connection,
// and the publishing side of the Outbox.
//
// One network thread owns the mosquitto handle; every libmosquitto call and every callback runs
// on it, so no mosquitto state is shared between threads. While connected it publishes outbox
// rows in id order (at most `max_inflight` unacknowledged), and deletes a row when the PUBACK for
// its message id arrives. A lost connection forgets what was in flight and the handle is made
// anew, so after reconnecting the outbox is published again from its oldest row (at least once;
// libmosquitto's own resend queue is never used, so nothing is sent twice by two mechanisms).
//
// Thread safety: Start/Stop/Wake/connected/Counters may be called from any thread. Handlers run
// on the network thread and must not call Stop.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "telemetry/outbox.hpp"

namespace edgefleet::telemetry {

struct MqttMessage {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = false;
};

struct MqttOptions {
  std::string host;  // required
  int port = 1883;
  std::string client_id;  // required; the device name for agents
  std::string username;   // empty: none
  std::string password;
  int keepalive_s = 30;
  // TLS is on when ca_file is set; cert_file/key_file give a client certificate (both or neither).
  std::filesystem::path ca_file;
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30000};
  std::optional<MqttMessage> will;
  // Called on the network thread right after each CONNACK; its message is published before
  // any outbox row (the retained birth status). Empty function: no birth.
  std::function<std::optional<MqttMessage>(std::uint64_t connection)> birth;
  std::vector<std::string> subscriptions;  // QoS 1, renewed on every connection
  std::size_t max_inflight = 100;          // unacknowledged outbox publishes
  // Several clients may publish one outbox: client `shard` of `shards` publishes (and deletes)
  // only the rows whose topic hashes to it (OutboxShard), so one topic's messages keep their
  // order on one connection. A broker serves one packet per connection per turn of its loop;
  // a rollout's thousands of documents leave as many times faster as it has connections.
  std::size_t shard = 0;
  std::size_t shards = 1;
  // true: the broker forgets this client between connections (the agent: its outbox is the
  // only retry source). false: a persistent session; the broker keeps its subscriptions and
  // queues QoS 1 messages for it while it is away (the collector: nothing published while it
  // reconnects is lost; the broker's max_queued_messages bounds the queue).
  bool clean_session = true;
  // true: the PUBACK of a QoS 1 message leaves only after on_message has returned for it (and
  // for the other messages read with it). libmosquitto 2.0.11 otherwise writes the PUBACK
  // before it calls on_message, so a process killed in between loses a message the broker
  // thinks delivered (the collector spools in on_message). Done by telling libmosquitto the
  // application is threaded, so acknowledgements are queued for this client's own write step.
  bool ack_after_handler = false;
  // Incoming messages larger than this are not given to the handler; they are counted and
  // reported to on_rejected instead.
  std::size_t max_incoming_bytes = 64 * 1024;
};

struct MqttCounters {
  std::uint64_t connections = 0;  // successful CONNACKs so far
  std::uint64_t published = 0;    // outbox rows handed to the broker (re-sends included)
  std::uint64_t acked = 0;        // PUBACKs received for outbox rows
  std::uint64_t received = 0;     // incoming messages given to on_message
  std::uint64_t rejected = 0;     // incoming messages refused (too large)
};

struct MqttHandlers {
  // Every accepted incoming message (network thread).
  std::function<void(const MqttMessage&)> on_message;
  // A refused incoming message and why (network thread).
  std::function<void(const std::string& topic, const std::string& reason)> on_rejected;
  // Connection up (true) or down (false) with a reason (network thread).
  std::function<void(bool up, const std::string& reason)> on_connection;
};

// Which of `shards` publishers sends outbox rows on `topic` (FNV-1a of the topic).
std::size_t OutboxShard(std::string_view topic, std::size_t shards);

class MqttClient final {
 public:
  // Validates the options and starts the network thread, which connects in the background
  // (a broker that is down is not an error: it retries with backoff). `outbox` may be null (a
  // subscriber only, e.g. the collector); it must outlive the client. Fails with
  // kInvalidArgument for unusable options (missing host or client id, a TLS file that cannot be
  // read, cert without key) and kIo when libmosquitto cannot be set up.
  static Result<std::unique_ptr<MqttClient>> Start(MqttOptions options, Outbox* outbox,
                                                   MqttHandlers handlers);
  ~MqttClient();  // Stop()
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // New outbox rows are waiting: publish them without waiting for the next poll.
  void Wake();
  // Disconnects cleanly (the broker does not send the will) and joins the thread. Idempotent.
  void Stop();
  bool connected() const;
  MqttCounters Counters() const;

  struct Impl;

 private:
  explicit MqttClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::telemetry
