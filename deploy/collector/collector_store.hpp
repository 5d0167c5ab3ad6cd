// The collector's database (SQLite, WAL): devices, telemetry windows, events, running totals
// per device, model and version, and the rollouts `edgefleet rollout` reports (schema:
// deploy/collector/collector_migrations/NNNN_*.sql, numbered migrations embedded at build time).
// `edgefleet collect` writes it through one CollectorStore; the HTTP API and `edgefleet devices`
// read it through FleetView, which opens the file read-only and may run in other processes at the
// same time (WAL: readers never block the writer).
//
// What a write does (CollectorStore::Apply, one transaction per batch):
// - windows and events: INSERT OR IGNORE by message id; an id already stored is a duplicate and
//   changes nothing (at-least-once delivery never counts twice). A new window also adds to the
//   totals of its device, model and version and to its model version's 10-second series; these
//   sums, like the sequences below, are added up over the batch and written once per row.
// - a stored window or event with a sequence number ("seq") adds to its device's sequence
//   (table sequences): lowest and highest number and how many were stored, so the numbers
//   never stored are counted (DeviceRecord::missing).
// - status: the newest by the device's clock wins; an older one (ts below the stored one) is
//   stale and only refreshes last_seen_ms. The last will (online false, connection 0) is
//   composed by the agent when it connects, so its ts is older than the birth that follows; the
//   broker publishes it when the connection dies, in order with the births on the same topic, so
//   it always marks the device offline and keeps the stored status (agent version, models).
// - every device message but the last will sets the device's last_seen_ms to the collector's
//   clock.
// - rollout status: one row per fleet and rollout id; the newest by the publisher's clock wins,
//   an older one is stale and changes nothing, the same message again is a duplicate.
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

// A rollout's progress as `edgefleet rollout` publishes it, retained, on
// edgefleet/v1/<fleet>/rollout/<id>/status (parsed and checked by deploy/collector/collector.hpp:
// ParseRolloutStatus). Times are Unix ms on the publisher's clock.
struct RolloutWave {
  double percent = 0;  // of the group's devices, cumulative (0..100)
  std::uint64_t devices = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::uint64_t pending = 0;
  std::string state;  // waiting, running, done, halted
};
struct RolloutDeviceCounts {
  std::uint64_t total = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::uint64_t updating = 0;
  std::uint64_t waiting = 0;
  std::uint64_t restored = 0;
};
struct RolloutFailure {
  std::string device;
  std::string reason;
};
struct RolloutStatus {
  std::string id;  // [A-Za-z0-9._-]{1,64}, the topic's <id>
  std::int64_t ts = 0;
  std::string fleet;
  std::string group;
  std::string model;
  std::string version;
  std::string bundle;
  std::string state;  // running, paused, completed, halted, aborted
  std::string reason;
  std::int64_t started_ts = 0;
  std::int64_t finished_ts = 0;  // 0 while it runs
  double success_threshold = 0;
  double error_threshold = 0;
  std::uint64_t wave = 0;  // current wave, 1-based; 0 before the first
  std::vector<RolloutWave> waves;
  RolloutDeviceCounts devices;
  std::vector<RolloutFailure> failures;  // at most kMaxRolloutFailures
};
inline constexpr std::size_t kMaxRolloutFailures = 20;

// One message from a device or from `edgefleet rollout`, parsed and checked
// (deploy/collector/collector.hpp: ClassifyMessage).
struct IncomingMessage {
  std::string fleet;             // from the topic
  std::int64_t received_ms = 0;  // collector clock
  std::string json;              // the payload as published
  std::variant<telemetry::StatusMessage, telemetry::TelemetryWindow, telemetry::EventMessage,
               RolloutStatus>
      message;  // a device message's device is the topic's device; a rollout's id the topic's
};

enum class ApplyOutcome {
  kStored,     // a new window or event, or a status that became the device's (rollout's) current
  kDuplicate,  // its id was stored before (or is the current status)
  kStale,      // a status older than the device's (rollout's) current one
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
  // The device's numbered windows and events stored, and the numbers missing between the lowest
  // and highest stored in each of its streams
  // (deploy/collector/collector_migrations/0003_sequences.sql): messages lost between its outbox
  // and this database. A device that sends a number twice under two ids (no agent does) can hide as
  // many missing ones; never below 0.
  std::uint64_t numbered = 0;
  std::uint64_t missing = 0;

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
  telemetry::LatencySnapshot latency;     // buckets, sum and count added; percentiles recomputed
  std::optional<double> golden_accuracy;  // mean over the windows that carry one (not Totals())
};

