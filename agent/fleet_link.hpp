// The agent's link to the fleet over MQTT (ARCHITECTURE.md "Desired state and MQTT topics",
// "Telemetry"): the retained status (birth record on every connection, last will "offline",
// republished when a model changes and "offline" again at a clean stop), one telemetry message
// per model version and window, an event for every update transition, and the desired-state
// documents that arrive on the device's and its groups' retained `desired` topics.
//
// Everything outgoing goes through the SQLite outbox (<state_dir>/outbox.db) first, so a broker
// outage loses nothing but what the outbox bound says; a SIGKILL loses only the traffic of the
// telemetry window still open (at most telemetry.window_s of counts), never a closed window.
//
// Thread safety: Event/StatusChanged/NextDesired may be called from any thread (the update
// thread in practice); the link's own threads are the MQTT network thread and the telemetry
// thread, both stopped by Stop() or the destructor.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.hpp"
#include "agent/serving_stats.hpp"
#include "manifests/result.hpp"
#include "runtime/model_host.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::agent {

struct DesiredDocument {
  std::string topic;
  std::string payload;
};

class FleetLink final {
 public:
  // Opens the outbox, queues the birth status and starts the MQTT client (connecting in the
  // background) and the telemetry thread. `host` and `stats` must outlive the link; `stats` may
  // be null (no telemetry windows). Fails with kIo when the outbox or the journal cannot be opened,
  // kInvalidArgument for an unusable MQTT config (e.g. an unreadable password or TLS file).
  static Result<std::unique_ptr<FleetLink>> Start(const AgentConfig& config,
                                                  std::vector<telemetry::BackendInfo> backends,
                                                  const runtime::ModelHost& host,
                                                  ServingStats* stats);
  ~FleetLink();  // Stop()
  FleetLink(const FleetLink&) = delete;
  FleetLink& operator=(const FleetLink&) = delete;

  // An update event (id, device and ts are filled here); written to the outbox before return.
  // Transitions that change what serves also queue a fresh status.
  void Event(telemetry::EventMessage event);
  // Queues a fresh retained status (superseding any still queued).
  void StatusChanged();
  // The next desired-state document received, waiting up to `wait`. Documents on the same topic
  // that arrive before the previous one was taken replace it (only the newest matters).
  std::optional<DesiredDocument> NextDesired(std::chrono::milliseconds wait);
  // Closes the open telemetry window, queues the status "offline", gives the client up to
  // `drain` to deliver the outbox, then disconnects cleanly. Idempotent.
  void Stop(std::chrono::milliseconds drain = std::chrono::seconds(2));

  struct Impl;

 private:
  explicit FleetLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::agent
