#include "agent/update_machine.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/log_value.hpp"
#include "manifests/canonical.hpp"
#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "manifests/json_fields.hpp"
#include "runtime/compat.hpp"
#include "runtime/parity.hpp"
#include "updater/bundle_reader.hpp"
#include "updater/fetch.hpp"

namespace edgefleet::agent {

namespace {

using Clock = std::chrono::steady_clock;
using updater::Deployment;
using updater::Slot;

std::string Fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

std::string Join(const std::vector<std::string>& lines, std::string_view sep) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += sep;
    out += l;
  }
  return out;
}

constexpr std::size_t kMaxLocalReadBytes = manifests::kMaxManifestBytes;

Result<std::string> ReadSmallFile(const std::filesystem::path& path, std::size_t cap) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return edgefleet::Fail(ErrorCode::kIo, path.string() + ": cannot open");
  std::string text(cap + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return edgefleet::Fail(ErrorCode::kIo, path.string() + ": read failed");
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

}  // namespace

std::string_view ToString(Event event) {
  switch (event) {
    case Event::kStartDownload: return "start_download";
    case Event::kLocalBundle: return "local_bundle";
    case Event::kDownloaded: return "downloaded";
    case Event::kManifestMatches: return "manifest_matches";
    case Event::kUnpacked: return "unpacked";
    case Event::kLoaded: return "loaded";
    case Event::kParityPassed: return "parity_passed";
    case Event::kActivated: return "activated";
    case Event::kOfflineActivated: return "offline_activated";
    case Event::kWatchPassed: return "watch_passed";
    case Event::kBreach: return "breach";
    case Event::kSwitchedBack: return "switched_back";
    case Event::kFailure: return "failure";
    case Event::kInterrupted: return "interrupted";
    case Event::kRestartedServing: return "restarted_serving";
  }
  return "unknown";
}

const std::vector<TransitionRule>& TransitionTable() {
  using S = DeploymentState;
  using E = Event;
  static const std::vector<TransitionRule> table = [] {
    std::vector<TransitionRule> t = {
        {S::kPending, E::kStartDownload, S::kDownloading},
        {S::kPending, E::kLocalBundle, S::kVerifying},
        {S::kDownloading, E::kDownloaded, S::kVerifying},
        {S::kVerifying, E::kManifestMatches, S::kUnpacking},
        {S::kUnpacking, E::kUnpacked, S::kLoading},
        {S::kLoading, E::kLoaded, S::kParity},
        {S::kParity, E::kParityPassed, S::kActivating},
        {S::kActivating, E::kActivated, S::kWatching},
        {S::kActivating, E::kOfflineActivated, S::kCommitted},
        {S::kActivating, E::kFailure, S::kFailed},  // the switch itself failed: never served
        {S::kActivating, E::kRestartedServing, S::kRollingBack},
        {S::kActivating, E::kInterrupted, S::kAbandoned},  // restart, no previous model
        {S::kWatching, E::kWatchPassed, S::kCommitted},
        {S::kWatching, E::kBreach, S::kRollingBack},
        {S::kWatching, E::kRestartedServing, S::kRollingBack},
        {S::kWatching, E::kInterrupted, S::kAbandoned},  // restart, no previous model
        {S::kRollingBack, E::kSwitchedBack, S::kRolledBack},
    };
    // Before the candidate may serve, any step can fail or be interrupted by a restart.
    for (S s : {S::kPending, S::kDownloading, S::kVerifying, S::kUnpacking, S::kLoading,
                S::kParity}) {
      t.push_back({s, E::kFailure, S::kFailed});
      t.push_back({s, E::kInterrupted, S::kAbandoned});
    }
    return t;
  }();
  return table;
}

std::optional<DeploymentState> NextState(DeploymentState from, Event event) {
  for (const auto& rule : TransitionTable()) {
    if (rule.from == from && rule.event == event) return rule.to;
  }
  return std::nullopt;
}

runtime::Slot ToRuntimeSlot(updater::Slot slot) {
  return slot == updater::Slot::kA ? runtime::Slot::kA : runtime::Slot::kB;
}

Result<std::vector<Deployment>> ListDeployments(const updater::Journal& journal,
                                                std::size_t limit) {
  // The journal has no listing call; ids are dense from 1, so read upward until a run of misses.
  std::vector<Deployment> all;
  int misses = 0;
  for (std::int64_t id = 1; misses < 32; ++id) {
    auto dep = journal.ReadDeployment(id);
    if (!dep) {
      if (dep.error().code != ErrorCode::kNotFound) return Unexpected(dep.error());
      ++misses;
      continue;
    }
    misses = 0;
    all.push_back(std::move(dep).value());
  }
  std::reverse(all.begin(), all.end());
  if (all.size() > limit) all.resize(limit);
  return all;
}

