// The update journal: the box's durable memory of what it serves and what it is doing (SQLite).
//
// Per model it records the active slot and version (the last committed model: what a restart
// serves), the previous one (for a manual rollback), the highest version ever committed (rollback
// protection) and at most one deployment in progress with its state; per desired-state target
// the last serial accepted (replay defence); and an append-only history of every transition.
//
// Every mutating call is one SQLite transaction and returns only after it committed durably
// (WAL, synchronous=FULL): the agent records a transition *before* it starts the side effects of
// the new state, so after a crash or power cut the journal never claims less progress than was
// made on disk, and restart recovery (InProgress) sees where each deployment stopped.
//
// Deployment states follow ARCHITECTURE.md "The update, step by step":
//   kPending      accepted from a desired state; compatibility pre-check (step 1-2)
//   kDownloading  fetching the bundle (step 3; download_bytes tracks progress). The agent also
//                 verifies and unpacks the arriving bytes into staging (one streamed pass); that
//                 staging counts for nothing until the deployment reaches kUnpacking
//   kVerifying    hash and manifest signatures of the downloaded bundle (step 4)
//   kUnpacking    streaming the verified bundle into the inactive slot's staging dir (step 4)
//   kLoading      compatibility on the real graph and loading into the inactive slot (5-6)
//   kParity       golden-set smoke test, optional shadow phase (step 6)
//   kActivating   the swap (step 7): from here the candidate may be serving
//   kWatching     the watch window (step 8)
//   kRollingBack  switching back to the active slot after a breach (step 8)
// Terminal (the deployment is no longer in progress; only Finish enters them):
//   kCommitted    the candidate became the active model (step 9)
//   kRolledBack   the candidate served and was switched back; the active model is unchanged
//   kFailed       refused or broke before activation; the active model never changed
//   kAbandoned    given up without a verdict (superseded, or cleaned up on restart)
// The journal's active slot changes only at kCommitted: while a deployment is in kActivating,
// kWatching or kRollingBack the runtime may serve the candidate, and a restart serves `active`.
//
// Errors name the database file and the operation, e.g.
//   "/var/lib/edgefleet/journal.db: begin deployment 'digits' 1.3.0: a deployment is already in
//    progress (id 4, state downloading)".
// Codes: kIntegrity for a file that is not a database or is corrupt, kUnsupported for a schema
// newer than this build, kInvalidArgument for a refused request, kNotFound for an unknown id,
// kIo for disk or lock failures.
//
// Thread safety: a Journal is used by one thread at a time (the agent's update thread). Several
// processes may open the same file (SQLite locking, busy timeout); the agent holds one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "updater/slots.hpp"

namespace edgefleet::updater {

namespace detail {
struct JournalImpl;  // the sqlite3 connection; defined in journal.cpp
}  // namespace detail

enum class DeploymentState {
  kPending,
  kDownloading,
  kVerifying,
  kUnpacking,
  kLoading,
  kParity,
  kActivating,
  kWatching,
  kRollingBack,
  kCommitted,
  kRolledBack,
  kFailed,
  kAbandoned,
};

// Lower-case names as stored: "pending", "downloading", ..., "rolling_back", "rolled_back".
std::string_view ToString(DeploymentState state);
// Fails with kParse naming what was found.
Result<DeploymentState> ParseDeploymentState(std::string_view text);
bool IsTerminal(DeploymentState state);
// All states, in declaration order (for tables and tests).
const std::vector<DeploymentState>& AllDeploymentStates();

struct InstalledModel {
  Slot slot = Slot::kA;
  std::string version;
  std::string sha256;  // of the bundle
};

struct ModelRecord {
  std::string name;
  std::optional<InstalledModel> active;    // nullopt: nothing committed yet
  std::optional<InstalledModel> previous;  // nullopt: nothing to roll back to
  std::string highest_version;             // empty: nothing committed yet
};

// What BeginDeployment is asked to install (from a verified desired-state document).
struct DeploymentRequest {
  std::string model;
  std::string version;  // semver
  std::string bundle_url;
  std::uint64_t bundle_size = 0;
  std::string bundle_sha256;
  std::uint64_t serial = 0;  // of the desired state that asked for it
  std::string target;        // that document's target, e.g. "device/box-1"
  bool allow_downgrade = false;
};

struct Deployment {
  std::int64_t id = 0;
  DeploymentRequest request;
  DeploymentState state = DeploymentState::kPending;
  Slot slot = Slot::kA;  // the inactive slot chosen at begin; the candidate goes there
  std::string reason;    // of the last transition (error text for kFailed etc.)
  std::uint64_t download_bytes = 0;
  std::int64_t created_ms = 0;  // Unix epoch milliseconds
  std::int64_t updated_ms = 0;
};

struct Transition {
  std::int64_t seq = 0;  // global, increasing: the order of history
  std::int64_t deployment_id = 0;
  std::optional<DeploymentState> from;  // nullopt for the first (begin) record
  DeploymentState to = DeploymentState::kPending;
  std::string reason;
  std::int64_t at_ms = 0;
};

class Journal final {
 public:
  // Opens or creates the database at `path`, applies pending migrations (each in its own
  // transaction) and refuses a newer schema (kUnsupported) or a file that is not a SQLite
  // database (kIntegrity).
  static Result<Journal> Open(const std::filesystem::path& path);
  // The schema version this build creates (the highest embedded migration).
  static int LatestSchemaVersion();

