// The rollout database (`edgefleet rollout --db`, SQLite): every rollout's spec, state, waves and
// per device what was published and what it reported, so a rollout survives a restart of the
// command (`edgefleet rollout resume`) and `status`/`pause`/`abort` work from another shell while
// `start` runs. The process driving a rollout holds a lease (its pid and a heartbeat); control
// requests from other processes are a column it polls.
//
// Thread safety: one RolloutStore per thread; several processes may open the same file (SQLite
// locking with a busy timeout; every write is one short transaction).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deploy/rollout/rollout_plan.hpp"
#include "manifests/result.hpp"
#include "manifests/sqlite_db.hpp"

namespace edgefleet::deploy {

// How the driver reaches the broker and signs (paths only: no key material or password is
// stored; a resumed rollout reads the same files again).
struct RolloutConnection {
  std::string broker;  // HOST:PORT
  std::string ca_file, cert_file, key_file;
  std::string username, password_file;
  std::vector<std::string> deploy_keys;  // private key files of the deploy role
  nlohmann::json ToJson() const;
  static Result<RolloutConnection> FromJson(const nlohmann::json& j);
};

struct RolloutRecord {
  std::string id;  // [A-Za-z0-9._-]{1,64}
  std::string fleet, group, model, version, bundle_url;
  nlohmann::json desired_model;  // the desired-state model entry for the new version
  std::vector<double> waves;     // percentages as given
  Thresholds thresholds;
  std::int64_t wave_timeout_s = 600;
  std::int64_t expires_s = 30 * 86400;   // lifetime of each desired-state document signed
  std::string success_on = "committed";  // or "activated"
  RolloutConnection connection;
  std::string group_doc;  // the group's retained desired state when the rollout started ("" none)

  RolloutState state = RolloutState::kRunning;
  std::string reason;
  std::size_t wave = 0;  // waves started so far (1-based current wave; 0 before the first)
  std::int64_t started_ms = 0, wave_started_ms = 0, finished_ms = 0, updated_ms = 0;
  std::uint64_t group_serial = 0;  // serial of the group document published at completion
  std::string control;             // requested by another process: "pause", "resume", "abort"
  std::int64_t driver_pid = 0, driver_heartbeat_ms = 0;
};

struct RolloutDevice {
  std::string device;
  std::size_t wave = 0;  // 1-based wave that releases it
  DeviceState state = DeviceState::kWaiting;
  // The verdict on the rollout's document: "" none yet, "succeeded" or "failed". Kept when the
  // device is restored, so a halted rollout still says which devices failed.
  std::string outcome;
  std::string detail;             // last event, or the failure reason
  std::uint64_t serial = 0;       // of the document published to it (0: not yet)
  std::string doc;                // that signed document
  nlohmann::json prev_models;     // models of its previous desired state (array), or null: none
  std::uint64_t prev_serial = 0;  // its device topic's serial when the rollout started
  std::string prev_version;       // the rollout model's active version when the rollout started
  std::uint64_t restore_serial = 0;
  std::string restore_doc;
  std::int64_t updated_ms = 0;
};

class RolloutStore final {
 public:
  // Opens or creates the database (kIo naming the file; kUnsupported for a newer schema).
  // Read-only opens never create or migrate (kNotFound for a missing file).
  static Result<RolloutStore> Open(const std::filesystem::path& path, bool read_only = false);

  // Inserts a new rollout with its devices in one transaction; kInvalidArgument when the id
  // exists already.
  Status Create(const RolloutRecord& rollout, std::span<const RolloutDevice> devices);
  // The rollout `id`, or the newest one for an empty id; kNotFound naming the id/file.
  Result<RolloutRecord> Get(const std::string& id) const;
  Result<std::vector<RolloutRecord>> List() const;                          // newest first
  Result<std::vector<RolloutDevice>> Devices(const std::string& id) const;  // by device name
  // Writes the rollout's mutable fields and the given devices in one transaction.
  Status Save(const RolloutRecord& rollout, std::span<const RolloutDevice> devices);
  // Sets the control column (pause, resume, abort); kNotFound for an unknown id.
  Status RequestControl(const std::string& id, const std::string& control);
  // Reads and clears the control column.
  Result<std::string> TakeControl(const std::string& id);
  // Takes the driver lease: fails (kUnavailable naming the pid) when another live process holds
  // it (heartbeat younger than `stale_ms` and its pid exists); else records ours.
  Status AcquireLease(const std::string& id, std::int64_t pid, std::int64_t now_ms,
                      std::int64_t stale_ms);
  Status Heartbeat(const std::string& id, std::int64_t pid, std::int64_t now_ms);
  Status ReleaseLease(const std::string& id, std::int64_t pid);
  // The serial to use next for `target` ("device/<d>" or "group/<g>"): above `seen` (the
  // retained document's serial), above every serial this database used for it, and at least
  // now_ms (so serials keep increasing even across rollout databases). Records it.
  Result<std::uint64_t> NextSerial(const std::string& fleet, const std::string& target,
                                   std::uint64_t seen, std::int64_t now_ms);
  // NextSerial for many targets in one transaction (one fsync for a whole wave, where a
  // transaction per device cost about 4.5 ms each); the serials come back in `requests` order.
  // Nothing is recorded when any of them fails.
  struct SerialRequest {
    std::string target;
    std::uint64_t seen = 0;
  };
  Result<std::vector<std::uint64_t>> NextSerials(const std::string& fleet,
                                                 std::span<const SerialRequest> requests,
                                                 std::int64_t now_ms);

  const std::filesystem::path& path() const { return db_.path(); }

 private:
  explicit RolloutStore(manifests::SqliteDb db) : db_(std::move(db)) {}
  manifests::SqliteDb db_;
};

// True when a process with this pid exists (kill(pid, 0)).
bool ProcessAlive(std::int64_t pid);

}  // namespace edgefleet::deploy