struct UpdateMachine::Run {
  Deployment dep;
  std::optional<updater::InstalledModel> active;  // the journal's active when it began
  bool offline = false;
  manifests::Manifest manifest;
  std::unique_ptr<updater::StagingSink> sink;
  bool loaded = false;  // the candidate is in the host's slot
  std::optional<double> parity_active_median_ms;
};

Status UpdateMachine::Step(Run& run, Event event, std::string_view reason) {
  const DeploymentState from = run.dep.state;
  const auto to = NextState(from, event);
  if (!to) {
    return edgefleet::Fail(ErrorCode::kInternal,
                           fmt::format("deployment {}: no transition from {} on {}", run.dep.id,
                                       updater::ToString(from), ToString(event)));
  }
  if (updater::IsTerminal(*to)) {
    EF_ASSIGN_OR_RETURN(run.dep, ctx_.journal->Finish(run.dep.id, *to, reason));
  } else {
    EF_RETURN_IF_ERROR(ctx_.journal->RecordTransition(run.dep.id, *to, reason));
    run.dep.state = *to;
    run.dep.reason = std::string(reason);
  }
  spdlog::info("event=deployment id={} model={} version={} from={} to={} reason={}", run.dep.id,
               LogValue(run.dep.request.model), LogValue(run.dep.request.version), updater::ToString(from),
               updater::ToString(*to), LogValue(reason));
  Emit(run, std::string(updater::ToString(*to)), std::string(updater::ToString(from)), reason);
  MaybeCrashAt(*to);
  return Ok();
}

// Fault point (../shared/CONVENTIONS.md: crash tests kill the real process at each update step):
// EDGEFLEET_FAULT_KILL_AT=<state> makes the agent SIGKILL itself right after the transition into
// <state> is journaled, before that state's work starts. Some states (verifying, activating) last
// milliseconds, too short for a test to hit by watching the log; this reaches them exactly. The
// variable is read once; unset (every real deployment), this is one comparison per transition.
void UpdateMachine::MaybeCrashAt(updater::DeploymentState state) {
  static const std::string fault_state = [] {
    const char* value = std::getenv("EDGEFLEET_FAULT_KILL_AT");
    return std::string(value != nullptr ? value : "");
  }();
  if (!fault_state.empty() && fault_state == updater::ToString(state)) {
    spdlog::warn("event=fault_point state={} action=SIGKILL", fault_state);
    spdlog::default_logger()->flush();
    std::raise(SIGKILL);
  }
}

void UpdateMachine::Emit(const Run& run, std::string event, std::string from,
                         std::string_view reason, std::string parity_json) {
  if (!ctx_.on_event) return;
  telemetry::EventMessage e;
  e.event = std::move(event);
  e.deployment = run.dep.id;
  e.model = run.dep.request.model;
  e.version = run.dep.request.version;
  e.from = std::move(from);
  e.reason = std::string(reason);
  e.serial = run.dep.request.serial;
  e.target = run.dep.request.target;
  e.parity_json = std::move(parity_json);
  ctx_.on_event(std::move(e));
}

void UpdateMachine::EmitRejected(std::uint64_t serial, std::string_view target,
                                 std::string_view model, std::string_view version,
                                 std::string_view reason) {
  if (!ctx_.on_event) return;
  telemetry::EventMessage e;
  e.event = "rejected";
  e.model = std::string(model);
  e.version = std::string(version);
  e.reason = std::string(reason);
  e.serial = serial;
  e.target = std::string(target);
  ctx_.on_event(std::move(e));
}

Status UpdateMachine::Fail(Run& run, const Error& error) {
  if (run.sink) (void)run.sink->Discard();
  const Status recorded = Step(run, Event::kFailure, error.message);
  if (run.loaded) {
    // After the record: the candidate never served, so unloading it changes nothing visible.
    (void)ctx_.host->Unload(run.dep.request.model, ToRuntimeSlot(run.dep.slot));
    run.loaded = false;
  }
  if (!recorded) {
    spdlog::error("event=journal_error id={} error={}", run.dep.id, LogValue(recorded.error().message));
  }
  return recorded;
}

