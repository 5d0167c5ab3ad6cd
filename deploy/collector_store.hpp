// The collector's database (SQLite, WAL): devices, telemetry windows, events and running totals
// per device, model and version (schema: deploy/collector_migrations/NNNN_*.sql, numbered
// migrations embedded at build time). `edgefleet collect` writes it through one CollectorStore;
// the HTTP API and `edgefleet devices` read it through FleetView, which opens the file read-only
// and may run in other processes at the same time (WAL: readers never block the writer).
//
// What a write does (CollectorStore::Apply, one transaction per batch):
// - windows and events: INSERT OR IGNORE by message id; an id already stored is a duplicate and
//   changes nothing (at-least-once delivery never counts twice). A new window also adds to the
//   totals of its device, model and version.
// - status: the newest by the device's clock wins; an older one (ts below the stored one) is
//   stale and only refreshes last_seen_ms. The last will (online false, connection 0) is
//   composed by the agent when it connects, so its ts is older than the birth that follows; the
//   broker publishes it when the connection dies, in order with the births on the same topic, so
//   it always marks the device offline and keeps the stored status (agent version, models).
// - every message but the last will sets the device's last_seen_ms to the collector's clock.
//
// Thread safety: a CollectorStore is for one thread (the collector's writer). FleetView's
// methods may be called from any thread; one mutex guards its connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "manifests/result.hpp"
#include "telemetry/latency_histogram.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::deploy {

// One message from a device, parsed and checked (deploy/collector.hpp: ClassifyMessage).
struct IncomingMessage {
  std::string fleet;             // from the topic
  std::int64_t received_ms = 0;  // collector clock
  std::string json;              // the payload as published
  std::variant<telemetry::StatusMessage, telemetry::TelemetryWindow, telemetry::EventMessage>
      message;  // its device is the topic's device
};

enum class ApplyOutcome {
  kStored,     // a new window or event, or a status that became the device's current one
  kDuplicate,  // its id was stored before (or is the current status)
  kStale,      // a status older than the device's current one
};

namespace detail {
struct StoreImpl;
}

class CollectorStore final {
 public:
  // Opens (creating when missing) and migrates the database. Fails with kIo naming the file when
  // it cannot be opened or written, kIntegrity when it is not a database, kUnsupported when its
  // schema is newer than this build.
  static Result<CollectorStore> Open(const std::filesystem::path& path);
  CollectorStore(CollectorStore&&) noexcept;
  CollectorStore& operator=(CollectorStore&&) noexcept;
  ~CollectorStore();

  // Applies the batch in one transaction and returns one outcome per message, in order. On
  // failure (kIo: busy, disk full; kInternal: a constraint the checks missed) nothing of the
  // batch is applied.
  Result<std::vector<ApplyOutcome>> Apply(std::span<const IncomingMessage> batch);

  static int LatestSchemaVersion();

 private:
  explicit CollectorStore(std::unique_ptr<detail::StoreImpl> impl);
  std::unique_ptr<detail::StoreImpl> impl_;
};

struct DeviceRecord {
  std::string device;
  std::string fleet;
  bool online = false;
  std::optional<std::int64_t> last_seen_ms;
  std::optional<std::int64_t> offline_since_ms;
  std::optional<std::int64_t> status_ts;
  std::string agent_version;
  std::uint64_t connection = 0;
  std::string status_json;  // empty until a full status arrived

  // The models of status_json (empty when there is none, or it no longer parses).
  std::vector<telemetry::ModelStatus> Models() const;
};

// Sums over windows of one device, model and version.
struct SeriesStats {
  std::string device;
  std::string model;
  std::string version;
  std::string last_slot;     // slot of the newest window
  std::int64_t last_ts = 0;  // end of the newest window (device clock)
  std::uint64_t windows = 0;
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::uint64_t labeled = 0;
  std::uint64_t correct = 0;
  telemetry::LatencySnapshot latency;  // buckets, sum and count added; percentiles recomputed
};

struct StoredMessage {
  std::string fleet;
  std::int64_t received_ms = 0;
  std::string json;  // as published
};

struct WindowQuery {
  std::optional<std::string> device;
  std::optional<std::string> model;
  std::optional<std::int64_t> since_ms;  // windows ending at or after (device clock)
  std::size_t limit = 100;
};

struct EventQuery {
  std::optional<std::string> device;
  std::size_t limit = 100;
};

namespace detail {
struct ViewImpl;
}

class FleetView final {
 public:
  // Opens an existing collector database read-only. Fails with kNotFound when the file does not
  // exist, kIntegrity when it is not a collector database, kUnsupported when its schema is not
  // the one this build reads, kIo otherwise; the message names the file.
  static Result<FleetView> Open(const std::filesystem::path& path);
  FleetView(FleetView&&) noexcept;
  FleetView& operator=(FleetView&&) noexcept;
  ~FleetView();

  // Every device, by name.
  Result<std::vector<DeviceRecord>> Devices() const;
  // Per device, model and version, every window ever stored (the running totals).
  Result<std::vector<SeriesStats>> Totals() const;
  // Per device, model and version, the windows ending within `span` before that series' newest
  // window (relative to the device's own clock, so a box whose clock is off still shows its
  // last `span` of traffic).
  Result<std::vector<SeriesStats>> Recent(std::chrono::milliseconds span) const;
  // Newest first (by ts, then id).
  Result<std::vector<StoredMessage>> Windows(const WindowQuery& query) const;
  Result<std::vector<StoredMessage>> Events(const EventQuery& query) const;

 private:
  explicit FleetView(std::unique_ptr<detail::ViewImpl> impl);
  std::unique_ptr<detail::ViewImpl> impl_;
};

}  // namespace edgefleet::deploy