  Journal(Journal&& other) noexcept;
  Journal& operator=(Journal&& other) noexcept;
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;
  ~Journal();

  const std::filesystem::path& path() const;

  // The model's record; a model never seen has only its name set.
  Result<ModelRecord> ReadModel(std::string_view model) const;

  // Starts a deployment in kPending, choosing the slot that is not active (A when none), and
  // records the first transition. Refuses (kInvalidArgument) a second deployment in progress for
  // the model, a version that does not parse, and a version below the highest committed unless
  // allow_downgrade. Forgets `previous` when it lives in the chosen slot, since unpacking is
  // about to overwrite it.
  Result<Deployment> BeginDeployment(const DeploymentRequest& request);

  // Records `id` moving to the non-terminal state `to`, with `reason`, committed before
  // returning. Refuses a terminal `to` (use Finish) and a deployment that is not in progress.
  Status RecordTransition(std::int64_t id, DeploymentState to, std::string_view reason = {});

  // Download progress (not a transition; may be called often, each call one small commit).
  Status RecordDownloadBytes(std::int64_t id, std::uint64_t bytes);

  // Moves `id` to the terminal state `to`. For kCommitted, in the same transaction: previous :=
  // active, active := the candidate (slot, version, bundle sha256), highest := max(highest,
  // version). Other terminal states leave the model record alone. Returns the finished
  // deployment; refuses a non-terminal `to` or a deployment not in progress.
  Result<Deployment> Finish(std::int64_t id, DeploymentState to, std::string_view reason = {});

  // A manual rollback: swaps active and previous (highest stays: rollback protection concerns
  // what may be installed, not which of two verified slots serves). Refuses when there is no
  // previous model or a deployment is in progress. Returns the new record.
  Result<ModelRecord> RollBackToPrevious(std::string_view model);

  Result<Deployment> ReadDeployment(std::int64_t id) const;
  // Deployments not in a terminal state, oldest first: what restart recovery must resume or
  // clean up.
  Result<std::vector<Deployment>> InProgress() const;
  // The history of one deployment, in the order it happened.
  Result<std::vector<Transition>> Transitions(std::int64_t id) const;

  // The last serial accepted for `target`, nullopt when none yet.
  Result<std::optional<std::uint64_t>> LastSerial(std::string_view target) const;
  // Records `serial` with the document's `digest` for `target` only if the serial is greater than
  // the last one (one atomic statement): kAccepted. The same serial with the same digest is the
  // document already accepted, read again (kSameDocument); an older serial, or the same serial
  // with other content, is a replay (kReplay). Only kAccepted changes anything.
  enum class SerialVerdict { kAccepted, kSameDocument, kReplay };
  Result<SerialVerdict> AcceptSerial(std::string_view target, std::uint64_t serial,
                                     std::string_view digest);

 private:
  explicit Journal(std::unique_ptr<detail::JournalImpl> impl);
  std::unique_ptr<detail::JournalImpl> impl_;
};

}  // namespace edgefleet::updater