Status UpdateMachine::LoadSlot(const std::string& model, Slot slot, const std::string& sha256,
                               const std::filesystem::path& slot_dir,
                               manifests::Manifest* manifest_out) {
  const auto manifest_path = slot_dir / "manifest.json";
  EF_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(manifest_path, kMaxLocalReadBytes));
  EF_ASSIGN_OR_RETURN(auto envelope, manifests::SignedEnvelope::FromText(
                                         text, manifest_path.string(), kMaxLocalReadBytes));
  EF_RETURN_IF_ERROR(ctx_.trust->Verify(envelope, manifests::Role::kRelease));
  EF_ASSIGN_OR_RETURN(auto manifest,
                      manifests::Manifest::FromJson(envelope.signed_body, manifest_path.string()));
  std::vector<const runtime::Backend*> backends(ctx_.backends.begin(), ctx_.backends.end());
  EF_ASSIGN_OR_RETURN(auto choice, runtime::ChooseVariant(manifest.variants, backends));
  const manifests::Variant& variant = manifest.variants[choice.variant_index];
  runtime::LoadRequest request;
  request.name = model;
  request.version = manifest.version;
  request.slot = ToRuntimeSlot(slot);
  request.model_file = slot_dir / variant.file;
  request.variant = variant;
  request.preprocessing = manifest.preprocessing;
  request.bundle_sha256 = sha256;
  request.backend = const_cast<runtime::Backend*>(choice.backend);
  request.options.threads = ctx_.config->runtime.threads;
  request.options.parallel_runs = ctx_.config->runtime.parallel_runs;
  EF_RETURN_IF_ERROR(ctx_.host->Load(request));
  if (manifest_out) *manifest_out = std::move(manifest);
  return Ok();
}

Status UpdateMachine::RecoverAndLoad() {
  EF_ASSIGN_OR_RETURN(auto in_progress, ctx_.journal->InProgress());
  std::set<std::string> keep_downloads;
  for (const Deployment& dep : in_progress) {
    Run run;
    run.dep = dep;
    EF_ASSIGN_OR_RETURN(auto record, ctx_.journal->ReadModel(dep.request.model));
    keep_downloads.insert(dep.request.bundle_sha256 + ".efb");
    keep_downloads.insert(dep.request.bundle_sha256 + ".efb.part");
    switch (dep.state) {
      case DeploymentState::kActivating:
      case DeploymentState::kWatching:
        if (record.active) {
          EF_RETURN_IF_ERROR(Step(run, Event::kRestartedServing, "agent restarted during watch"));
          EF_RETURN_IF_ERROR(Step(run, Event::kSwitchedBack,
                                  fmt::format("agent restarted during watch: back to {} in slot {}",
                                              record.active->version,
                                              updater::ToString(record.active->slot))));
        } else {
          EF_RETURN_IF_ERROR(Step(run, Event::kInterrupted,
                                  "agent restarted during watch; no previous model to roll back "
                                  "to, the desired state will retry"));
        }
        break;
      case DeploymentState::kRollingBack:
        EF_RETURN_IF_ERROR(Step(run, Event::kSwitchedBack, "agent restarted while rolling back"));
        break;
      default:
        EF_RETURN_IF_ERROR(Step(run, Event::kInterrupted,
                                fmt::format("agent restarted during {}",
                                            updater::ToString(dep.state))));
        break;
    }
  }
  if (!in_progress.empty()) {
    updater::GcOptions gc;
    gc.referenced_downloads = keep_downloads;
    auto report = ctx_.slots->CollectGarbage(gc);
    if (!report) spdlog::warn("event=gc_failed error={}", LogValue(report.error().message));
  }

  // Load every model's committed slot.
  std::error_code ec;
  const auto models_dir = ctx_.slots->ModelDir("x").parent_path();
  for (const auto& entry : std::filesystem::directory_iterator(models_dir, ec)) {
    if (!entry.is_directory()) continue;
    const std::string name = entry.path().filename().string();
    if (!manifests::IsValidName(name)) continue;
    EF_ASSIGN_OR_RETURN(auto record, ctx_.journal->ReadModel(name));
    if (!record.active) continue;
    const auto slot_dir = ctx_.slots->SlotPath(name, record.active->slot);
    Status loaded = LoadSlot(name, record.active->slot, record.active->sha256, slot_dir, nullptr);
    if (!loaded) {
      spdlog::error("event=model_load_failed model={} version={} slot={} error={}", LogValue(name),
                    LogValue(record.active->version), updater::ToString(record.active->slot),
                    LogValue(loaded.error().message));
      continue;
    }
    EF_RETURN_IF_ERROR(ctx_.host->Activate(name, ToRuntimeSlot(record.active->slot)));
    spdlog::info("event=model_serving model={} version={} slot={}", LogValue(name),
                 LogValue(record.active->version), updater::ToString(record.active->slot));
  }
  return Ok();
}

