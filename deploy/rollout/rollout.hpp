// `edgefleet rollout`: pushes a model bundle to a group of devices in waves over MQTT (signed
// desired-state documents, retained, one per device so a wave is exactly the devices it names),
// watches what the devices report, advances at the success threshold, and halts and restores the
// previous desired state when failures pass the error threshold. See rollout_plan.hpp for the
// decisions and rollout_store.hpp for what survives a restart.
//
// Topics (ARCHITECTURE.md "Desired state and MQTT topics", plus the rollout's own):
//   publishes  edgefleet/v1/<fleet>/device/<d>/desired        per released device (retained)
//              edgefleet/v1/<fleet>/group/<g>/desired         once complete, for devices that join
//              edgefleet/v1/<fleet>/rollout/<id>/status       its progress (retained), read by the
//                                                             collector for the dashboard
//   reads      edgefleet/v1/<fleet>/device/+/status           which devices are in the group, what
//                                                             they run
//              edgefleet/v1/<fleet>/device/+/events           their deployment verdicts
//              edgefleet/v1/<fleet>/device/+/desired,
//              edgefleet/v1/<fleet>/group/<g>/desired         the previous desired state
// Everything published goes through a SQLite outbox beside the database (<db>.<id>.outbox), and
// the MQTT session is persistent (client id "edgefleet-rollout-<id>"), so events sent while the
// command is down are queued by the broker for `resume`.
//
// Thread safety: commands run one at a time from main().
#pragma once

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

// Exit codes of start/resume/abort (main() exits with them).
inline constexpr int kRolloutCompleted = 0;
inline constexpr int kRolloutHalted = 2;
inline constexpr int kRolloutAborted = 3;

struct RolloutConnectionOptions {
  std::string broker;  // HOST:PORT
  std::filesystem::path ca_file, cert_file, key_file;
  std::string username;
  std::filesystem::path password_file;
};

struct RolloutStartOptions {
  std::string model;
  std::string bundle;  // URL the devices download (http, https, file)
  std::string group;
  std::string waves = "10%,50%,100%";
  std::string fleet;
  std::vector<std::filesystem::path> deploy_keys;
  std::filesystem::path db;
  std::string success_threshold = "90%";
  std::string error_threshold = "10%";
  std::string wave_timeout = "10m";
  std::string expires = "30d";
  std::string success_on = "committed";  // or "activated"
  std::string discover = "2s";           // how long to collect retained statuses first
  std::string id;                        // default <model>-<version>-<UTC time>
  std::filesystem::path trust;           // optional: verify the bundle's release signatures
  RolloutConnectionOptions connection;
};
// Creates the rollout and drives it to the end (a paused rollout keeps its driver waiting for
// `resume`). Returns the exit code (kRolloutCompleted, kRolloutHalted, kRolloutAborted) or an error
// (bad flags, an unreachable broker or bundle, a bundle that is not --model, no device in the
// group, a database problem). SIGINT/SIGTERM stop the command and leave the rollout as it is for
// `resume`: kIo "interrupted".
Result<int> RolloutStart(const RolloutStartOptions& options, std::ostream& out);

struct RolloutCommandOptions {
  std::filesystem::path db;
  std::string id;  // empty: the newest rollout
  bool json = false;
  std::filesystem::path password_file;  // resume/abort: when the broker needs one
};
// resume: a paused rollout runs again; with no live driver this process drives it (as start).
Result<int> RolloutResume(const RolloutCommandOptions& options, std::ostream& out);
// abort: stops releasing and restores the previous desired state on every released device; with
// no live driver this process does it. Returns kRolloutAborted once done (or requested).
Result<int> RolloutAbort(const RolloutCommandOptions& options, std::ostream& out);
// pause: no further wave is released (the safety halt still applies).
Status RolloutPause(const RolloutCommandOptions& options, std::ostream& out);
Status PrintRolloutStatus(const RolloutCommandOptions& options, std::ostream& out);
Status RolloutList(const RolloutCommandOptions& options, std::ostream& out);

}  // namespace edgefleet::deploy
