// The rollout's driver: the loop that runs a created rollout to its end for `edgefleet rollout
// start`, and for `resume`/`abort` when no other process drives it (rollout.hpp has the topics).
// It releases the waves (one signed desired-state document per device, retained), takes the
// devices' verdicts from their events and statuses, decides with rollout_plan.hpp's Decide, and on
// a halt or abort publishes the previous desired state again; once complete, the group's document.
// Every change is saved in the RolloutStore before what it publishes is queued in the outbox.
// Also here, because the driver uses them and the commands need them too: the MQTT link to the
// broker, the deploy-role signer, the retained documents read back, the progress report and the
// lease check. rollout_commands.cpp parses the command line and prepares the rollout.
//
// Thread safety: one driver per rollout (the lease in the database, held while Drive runs); it
// runs on the calling thread. A Link's MQTT client calls back on its network thread and only
// fills the Link's Inbox (its mutex guards the queue); everything else is for the caller's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deploy/common/stop_signals.hpp"
#include "deploy/rollout/rollout_plan.hpp"
#include "deploy/rollout/rollout_sign.hpp"
#include "deploy/rollout/rollout_status.hpp"
#include "deploy/rollout/rollout_store.hpp"
#include "manifests/crypto.hpp"
#include "manifests/result.hpp"
#include "telemetry/mqtt_client.hpp"
#include "telemetry/outbox.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::deploy {

// What a retained desired document says, read without checking signatures (the rollout only
// needs what the devices were told; the agents do the checking).
struct PreviousDoc {
  nlohmann::json models;  // null when there is no usable document
  std::uint64_t serial = 0;
  std::string created;
};
PreviousDoc ReadPreviousDoc(const std::string& text);

// ---- the MQTT side: messages from the network thread to the driver's loop ----

struct Inbox {
  std::mutex mu;
  std::deque<telemetry::MqttMessage> messages;  // guarded by mu
  std::string last_connection_reason;           // guarded by mu
  std::atomic<bool> up{false};
};

struct Link {
  std::unique_ptr<Inbox> inbox;
  std::unique_ptr<telemetry::Outbox> outbox;
  std::unique_ptr<telemetry::MqttClient> client;
  // Clean sessions "edgefleet-rollout-<id>-pub<k>" that publish the outbox beside `client`, each
  // the rows of its share of the topics (MqttOptions::shard): a broker reads one packet per
  // connection per turn of its loop, so a wave's documents leave that many times faster.
  std::vector<std::unique_ptr<telemetry::MqttClient>> publishers;
  // Clean session "edgefleet-rollout-<id>-discovery" on the devices' desired topics: their
  // retained documents are read once, before the driver starts (Discover stops it), so the
  // documents a wave publishes do not come back to the rollout.
  std::unique_ptr<telemetry::MqttClient> discovery;
  std::filesystem::path outbox_path;

  // New outbox rows: every publisher looks now.
  void Wake();
  // Disconnects every client (idempotent).
  void Stop();
};

// The rollout's persistent session (client id "edgefleet-rollout-<id>", outbox <db>.<id>.outbox),
// subscribed to the fleet's device status and events topics and the group's desired topic, the
// publishers and the discovery client beside it (the link's client and the discovery client fill
// the one Inbox). Errors: a bad --broker or password file, the outbox or a client failing to
// start.
Result<Link> OpenLink(const RolloutConnection& c, const std::string& fleet,
                      const std::string& group, const std::string& rollout_id,
                      const std::filesystem::path& db);

// Waits for the first connection of the link's clients (or a stop signal); kIo naming the broker
// and why otherwise.
Status WaitConnected(Link& link, const std::string& broker, const StopSignals& stop,
                     std::chrono::seconds limit);

// What start and resume collected on the broker before the driver starts (rollout_commands.cpp's
// Discover): the retained statuses and desired documents, and the events.
struct Discovery {
  std::map<std::string, telemetry::StatusMessage> statuses;
  std::map<std::string, std::string> device_docs;  // device -> retained desired document
  std::string group_doc;
  // Events, in arrival order: for `resume`, the verdicts the broker queued while no driver ran.
  std::vector<telemetry::MqttMessage> events;
};

// ---- the driver ----

// Runs the driver to the end (or a stop signal), then stops the link; a rollout that is over
// also gives up its broker session and outbox file. Returns kRolloutCompleted, kRolloutHalted or
// kRolloutAborted; an error when another live process holds the lease (kUnavailable), the
// database, the outbox or a signature fails, or a stop signal came (kIo "interrupted"; the
// rollout is left for `resume`).
Result<int> Drive(RolloutStore& store, const RolloutRecord& r, std::vector<RolloutDevice> devices,
                  Signer signer, Link& link, Discovery found, const RolloutConnection& c,
                  const StopSignals& signals, std::ostream& out);

// Whether another live process holds the rollout's lease (a recent heartbeat).
bool DriverAlive(const RolloutRecord& r);

}  // namespace edgefleet::deploy