void UpdateMachine::ApplyDesiredState(std::string_view text, std::string_view source) {
  const auto& cfg = *ctx_.config;
  auto log_doc = [this](std::uint64_t serial, std::string_view target, std::string_view result,
                        std::string_view reason) {
    spdlog::info("event=desired_state serial={} target={} result={} reason={}", serial,
                 LogValue(target), result, LogValue(reason));
    if (result == "refused") EmitRejected(serial, target, "", "", reason);
  };
  auto envelope = manifests::SignedEnvelope::FromText(text, source,
                                                      manifests::kMaxDesiredStateBytes);
  if (!envelope) return log_doc(0, "", "refused", envelope.error().message);
  if (auto ok = ctx_.trust->Verify(*envelope, manifests::Role::kDeploy); !ok) {
    return log_doc(0, "", "refused", ok.error().message);
  }
  auto ds = manifests::DesiredState::FromJson(envelope->signed_body, source);
  if (!ds) return log_doc(0, "", "refused", ds.error().message);
  const std::string target = ds->target_kind + "/" + ds->target;
  if (auto ok = manifests::CheckNotExpired(ds->expires, manifests::Now(), source); !ok) {
    return log_doc(ds->serial, target, "refused", ok.error().message);
  }
  if (ds->fleet != cfg.fleet) {
    return log_doc(ds->serial, target, "refused",
                   fmt::format("for fleet {}, this device is in fleet {}", ds->fleet, cfg.fleet));
  }
  const bool for_us =
      (ds->target_kind == "device" && ds->target == cfg.device) ||
      (ds->target_kind == "group" &&
       std::find(cfg.groups.begin(), cfg.groups.end(), ds->target) != cfg.groups.end());
  if (!for_us) {
    return log_doc(ds->serial, target, "refused",
                   fmt::format("not for this device ({})", cfg.device));
  }
  // The digest tells the same document read again (a restart, SIGHUP, the next poll) from other
  // content replayed under an accepted serial.
  const std::string digest = manifests::Sha256Hex(manifests::Canonical(envelope->signed_body));
  auto verdict = ctx_.journal->AcceptSerial(target, ds->serial, digest);
  if (!verdict) return log_doc(ds->serial, target, "refused", verdict.error().message);
  bool reapplied = false;
  if (*verdict == updater::Journal::SerialVerdict::kReplay) {
    auto last = ctx_.journal->LastSerial(target);
    return log_doc(ds->serial, target, "refused",
                   fmt::format("replayed serial {}: the last accepted for {} is {}{}", ds->serial,
                               target,
                               last && last->has_value() ? std::to_string(**last) : "none",
                               last && last->has_value() && **last == ds->serial
                                   ? " with other content"
                                   : ""));
  }
  if (*verdict == updater::Journal::SerialVerdict::kSameDocument) {
    reapplied = true;
    log_doc(ds->serial, target, "ignored", "already applied");
  } else {
    log_doc(ds->serial, target, "accepted", "");
  }

  std::vector<Deployment> history;
  if (reapplied) {
    auto listed = ListDeployments(*ctx_.journal, 1000);
    if (listed) history = std::move(listed).value();
  }
  for (const auto& entry : ds->models) {
    if (Cancelled()) return;
    const std::string version = entry.version.ToString();
    auto log_model = [&](std::string_view result, std::string_view reason) {
      spdlog::info("event=desired_model serial={} model={} version={} result={} reason={}",
                   ds->serial, LogValue(entry.name), LogValue(version), result, LogValue(reason));
      if (result == "refused") EmitRejected(ds->serial, target, entry.name, version, reason);
    };
    auto record = ctx_.journal->ReadModel(entry.name);
    if (!record) {
      log_model("refused", record.error().message);
      continue;
    }
    if (record->active && record->active->version == version) {
      if (!reapplied) log_model("ignored", "already active");
      continue;
    }
    if (!record->highest_version.empty() && !entry.allow_downgrade) {
      auto highest = manifests::SemVer::Parse(record->highest_version);
      if (highest && entry.version < *highest) {
        log_model("refused", fmt::format("downgrade: {} is below the highest committed {} and the "
                                         "desired state does not allow_downgrade",
                                         version, record->highest_version));
        continue;
      }
    }
    if (reapplied) {
      // The same document again (restart, SIGHUP): resume what was interrupted, never retry what
      // already reached a verdict.
      auto done = std::find_if(history.begin(), history.end(), [&](const Deployment& d) {
        return d.request.target == target && d.request.serial == ds->serial &&
               d.request.model == entry.name && d.request.version == version &&
               d.state != DeploymentState::kAbandoned;
      });
      if (done != history.end()) {
        log_model("ignored", fmt::format("deployment {} already {}", done->id,
                                         updater::ToString(done->state)));
        continue;
      }
    }
    if (!entry.requirements.empty()) {
      std::vector<const runtime::Backend*> backends(ctx_.backends.begin(), ctx_.backends.end());
      auto choice = runtime::ChooseVariant(entry.requirements, backends);
      if (!choice) {
        log_model("refused", "requirements: " + choice.error().message);
        continue;
      }
    }
    Deploy(*ds, entry, target);
  }
}