struct StoredMessage {
  std::string fleet;
  std::int64_t received_ms = 0;
  std::string json;  // as published
};

// A page of devices, by name, that match every filter given.
struct DeviceQuery {
  std::optional<bool> online;
  std::optional<std::string> group;    // in the groups of its newest status
  std::optional<std::string> model;    // a model its newest status lists
  std::optional<std::string> version;  // the active version of a model it lists (of `model`
                                       // when given)
  std::optional<std::string> after;    // names after this one: the previous page's `next`
  std::size_t limit = 0;               // 0: every match
};
struct DevicePage {
  std::vector<DeviceRecord> devices;
  std::uint64_t matching = 0;       // devices matching the filters, on every page together
  std::optional<std::string> next;  // `after` for the next page; none on the last
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

// Every device's windows of a model version summed per time bucket (by the window's end, ts).
struct SeriesQuery {
  std::optional<std::string> model;
  std::optional<std::int64_t> since_ms;  // windows ending at or after; default: newest - 15 min
  std::int64_t bucket_ms = 10000;        // positive
  std::size_t max_points = 20000;        // more buckets than this fail with kInvalidArgument
};
struct SeriesBuckets {
  std::int64_t since_ms = 0;  // the one used (0 when there are no windows and none was given)
  // Sorted by model, version and bucket. device is empty (every device), last_ts is the bucket's
  // start (a multiple of bucket_ms), last_slot is empty.
  std::vector<SeriesStats> buckets;
};

// The fleet at a glance for /api/summary, computed in the database (no status is parsed per
// device): device counts, numbered and missing messages, and per model version the devices that
// sent windows of it, the devices whose newest status has it active, and its windows summed.
struct VersionSummary {
  std::string model;
  std::string version;
  std::uint64_t devices = 0;    // devices with windows of it (within the span, when given)
  std::uint64_t active_on = 0;  // devices whose newest status has it active
  SeriesStats sum;              // device empty
};
struct FleetSummary {
  std::uint64_t devices = 0;
  std::uint64_t online = 0;
  std::uint64_t numbered = 0;            // numbered windows and events stored, every device
  std::vector<VersionSummary> versions;  // sorted by model, version
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
  // A page of the devices that match `query`.
  Result<DevicePage> Devices(const DeviceQuery& query) const;
  // Numbers missing over every device (DeviceRecord::missing summed) and how many devices miss
  // any: from the sequences table alone.
  struct MissingTotals {
    std::uint64_t missing = 0;
    std::uint64_t devices = 0;
  };
  Result<MissingTotals> Missing() const;
  // Every device, by name, with its state and its groups (from its newest status, sorted,
  // without repeats, joined by ','; empty for none): read with SQLite's JSON functions, no status
  // parsed per device (/metrics).
  struct DeviceGroups {
    std::string device;
    bool online = false;
    std::string groups;
  };
  Result<std::vector<DeviceGroups>> Groups() const;
  // The summary above; with `span`, the windows within it (as Recent counts them), else every
  // window ever stored. Missing numbers come from Missing().
  Result<FleetSummary> Summary(std::optional<std::chrono::milliseconds> span) const;
  // Per device, model and version, every window ever stored (the running totals).
  Result<std::vector<SeriesStats>> Totals() const;
  // Per device, model and version, the windows ending within `span` before that series' newest
  // window (relative to the device's own clock, so a box whose clock is off still shows its
  // last `span` of traffic).
  Result<std::vector<SeriesStats>> Recent(std::chrono::milliseconds span) const;
  // Newest first (by ts, then id).
  Result<std::vector<StoredMessage>> Windows(const WindowQuery& query) const;
  Result<std::vector<StoredMessage>> Events(const EventQuery& query) const;
  // Per model, version and time bucket; fails with kInvalidArgument when there would be more
  // than max_points buckets.
  Result<SeriesBuckets> Series(const SeriesQuery& query) const;
  // The newest `limit` rollouts by started_ts (then id), newest first; their newest status each.
  Result<std::vector<StoredMessage>> Rollouts(std::size_t limit) const;

 private:
  explicit FleetView(std::unique_ptr<detail::ViewImpl> impl);
  std::unique_ptr<detail::ViewImpl> impl_;
};

}  // namespace edgefleet::deploy
