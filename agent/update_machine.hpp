// The update state machine: from a signed desired state (or a bundle file for an offline
// install) to a committed model, or a failed / rolled back deployment with its reason.
//
// States are the journal's DeploymentState; events are what the step functions observe. The
// allowed moves are one table (TransitionTable); every move is recorded in the journal
// (RecordTransition / Finish, both durable before they return) and logged as an
// `event=deployment` line before the side effects of the new state start, so a crash at any
// point leaves the journal claiming no more progress than was made (agent/SPEC.md).
//
// Thread safety: an UpdateMachine is driven by one thread (the agent's update thread). The
// cancel flag it is given may be set from a signal handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config.hpp"
#include "agent/serving_stats.hpp"
#include "manifests/clock.hpp"
#include "manifests/desired_state.hpp"
#include "manifests/trust.hpp"
#include "runtime/backend.hpp"
#include "runtime/model_host.hpp"
#include "telemetry/payloads.hpp"
#include "updater/journal.hpp"
#include "updater/slots.hpp"
#include "updater/unpack.hpp"

namespace edgefleet::agent {

using updater::DeploymentState;

enum class Event {
  kStartDownload,     // pending -> downloading
  kLocalBundle,       // pending -> verifying (offline install: nothing to download)
  kDownloaded,        // downloading -> verifying
  kManifestMatches,   // verifying -> unpacking
  kUnpacked,          // unpacking -> loading
  kLoaded,            // loading -> parity
  kParityPassed,      // parity -> activating
  kActivated,         // activating -> watching
  kOfflineActivated,  // activating -> committed (offline install: no watch window)
  kWatchPassed,       // watching -> committed
  kBreach,            // watching -> rolling_back
  kSwitchedBack,      // rolling_back -> rolled_back
  kFailure,           // any state before the candidate served -> failed
  kInterrupted,       // restart recovery before activation -> abandoned
  kRestartedServing,  // restart recovery from activating/watching -> rolling_back
};

std::string_view ToString(Event event);

struct TransitionRule {
  DeploymentState from;
  Event event;
  DeploymentState to;
};

// Every allowed (state, event) -> state.
const std::vector<TransitionRule>& TransitionTable();
// The next state, or nullopt when the table has no such move.
std::optional<DeploymentState> NextState(DeploymentState from, Event event);

// Maps the updater's slot enum to the runtime's and back.
runtime::Slot ToRuntimeSlot(updater::Slot slot);

struct MachineContext {
  const AgentConfig* config = nullptr;
  const manifests::TrustRoot* trust = nullptr;
  updater::Journal* journal = nullptr;
  const updater::SlotStore* slots = nullptr;
  runtime::ModelHost* host = nullptr;
  std::vector<runtime::Backend*> backends;  // in the configured preference order
  const ServingStats* stats = nullptr;      // nullptr: offline (no watch window)
  const std::atomic<bool>* cancel = nullptr;
  // Time for the watch window; nullptr: manifests::SteadyClock().
  manifests::Clock* clock = nullptr;
  // Fleet events (ARCHITECTURE.md "events" topic): every transition, the parity report, and each
  // desired state or model entry refused. Called on the update thread after the journal write;
  // the receiver fills id, device and ts. Empty: no events (offline commands).
  std::function<void(telemetry::EventMessage)> on_event;
};

// Deployments of the journal, newest first, at most `limit` (status, restart bookkeeping).
Result<std::vector<updater::Deployment>> ListDeployments(const updater::Journal& journal,
                                                         std::size_t limit);

class UpdateMachine {
 public:
  explicit UpdateMachine(MachineContext context) : ctx_(std::move(context)) {}

  // Restart recovery: deployments found in progress before activation are abandoned (their
  // staging discarded; a download keeps its .part); those in activating/watching/rolling_back
  // are rolled back to the journal's active model. Then loads every model's journal-active slot
  // into the host and activates it. `models` adds names to look at besides those with
  // deployments (e.g. from the desired state); models in the slot store are found on disk.
  Status RecoverAndLoad();

  // Handles one desired-state document (text as read). Logs `event=desired_state` and, per
  // model, the deployments it runs. Returns after every deployment it started has finished (or
  // the cancel flag stopped it).
  void ApplyDesiredState(std::string_view text, std::string_view source);

  // Offline install of a local bundle file: verify (release role), unpack, compat, load,
  // parity, activate, commit. Returns the finished deployment, or the refusal.
  Result<updater::Deployment> InstallLocal(const std::filesystem::path& bundle);

  // Manual rollback to the previous committed slot (journal, and the host when loaded).
  Result<updater::ModelRecord> RollBack(std::string_view model);

 private:
  struct Run;  // one deployment in flight

  Status Step(Run& run, Event event, std::string_view reason = {});
  // Test fault point: SIGKILL right after journaling `state` when EDGEFLEET_FAULT_KILL_AT names it.
  static void MaybeCrashAt(updater::DeploymentState state);
  Status Fail(Run& run, const Error& error);
  void DiscardCandidate(Run& run);
  void Emit(const Run& run, std::string event, std::string from, std::string_view reason,
            std::string parity_json = {});
  void EmitRejected(std::uint64_t serial, std::string_view target, std::string_view model,
                    std::string_view version, std::string_view reason);
  bool Cancelled() const { return ctx_.cancel != nullptr && ctx_.cancel->load(); }

  void Deploy(const manifests::DesiredState& ds, const manifests::DesiredModel& entry,
              const std::string& target);
  // From verifying on: shared by the online and offline paths. Returns the terminal state
  // reached, or nullopt when the deployment stopped without one (cancelled, journal failure).
  // `streamed` is the pass that verified and staged the bundle while it downloaded (nullopt:
  // offline; an error of kAborted: abandoned, so the file is read once more).
  std::optional<DeploymentState> FromVerifying(Run& run, const std::filesystem::path& bundle,
                                               std::optional<Result<updater::Unpacked>> streamed);
  // Where a deployment unpacks (updater/unpack.hpp), with `extra_bytes` more free space needed.
  updater::UnpackTarget Target(const Run& run, std::uint64_t extra_bytes) const;
  Status LoadSlot(const std::string& model, updater::Slot slot, const std::string& sha256,
                  const std::filesystem::path& slot_dir, manifests::Manifest* manifest_out);
  std::optional<DeploymentState> Watch(Run& run);
  void CollectGarbage();
  // <state>/models/<model>/<slot>.variant: the variant measured and chosen for that slot ("<id>"
  // then "\n<backend>"), so a restart serves the same one on the same backend (LoadSlot). Best
  // effort: without it LoadSlot takes the first runnable pair.
  std::filesystem::path VariantFile(const std::string& model, updater::Slot slot) const;
  // <state>/models/<model>/<slot>.cache: what backends keep for the bundle in that slot (ONNX
  // Runtime's optimised model), one directory per backend; removed when the slot gets a new
  // bundle.
  std::filesystem::path CacheDir(const std::string& model, updater::Slot slot) const;
  // Threads and parallel runs from the config, and the backend's options plus the per-load
  // members the ABI describes (edgefleet_cache_dir, edgefleet_model_sha256).
  runtime::SessionOptions LoadOptions(const std::string& model, updater::Slot slot,
                                      const manifests::Manifest& manifest,
                                      const manifests::Variant& variant,
                                      const runtime::Backend& backend) const;
  void RememberVariant(const std::string& model, updater::Slot slot, const std::string& choice);

  MachineContext ctx_;
};

}  // namespace edgefleet::agent