void UpdateMachine::Deploy(const manifests::DesiredState& ds, const manifests::DesiredModel& entry,
                           const std::string& target) {
  const auto& cfg = *ctx_.config;
  updater::DeploymentRequest request;
  request.model = entry.name;
  request.version = entry.version.ToString();
  request.bundle_url = entry.bundle.url;
  request.bundle_size = entry.bundle.size;
  request.bundle_sha256 = entry.bundle.sha256;
  request.serial = ds.serial;
  request.target = target;
  request.allow_downgrade = entry.allow_downgrade;

  Run run;
  auto record = ctx_.journal->ReadModel(entry.name);
  if (!record) {
    spdlog::error("event=journal_error error={}", LogValue(record.error().message));
    return;
  }
  run.active = record->active;
  auto dep = ctx_.journal->BeginDeployment(request);
  if (!dep) {
    spdlog::info("event=desired_model serial={} model={} version={} result=refused reason={}",
                 ds.serial, LogValue(entry.name), LogValue(request.version), LogValue(dep.error().message));
    EmitRejected(ds.serial, target, entry.name, request.version, dep.error().message);
    return;
  }
  run.dep = std::move(dep).value();
  spdlog::info("event=deployment id={} model={} version={} from=none to={} reason={}", run.dep.id,
               LogValue(request.model), LogValue(request.version), updater::ToString(run.dep.state),
               LogValue(fmt::format("desired state serial {} for {}", ds.serial, target)));
  Emit(run, std::string(updater::ToString(run.dep.state)), "",
       fmt::format("desired state serial {} for {}", ds.serial, target));

  const auto dest = ctx_.slots->downloads_dir() / (entry.bundle.sha256 + ".efb");
  if (!Step(run, Event::kStartDownload, entry.bundle.url)) return;

  updater::FetchOptions options;
  options.tls.ca_file = cfg.download.ca_file;
  options.tls.client_cert = cfg.download.client_cert;
  options.tls.client_key = cfg.download.client_key;
  options.retry.max_attempts = static_cast<int>(cfg.download.max_attempts);
  options.retry.base_delay = std::chrono::milliseconds(cfg.download.backoff_initial_ms);
  options.retry.max_delay = std::chrono::milliseconds(cfg.download.backoff_max_ms);
  options.connect_timeout = std::chrono::seconds(cfg.download.connect_timeout_s);
  options.low_speed_limit = static_cast<std::uint64_t>(cfg.download.low_speed_bytes_per_s);
  options.low_speed_time = std::chrono::seconds(cfg.download.low_speed_time_s);
  options.max_bytes_per_second = static_cast<std::uint64_t>(cfg.download.max_bytes_per_s);
  options.disk_reserve_bytes = static_cast<std::uint64_t>(cfg.download.reserve_bytes);
  options.cancel = ctx_.cancel;
  auto last_log = Clock::now() - std::chrono::seconds(2);
  const std::int64_t id = run.dep.id;
  updater::Journal* journal = ctx_.journal;
  options.on_progress = [&last_log, id, journal](const updater::FetchProgress& p) {
    const auto now = Clock::now();
    if (now - last_log < std::chrono::seconds(1) && p.bytes != p.total) return;
    last_log = now;
    spdlog::info("event=download_progress id={} bytes={} total={} rate_bps={}", id, p.bytes,
                 p.total, static_cast<std::uint64_t>(p.bytes_per_second));
    (void)journal->RecordDownloadBytes(id, p.bytes);
  };
  auto fetcher = updater::Fetcher::Create(std::move(options));
  if (!fetcher) {
    (void)Fail(run, fetcher.error());
    return;
  }
  auto fetched = fetcher->Fetch(
      {entry.bundle.url, dest, entry.bundle.size, entry.bundle.sha256});
  if (!fetched) {
    if (Cancelled()) {
      // Stays in downloading: the next start abandons it and keeps the .part for a resume.
      spdlog::info("event=download_interrupted id={} error={}", id,
                   LogValue(fetched.error().message));
      return;
    }
    (void)Fail(run, fetched.error());
    return;
  }
  if (!Step(run, Event::kDownloaded,
            fmt::format("{} bytes, sha256 verified; {} fetched{}", entry.bundle.size,
                        fetched->bytes_fetched,
                        fetched->resumed
                            ? fmt::format(", resumed from {}", fetched->resumed_from)
                            : std::string())))
    return;
  (void)FromVerifying(run, dest, entry.version);
}

