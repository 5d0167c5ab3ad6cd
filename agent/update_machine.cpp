#include "agent/update_machine.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "agent/log_value.hpp"
#include "agent/update_machine_internal.hpp"
#include "agent/variant_choice.hpp"
#include "manifests/canonical.hpp"
#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "manifests/files.hpp"
#include "manifests/join.hpp"
#include "manifests/json_fields.hpp"
#include "runtime/compat.hpp"
#include "runtime/parity.hpp"
#include "updater/bundle_reader.hpp"
#include "updater/fetch.hpp"
#include "updater/unpack.hpp"

namespace edgefleet::agent {

namespace {

using Clock = std::chrono::steady_clock;
using updater::Deployment;
using updater::Slot;

constexpr std::size_t kMaxLocalReadBytes = manifests::kMaxManifestBytes;

}  // namespace

std::string_view ToString(Event event) {
  switch (event) {
    case Event::kStartDownload:
      return "start_download";
    case Event::kLocalBundle:
      return "local_bundle";
    case Event::kDownloaded:
      return "downloaded";
    case Event::kManifestMatches:
      return "manifest_matches";
    case Event::kUnpacked:
      return "unpacked";
    case Event::kLoaded:
      return "loaded";
    case Event::kParityPassed:
      return "parity_passed";
    case Event::kActivated:
      return "activated";
    case Event::kOfflineActivated:
      return "offline_activated";
    case Event::kWatchPassed:
      return "watch_passed";
    case Event::kBreach:
      return "breach";
    case Event::kSwitchedBack:
      return "switched_back";
    case Event::kFailure:
      return "failure";
    case Event::kInterrupted:
      return "interrupted";
    case Event::kRestartedServing:
      return "restarted_serving";
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
    for (S s :
         {S::kPending, S::kDownloading, S::kVerifying, S::kUnpacking, S::kLoading, S::kParity}) {
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

Status UpdateMachine::Step(Run& run, Event event, std::string_view reason) {
  const DeploymentState from = run.dep.state;
  const auto to = NextState(from, event);
  // Reasons quote outside names with QuoteName already; SafeText also covers an error text
  // from a library that carried raw bytes, so the journal never holds what cannot be shown.
  const std::string safe_reason = manifests::SafeText(reason);
  reason = safe_reason;
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
               LogValue(run.dep.request.model), LogValue(run.dep.request.version),
               updater::ToString(from), updater::ToString(*to), LogValue(reason));
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
  DiscardCandidate(run);
  if (!recorded) {
    spdlog::error("event=journal_error id={} error={}", run.dep.id,
                  LogValue(recorded.error().message));
  }
  return recorded;
}

// Nothing of a refused candidate stays on disk: its slot (the journal forgot any previous model
// there when the deployment began), its staging, and the model's directory when it was the first.
void UpdateMachine::DiscardCandidate(Run& run) {
  const std::optional<Slot> active =
      run.active ? std::optional<Slot>(run.active->slot) : std::nullopt;
  std::error_code ec;  // the candidate's backend cache (best effort, like the slot itself)
  std::filesystem::remove_all(CacheDir(run.dep.request.model, run.dep.slot), ec);
  const auto removed = ctx_.slots->DiscardCandidate(
      run.dep.request.model, run.unpacked ? std::optional<Slot>(run.dep.slot) : std::nullopt,
      active);
  run.unpacked = false;
  if (!removed) {
    spdlog::warn("event=discard_failed id={} error={}", run.dep.id,
                 LogValue(removed.error().message));
  }
}

Status UpdateMachine::LoadSlot(const std::string& model, Slot slot, const std::string& sha256,
                               const std::filesystem::path& slot_dir,
                               manifests::Manifest* manifest_out) {
  const auto manifest_path = slot_dir / "manifest.json";
  EF_ASSIGN_OR_RETURN(std::string text,
                      manifests::ReadSmallFile(manifest_path, kMaxLocalReadBytes));
  EF_ASSIGN_OR_RETURN(auto envelope, manifests::SignedEnvelope::FromText(
                                         text, manifest_path.string(), kMaxLocalReadBytes));
  EF_RETURN_IF_ERROR(ctx_.trust->Verify(envelope, manifests::Role::kRelease));
  EF_ASSIGN_OR_RETURN(auto manifest,
                      manifests::Manifest::FromJson(envelope.signed_body, manifest_path.string()));
  std::vector<const runtime::Backend*> backends(ctx_.backends.begin(), ctx_.backends.end());
  auto runnable = runtime::RunnableVariants(manifest.variants, backends);
  if (!runnable) return runnable.error();
  // The variant chosen by measurement when this slot was deployed, if this box still runs it.
  runtime::VariantChoice choice = runnable->front();
  // The file holds the variant id, then (since backends could share a variant) a line with the
  // backend's name; an older file has the id alone and takes the first backend that runs it.
  if (auto remembered = manifests::ReadSmallFile(VariantFile(model, slot), 256)) {
    const auto newline = remembered->find('\n');
    const std::string id = remembered->substr(0, newline);
    const std::string backend =
        newline == std::string::npos ? std::string() : remembered->substr(newline + 1);
    for (auto it = runnable->rbegin(); it != runnable->rend(); ++it) {
      if (manifest.variants[it->variant_index].id == id &&
          (backend.empty() || it->backend->capabilities().name == backend)) {
        choice = *it;
      }
    }
  }
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
  request.options = LoadOptions(model, slot, manifest, variant, *choice.backend);
  EF_RETURN_IF_ERROR(ctx_.host->Load(request));
  spdlog::info("event=slot_loaded model={} slot={} version={} variant={} backend={}",
               LogValue(model), updater::ToString(slot), manifest.version.ToString(),
               LogValue(variant.id), choice.backend->capabilities().name);
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
          EF_RETURN_IF_ERROR(
              Step(run, Event::kSwitchedBack,
                   fmt::format("agent restarted during watch: back to {} in slot {}",
                               record.active->version, updater::ToString(record.active->slot))));
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
        EF_RETURN_IF_ERROR(
            Step(run, Event::kInterrupted,
                 fmt::format("agent restarted during {}", updater::ToString(dep.state))));
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

Status MixAndMatch(const manifests::Manifest& manifest, const updater::DeploymentRequest& request,
                   std::string_view bundle_name) {
  if (manifest.name == request.model && manifest.version.ToString() == request.version) {
    return Ok();
  }
  return edgefleet::Fail(
      ErrorCode::kIntegrity,
      fmt::format("{}: mix-and-match: the bundle holds {} {}, the deployment is for {} {}",
                  manifests::QuoteName(bundle_name), manifest.name, manifest.version.ToString(),
                  request.model, request.version));
}

updater::UnpackTarget UpdateMachine::Target(const Run& run, std::uint64_t extra_bytes) const {
  updater::UnpackTarget target;
  target.model = run.dep.request.model;
  target.slot = run.dep.slot;
  target.active = run.active ? std::optional<Slot>(run.active->slot) : std::nullopt;
  target.reserve_bytes = static_cast<std::uint64_t>(ctx_.config->download.reserve_bytes);
  target.extra_bytes = extra_bytes;
  return target;
}

std::optional<DeploymentState> UpdateMachine::FromVerifying(
    Run& run, const std::filesystem::path& bundle,
    std::optional<Result<updater::Unpacked>> streamed) {
  const std::string& model = run.dep.request.model;
  auto fail = [&](const Error& e) -> std::optional<DeploymentState> {
    if (!Fail(run, e)) return std::nullopt;
    return DeploymentState::kFailed;
  };
  const std::string matches = fmt::format("manifest names {} {}", model, run.dep.request.version);

  // verifying, then unpacking into the inactive slot's staging: staging starts once the signed
  // manifest names this deployment and its total fits beside the reserve (updater/unpack.hpp).
  std::optional<updater::Unpacked> unpacked;
  if (streamed && *streamed) {
    // Verified and staged while the download arrived; the journal catches up now.
    unpacked = std::move(**streamed);
    if (!Step(run, Event::kManifestMatches, matches)) return std::nullopt;
  } else if (streamed && streamed->error().code != ErrorCode::kAborted) {
    return fail(streamed->error());  // the same bytes, refused while they arrived
  } else {
    // Offline, or the streamed pass was abandoned (the download started over): one pass now.
    bool journal_failed = false;
    updater::UnpackTarget target = Target(run, 0);
    target.on_verified = [&](const manifests::Manifest& m) -> Status {
      EF_RETURN_IF_ERROR(MixAndMatch(m, run.dep.request, bundle.filename().string()));
      Status recorded = Step(run, Event::kManifestMatches, matches);
      journal_failed = !recorded;
      return recorded;
    };
    auto source = updater::FileByteSource::Open(bundle);
    if (!source) return fail(source.error());
    auto result = updater::UnpackBundle(*source, bundle.filename().string(), *ctx_.trust,
                                        *ctx_.slots, target);
    if (journal_failed) return std::nullopt;
    if (!result) return fail(result.error());
    unpacked = std::move(result).value();
  }
  run.sink = std::move(unpacked->staging);
  if (auto committed = run.sink->Commit(); !committed) return fail(committed.error());
  run.sink.reset();
  run.unpacked = true;
  run.manifest = std::move(unpacked->contents.manifest);
  const auto slot_dir = ctx_.slots->SlotPath(model, run.dep.slot);
  if (!Step(run, Event::kUnpacked,
            fmt::format("verified {} files into slot {}", run.manifest.files.size(),
                        updater::ToString(run.dep.slot))))
    return std::nullopt;

  // loading and parity: every variant this box's backends can run is checked, loaded and proven
  // on the golden data; the fastest that passes goes into the host's slot (agent/variant_choice)
  std::vector<const runtime::Backend*> backends(ctx_.backends.begin(), ctx_.backends.end());
  auto runnable = runtime::RunnableVariants(run.manifest.variants, backends);
  if (!runnable) return fail(runnable.error());
  auto active = ctx_.host->Active(model);
  MeasureRequest measure;
  measure.manifest = &run.manifest;
  measure.slot_dir = slot_dir;
  measure.model = model;
  measure.active = active ? active->session.get() : nullptr;
  // The slot's cache (an engine's optimised model) belonged to the bundle it held before.
  std::error_code ec;
  std::filesystem::remove_all(CacheDir(model, run.dep.slot), ec);
  measure.options = [&](const runtime::Backend& backend, const manifests::Variant& variant) {
    return LoadOptions(model, run.dep.slot, run.manifest, variant, backend);
  };
  auto measured = MeasureVariants(*runnable, measure);
  if (!measured) return fail(measured.error());
  for (const auto& trial : measured->trials) {
    const auto& v = run.manifest.variants[trial.choice.variant_index];
    spdlog::info(
        "event=variant_measured id={} variant={} backend={} pass={} median_ms={} reason={}",
        run.dep.id, LogValue(v.id), trial.choice.backend->capabilities().name, trial.pass(),
        trial.report ? Fmt(trial.report->latency_median_ms) : "none",
        LogValue(trial.pass()  ? "passed"
                 : trial.error ? trial.error->message
                               : Join(trial.report->failures, "; ")));
  }
  const std::string report_json = measured->ReportJson(run.manifest).dump();
  if (!measured->chosen) {
    const Error failure = measured->Failure(run.manifest);
    // A variant that loaded and ran its golden data failed parity: recorded as such (loading,
    // then parity, then failed), as a single-variant bundle always was.
    const bool parity_ran = std::any_of(measured->trials.begin(), measured->trials.end(),
                                        [](const VariantTrial& t) { return t.report.has_value(); });
    if (parity_ran && !Step(run, Event::kLoaded, "variants loaded; none passed parity")) {
      return std::nullopt;
    }
    Emit(run, "parity_report", std::string(updater::ToString(run.dep.state)), failure.message,
         report_json);
    return fail(failure);
  }
  const VariantTrial& chosen = measured->trials[*measured->chosen];
  const manifests::Variant& variant = run.manifest.variants[chosen.choice.variant_index];
  {
    runtime::LoadRequest request;
    request.name = model;
    request.version = run.manifest.version;
    request.slot = ToRuntimeSlot(run.dep.slot);
    request.model_file = slot_dir / variant.file;
    request.variant = variant;
    request.preprocessing = run.manifest.preprocessing;
    request.bundle_sha256 = run.dep.request.bundle_sha256;
    request.backend = const_cast<runtime::Backend*>(chosen.choice.backend);
    request.options = measure.options(*chosen.choice.backend, variant);
    request.session = measured->session;
    if (auto ok = ctx_.host->Load(request); !ok) return fail(ok.error());
    run.loaded = true;
  }
  RememberVariant(model, run.dep.slot,
                  variant.id + "\n" + chosen.choice.backend->capabilities().name);
  if (!Step(run, Event::kLoaded, ChoiceReason(run.manifest, *measured))) return std::nullopt;
  {
    const runtime::ParityReport& report = *chosen.report;
    spdlog::info(
        "event=parity id={} pass={} samples={} top1={} accuracy={} median_ms={} "
        "active_median_ms={} variant={} backend={}",
        run.dep.id, report.pass, report.samples, Fmt(report.top1_agreement),
        report.accuracy ? Fmt(*report.accuracy) : "none", Fmt(report.latency_median_ms),
        report.active_latency_median_ms ? Fmt(*report.active_latency_median_ms) : "none",
        LogValue(variant.id), chosen.choice.backend->capabilities().name);
    Emit(run, "parity_report", std::string(updater::ToString(run.dep.state)), "parity passed",
         report_json);
    run.parity_active_median_ms = report.active_latency_median_ms;
    if (!Step(run, Event::kParityPassed,
              fmt::format("parity passed: {} samples, top-1 {}, accuracy {}", report.samples,
                          Fmt(report.top1_agreement),
                          report.accuracy ? Fmt(*report.accuracy) : "none")))
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

std::filesystem::path UpdateMachine::VariantFile(const std::string& model, Slot slot) const {
  return ctx_.slots->SlotPath(model, slot).parent_path() /
         (std::string(updater::ToString(slot)) + ".variant");
}

std::filesystem::path UpdateMachine::CacheDir(const std::string& model, Slot slot) const {
  return ctx_.slots->SlotPath(model, slot).parent_path() /
         (std::string(updater::ToString(slot)) + ".cache");
}

runtime::SessionOptions UpdateMachine::LoadOptions(const std::string& model, Slot slot,
                                                   const manifests::Manifest& manifest,
                                                   const manifests::Variant& variant,
                                                   const runtime::Backend& backend) const {
  runtime::SessionOptions options;
  options.threads = ctx_.config->runtime.threads;
  options.parallel_runs = ctx_.config->runtime.parallel_runs;
  nlohmann::json own = nlohmann::json::parse(
      BackendOptionsFor(*ctx_.config, backend.capabilities().name), nullptr, false);
  if (!own.is_object()) own = nlohmann::json::object();
  // What the ABI promises a load (backend_plugin.h, ef_session_options): a directory of its own
  // for this slot, dropped with the slot's bundle, and the model file's signed SHA-256.
  own["edgefleet_cache_dir"] = (CacheDir(model, slot) / backend.capabilities().name).string();
  for (const auto& file : manifest.files) {
    if (file.path == variant.file) own["edgefleet_model_sha256"] = file.sha256;
  }
  options.backend_options_json = own.dump();
  return options;
}

void UpdateMachine::RememberVariant(const std::string& model, Slot slot,
                                    const std::string& variant) {
  if (auto ok = manifests::WriteFileAtomically(VariantFile(model, slot), variant); !ok) {
    spdlog::warn("event=variant_not_remembered model={} error={}", LogValue(model),
                 LogValue(ok.error().message));
  }
}

void UpdateMachine::CollectGarbage() {
  auto report = ctx_.slots->CollectGarbage({});
  if (!report) {
    spdlog::warn("event=gc_failed error={}", LogValue(report.error().message));
    return;
  }
  if (!report->removed.empty()) {
    spdlog::info("event=gc removed={} bytes_freed={}", report->removed.size(), report->bytes_freed);
  }
}

Result<Deployment> UpdateMachine::InstallLocal(const std::filesystem::path& bundle) {
  const std::string shown = manifests::QuoteName(bundle.string());
  // The signature first: a bundle the release role did not sign gets "not signed", and nothing
  // (journal row, directory) is ever named after its unverified manifest.
  EF_ASSIGN_OR_RETURN(auto head, updater::ReadVerifiedManifest(bundle, *ctx_.trust));
  EF_ASSIGN_OR_RETURN(std::string sha256, manifests::Sha256File(bundle));
  std::error_code ec;
  const auto size = std::filesystem::file_size(bundle, ec);
  if (ec) return edgefleet::Fail(ErrorCode::kIo, shown + ": " + ec.message());
  const std::string model = head.manifest.name;
  const std::string version = head.manifest.version.ToString();
  EF_ASSIGN_OR_RETURN(auto record, ctx_.journal->ReadModel(model));
  if (record.active && record.active->version == version) {
    return edgefleet::Fail(
        ErrorCode::kInvalidArgument,
        fmt::format("{}: {} {} is already the active model", shown, model, version));
  }
  if (!record.highest_version.empty()) {
    auto highest = manifests::SemVer::Parse(record.highest_version);
    if (highest && head.manifest.version < *highest) {
      return edgefleet::Fail(
          ErrorCode::kInvalidArgument,
          fmt::format("{}: {} {} is below the highest version committed on this box, {}: an "
                      "offline install never downgrades (rollback protection; a signed desired "
                      "state with allow_downgrade can)",
                      shown, model, version, record.highest_version));
    }
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
               LogValue("offline install of " + shown));
  Emit(run, std::string(updater::ToString(run.dep.state)), "", "offline install of " + shown);
  EF_RETURN_IF_ERROR(Step(run, Event::kLocalBundle, shown));
  auto result = FromVerifying(run, bundle, std::nullopt);
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
    return edgefleet::Fail(
        ErrorCode::kNotFound,
        fmt::format("{}: nothing to roll back to (no previous committed model)", model));
  }
  EF_ASSIGN_OR_RETURN(auto after, ctx_.journal->RollBackToPrevious(model));
  spdlog::info("event=rollback model={} from={} to={} slot={}", LogValue(model),
               LogValue(before.active ? before.active->version : ""),
               LogValue(after.active ? after.active->version : ""),
               after.active ? updater::ToString(after.active->slot) : "none");
  return after;
}

}  // namespace edgefleet::agent