std::optional<DeploymentState> UpdateMachine::FromVerifying(
    Run& run, const std::filesystem::path& bundle,
    const std::optional<manifests::SemVer>& expected) {
  const std::string& model = run.dep.request.model;
  auto mismatch = [&](const manifests::Manifest& m) -> std::optional<Error> {
    if (m.name != model || m.version.ToString() != run.dep.request.version) {
      return Error{ErrorCode::kIntegrity,
                   fmt::format("{}: mix-and-match: the bundle holds {} {}, the deployment is for "
                               "{} {}",
                               bundle.filename().string(), m.name, m.version.ToString(), model,
                               run.dep.request.version)};
    }
    return std::nullopt;
  };
  auto fail = [&](const Error& e) -> std::optional<DeploymentState> {
    if (!Fail(run, e)) return std::nullopt;
    return DeploymentState::kFailed;
  };
  (void)expected;

  // verifying: the manifest's claims before anything is unpacked (signatures are checked in the
  // same streamed pass that unpacks, below, and the claims again on the verified manifest).
  {
    auto head = updater::ReadBundleManifest(bundle);
    if (!head) return fail(head.error());
    if (auto e = mismatch(head->manifest)) return fail(*e);
  }
  if (!Step(run, Event::kManifestMatches,
            fmt::format("manifest names {} {}", model, run.dep.request.version)))
    return std::nullopt;

  // unpacking into the inactive slot
  auto sink = ctx_.slots->BeginStaging(
      model, run.dep.slot,
      run.active ? std::optional<Slot>(run.active->slot) : std::optional<Slot>());
  if (!sink) return fail(sink.error());
  run.sink = std::move(sink).value();
  auto contents = updater::VerifyBundleFile(bundle, *ctx_.trust, {}, run.sink.get());
  if (!contents) return fail(contents.error());
  if (auto e = mismatch(contents->manifest)) return fail(*e);
  if (auto committed = run.sink->Commit(); !committed) return fail(committed.error());
  run.sink.reset();
  run.manifest = contents->manifest;
  const auto slot_dir = ctx_.slots->SlotPath(model, run.dep.slot);
  if (!Step(run, Event::kUnpacked,
            fmt::format("verified {} files into slot {}", run.manifest.files.size(),
                        updater::ToString(run.dep.slot))))
    return std::nullopt;

  // loading: compatibility on the real graph, then into the host's slot
  std::vector<const runtime::Backend*> backends(ctx_.backends.begin(), ctx_.backends.end());
  auto choice = runtime::ChooseVariant(run.manifest.variants, backends);
  if (!choice) return fail(choice.error());
  const manifests::Variant& variant = run.manifest.variants[choice->variant_index];
  auto graph = runtime::InspectOnnx(slot_dir / variant.file);
  if (!graph) return fail(graph.error());
  if (auto ok = runtime::CheckGraph(*graph, variant, choice->backend->capabilities(), model); !ok)
    return fail(ok.error());
  {
    runtime::LoadRequest request;
    request.name = model;
    request.version = run.manifest.version;
    request.slot = ToRuntimeSlot(run.dep.slot);
    request.model_file = slot_dir / variant.file;
    request.variant = variant;
    request.preprocessing = run.manifest.preprocessing;
    request.bundle_sha256 = run.dep.request.bundle_sha256;
    request.backend = const_cast<runtime::Backend*>(choice->backend);
    request.options.threads = ctx_.config->runtime.threads;
    request.options.parallel_runs = ctx_.config->runtime.parallel_runs;
    if (auto ok = ctx_.host->Load(request); !ok) return fail(ok.error());
    run.loaded = true;
  }
  if (!Step(run, Event::kLoaded,
            fmt::format("variant {} on {}", variant.id, choice->backend->capabilities().name)))
    return std::nullopt;

  // parity against golden data and the active model
  {
    auto candidate = ctx_.host->InSlot(model, ToRuntimeSlot(run.dep.slot));
    auto active = ctx_.host->Active(model);
    if (!candidate) return fail(Error{ErrorCode::kInternal, "candidate not loaded"});
    auto report = runtime::RunParity(*candidate->session, run.manifest, slot_dir,
                                     active ? active->session.get() : nullptr);
    if (!report) return fail(report.error());
    spdlog::info("event=parity id={} pass={} samples={} top1={} accuracy={} median_ms={} "
                 "active_median_ms={}",
                 run.dep.id, report->pass, report->samples, Fmt(report->top1_agreement),
                 report->accuracy ? Fmt(*report->accuracy) : "none",
                 Fmt(report->latency_median_ms),
                 report->active_latency_median_ms ? Fmt(*report->active_latency_median_ms)
                                                  : "none");
    Emit(run, "parity_report", std::string(updater::ToString(run.dep.state)),
         report->pass ? "parity passed" : "parity: " + Join(report->failures, "; "),
         report->ToJson().dump());
    if (!report->pass) {
      return fail(Error{ErrorCode::kIntegrity, "parity: " + Join(report->failures, "; ")});
    }
    run.parity_active_median_ms = report->active_latency_median_ms;
    if (!Step(run, Event::kParityPassed,
              fmt::format("parity passed: {} samples, top-1 {}, accuracy {}", report->samples,
                          Fmt(report->top1_agreement),
                          report->accuracy ? Fmt(*report->accuracy) : "none")))
      return std::nullopt;
  }

  // activating: one pointer switch
  if (auto ok = ctx_.host->Activate(model, ToRuntimeSlot(run.dep.slot)); !ok)
    return fail(ok.error());
  std::optional<DeploymentState> result;
  if (run.offline) {
    if (!Step(run, Event::kOfflineActivated, "offline install: no watch window")) return {};
    result = DeploymentState::kCommitted;
  } else {
    if (!Step(run, Event::kActivated,
              fmt::format("serving from slot {}", updater::ToString(run.dep.slot))))
      return std::nullopt;
    result = Watch(run);
  }
  if (result == DeploymentState::kCommitted && run.active) {
    // The old model stays on disk for a manual rollback; it need not stay in memory.
    (void)ctx_.host->Unload(model, ToRuntimeSlot(run.active->slot));
  }
  if (result) CollectGarbage();
  return result;
}

std::optional<std::string> LatencyBreach(double p95_ms, double previous_p95_ms, double factor,
                                         double min_increase_ms) {
  if (p95_ms <= factor * previous_p95_ms || p95_ms - previous_p95_ms < min_increase_ms) {
    return std::nullopt;
  }
  return fmt::format("p95 latency {} ms > {} x previous {} ms (and {} ms above it, floor {} ms)",
                     Fmt(p95_ms), Fmt(factor), Fmt(previous_p95_ms),
                     Fmt(p95_ms - previous_p95_ms), Fmt(min_increase_ms));
}

std::optional<DeploymentState> UpdateMachine::Watch(Run& run) {
  const std::string& model = run.dep.request.model;
  const std::string& version = run.dep.request.version;
  if (!run.active) {
    if (!Step(run, Event::kWatchPassed,
              "first model: no previous model to compare with or roll back to"))
      return std::nullopt;
    return DeploymentState::kCommitted;
  }
  const manifests::WatchPolicy& policy = run.manifest.watch;
  const VersionStats base = ctx_.api ? ctx_.api->Stats(model, version) : VersionStats{};
  // The previous model's p95 from the requests it served in this run of the agent; without any,
  // the parity run already judged latency (candidate vs active median) and the watch does not.
  std::optional<double> previous_p95;
  if (ctx_.api) {
    const VersionStats prev = ctx_.api->Stats(model, run.active->version);
    if (prev.latency.count > 0) previous_p95 = prev.latency.p95;
  }
  const auto start = Clock::now();
  const double window_s = static_cast<double>(policy.window_s);
  const double max_s = window_s * ctx_.config->watch.max_extension_factor;
  auto last_log = Clock::now() - std::chrono::seconds(2);
  while (true) {
    if (Cancelled()) {
      // Left in watching: the next start rolls back (an unwatched candidate never commits).
      spdlog::info("event=watch_interrupted id={}", run.dep.id);
      return std::nullopt;
    }
    const VersionStats now = ctx_.api ? ctx_.api->Stats(model, version) : VersionStats{};
    const std::uint64_t requests = now.requests - base.requests;
    const std::uint64_t errors = now.server_errors - base.server_errors;
    telemetry::LatencySnapshot lat = now.latency;
    for (std::size_t i = 0; i < lat.buckets.size(); ++i) lat.buckets[i] -= base.latency.buckets[i];
    lat.count -= base.latency.count;
    lat.sum_ms -= base.latency.sum_ms;
    lat.UpdatePercentiles();
    const std::uint64_t labeled = now.labeled - base.labeled;
    const std::uint64_t correct = now.correct - base.correct;
    const double error_rate = requests ? static_cast<double>(errors) / requests : 0.0;
    const double accuracy = labeled ? static_cast<double>(correct) / labeled : 0.0;
    const std::string accuracy_text = labeled ? Fmt(accuracy) : "none";
    const double elapsed =
        std::chrono::duration<double>(Clock::now() - start).count();
    const std::string numbers = fmt::format(
        "requests={} errors={} error_rate={} p95_ms={} previous_p95_ms={} accuracy={} labeled={}",
        requests, errors, Fmt(error_rate), Fmt(lat.p95),
        previous_p95 ? Fmt(*previous_p95) : "none", accuracy_text, labeled);
    if (Clock::now() - last_log >= std::chrono::seconds(1)) {
      last_log = Clock::now();
      spdlog::info("event=watch id={} requests={} errors={} p95_ms={} accuracy={}", run.dep.id,
                   requests, errors, Fmt(lat.p95), accuracy_text);
    }
    if (requests >= static_cast<std::uint64_t>(policy.min_requests)) {
      std::string breach;
      if (error_rate > policy.max_error_rate) {
        breach = fmt::format("server-error rate {} > {}", Fmt(error_rate),
                             Fmt(policy.max_error_rate));
      } else if (auto slow = previous_p95 && lat.count > 0
                                 ? LatencyBreach(lat.p95, *previous_p95,
                                                 policy.max_p95_latency_factor,
                                                 ctx_.config->watch.min_p95_increase_ms)
                                 : std::nullopt) {
        breach = *slow;
      } else if (policy.min_online_accuracy && labeled >= 10 &&
                 accuracy < *policy.min_online_accuracy) {
        breach = fmt::format("online accuracy {} < {} ({} of {} labeled)", Fmt(accuracy),
                             Fmt(*policy.min_online_accuracy), correct, labeled);
      }
      if (!breach.empty()) {
        const std::string reason = "watch breach: " + breach + " (" + numbers + ")";
        if (!Step(run, Event::kBreach, reason)) return std::nullopt;
        const auto previous = ToRuntimeSlot(run.active->slot);
        if (auto ok = ctx_.host->Activate(model, previous); !ok) {
          spdlog::error("event=rollback_switch_failed id={} error={}", run.dep.id,
                        LogValue(ok.error().message));
        }
        (void)ctx_.host->Unload(model, ToRuntimeSlot(run.dep.slot));
        if (!Step(run, Event::kSwitchedBack,
                  fmt::format("{}; back to {} in slot {}", reason, run.active->version,
                              updater::ToString(run.active->slot))))
          return std::nullopt;
        return DeploymentState::kRolledBack;
      }
      if (elapsed >= window_s) {
        if (!Step(run, Event::kWatchPassed,
                  fmt::format("watch passed after {}s: {}", Fmt(elapsed), numbers)))
          return std::nullopt;
        return DeploymentState::kCommitted;
      }
    } else if (elapsed >= max_s) {
      if (!Step(run, Event::kWatchPassed,
                fmt::format("watch extended to {}s with only {} of {} requests: committed on "
                            "the parity evidence ({})",
                            Fmt(elapsed), requests, policy.min_requests, numbers)))
        return std::nullopt;
      return DeploymentState::kCommitted;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

void UpdateMachine::CollectGarbage() {
  auto report = ctx_.slots->CollectGarbage({});
  if (!report) {
    spdlog::warn("event=gc_failed error={}", LogValue(report.error().message));
    return;
  }
  if (!report->removed.empty()) {
    spdlog::info("event=gc removed={} bytes_freed={}", report->removed.size(),
                 report->bytes_freed);
  }
}

Result<Deployment> UpdateMachine::InstallLocal(const std::filesystem::path& bundle) {
  EF_ASSIGN_OR_RETURN(auto head, updater::ReadBundleManifest(bundle));
  EF_ASSIGN_OR_RETURN(std::string sha256, manifests::Sha256File(bundle));
  std::error_code ec;
  const auto size = std::filesystem::file_size(bundle, ec);
  if (ec) return edgefleet::Fail(ErrorCode::kIo, bundle.string() + ": " + ec.message());
  const std::string model = head.manifest.name;
  const std::string version = head.manifest.version.ToString();
  EF_ASSIGN_OR_RETURN(auto record, ctx_.journal->ReadModel(model));
  if (record.active && record.active->version == version) {
    return edgefleet::Fail(ErrorCode::kInvalidArgument,
                           fmt::format("{} {} is already the active model", model, version));
  }
  updater::DeploymentRequest request;
  request.model = model;
  request.version = version;
  request.bundle_url = "file://" + std::filesystem::absolute(bundle).string();
  request.bundle_size = size;
  request.bundle_sha256 = sha256;
  request.target = "offline";
  Run run;
  run.offline = true;
  run.active = record.active;
  EF_ASSIGN_OR_RETURN(run.dep, ctx_.journal->BeginDeployment(request));
  spdlog::info("event=deployment id={} model={} version={} from=none to={} reason={}", run.dep.id,
               LogValue(model), LogValue(version), updater::ToString(run.dep.state),
               LogValue("offline install of " + bundle.string()));
  Emit(run, std::string(updater::ToString(run.dep.state)), "", "offline install of " + bundle.string());
  EF_RETURN_IF_ERROR(Step(run, Event::kLocalBundle, bundle.string()));
  auto result = FromVerifying(run, bundle, head.manifest.version);
  if (!result) {
    return edgefleet::Fail(ErrorCode::kInternal,
                           fmt::format("deployment {} stopped in state {}", run.dep.id,
                                       updater::ToString(run.dep.state)));
  }
  if (*result != DeploymentState::kCommitted) {
    return edgefleet::Fail(ErrorCode::kInvalidArgument, run.dep.reason);
  }
  return run.dep;
}

Result<updater::ModelRecord> UpdateMachine::RollBack(std::string_view model) {
  EF_ASSIGN_OR_RETURN(auto before, ctx_.journal->ReadModel(model));
  if (!before.previous) {
    return edgefleet::Fail(ErrorCode::kNotFound,
                           fmt::format("{}: nothing to roll back to (no previous committed model)",
                                       model));
  }
  EF_ASSIGN_OR_RETURN(auto after, ctx_.journal->RollBackToPrevious(model));
  spdlog::info("event=rollback model={} from={} to={} slot={}", LogValue(model),
               LogValue(before.active ? before.active->version : ""),
               LogValue(after.active ? after.active->version : ""),
               after.active ? updater::ToString(after.active->slot) : "none");
  return after;
}

}  // namespace edgefleet::agent
