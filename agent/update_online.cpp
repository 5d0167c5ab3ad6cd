// The online path of the update machine: a desired-state document (verified, for this device,
// not replayed) to the deployments it asks for, and each deployment's download up to verifying.
#include <algorithm>
#include <chrono>
#include <optional>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/log_value.hpp"
#include "agent/update_machine.hpp"
#include "agent/update_machine_internal.hpp"
#include "manifests/canonical.hpp"
#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "runtime/compat.hpp"
#include "updater/fetch.hpp"
#include "updater/growing_file.hpp"
#include "updater/unpack.hpp"

namespace edgefleet::agent {

using Clock = std::chrono::steady_clock;
using updater::Deployment;

void UpdateMachine::ApplyDesiredState(std::string_view text, std::string_view source) {
  const auto& cfg = *ctx_.config;
  auto log_doc = [this](std::uint64_t serial, std::string_view target, std::string_view result,
                        std::string_view reason) {
    spdlog::info("event=desired_state serial={} target={} result={} reason={}", serial,
                 LogValue(target), result, LogValue(reason));
    if (result == "refused") EmitRejected(serial, target, "", "", reason);
  };
  auto envelope =
      manifests::SignedEnvelope::FromText(text, source, manifests::kMaxDesiredStateBytes);
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
  const bool for_us = (ds->target_kind == "device" && ds->target == cfg.device) ||
                      (ds->target_kind == "group" && std::find(cfg.groups.begin(), cfg.groups.end(),
                                                               ds->target) != cfg.groups.end());
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
    return log_doc(
        ds->serial, target, "refused",
        fmt::format(
            "replayed serial {}: the last accepted for {} is {}{}", ds->serial, target,
            last && last->has_value() ? std::to_string(**last) : "none",
            last && last->has_value() && **last == ds->serial ? " with other content" : ""));
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
      // Forms the chosen backend never measured are not a refusal: loading the model and its
      // parity run decide after download. Said here, so the operator knows why it may fail.
      const auto& variant = entry.requirements[choice->variant_index];
      const auto unknown = runtime::UnmeasuredForms(variant, choice->backend->capabilities());
      if (!unknown.empty()) {
        std::string forms;
        for (const auto& f : unknown) forms += (forms.empty() ? "" : " ") + f;
        spdlog::info(
            "event=compat_unknown serial={} model={} variant={} backend={} forms={} "
            "decided_by=load_and_parity",
            ds->serial, LogValue(entry.name), LogValue(variant.id),
            LogValue(choice->backend->capabilities().name), LogValue(forms));
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
                 ds.serial, LogValue(entry.name), LogValue(request.version),
                 LogValue(dep.error().message));
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
    // A whole download is recorded by the downloaded transition that follows at once; a
    // journal commit here would wait (fsync) behind the bundle's own write-back.
    if (p.bytes != p.total) (void)journal->RecordDownloadBytes(id, p.bytes);
  };
  auto fetcher = updater::Fetcher::Create(std::move(options));
  if (!fetcher) {
    (void)Fail(run, fetcher.error());
    return;
  }
  // One streamed pass: a second thread verifies the bundle and unpacks it into staging while the
  // download writes the part file (which stays for a resume). The journal still moves
  // downloading -> verifying -> unpacking in order once the download ends; what was staged before
  // then is scratch that restart recovery removes.
  updater::GrowingFile follower;
  std::optional<Result<updater::Unpacked>> streamed;
  // The slot needs its space while the rest of the download still arrives: what is on disk
  // already (a finished file or a part from an earlier attempt) is not needed again.
  std::error_code ec;
  std::uint64_t on_disk = std::filesystem::file_size(dest, ec);
  if (ec) on_disk = std::filesystem::file_size(dest.string() + ".part", ec);
  if (ec || on_disk > entry.bundle.size) on_disk = 0;
  updater::UnpackTarget unpack_to = Target(run, entry.bundle.size - on_disk);
  unpack_to.on_verified = [&run, &dest](const manifests::Manifest& m) {
    return MixAndMatch(m, run.dep.request, dest.filename().string());
  };
  std::thread unpacker([&] {
    updater::GrowingFileSource source(follower);
    streamed = updater::UnpackBundle(source, dest.filename().string(), *ctx_.trust, *ctx_.slots,
                                     unpack_to);
  });
  // No fsync of the download: what must survive a power cut is the slot, synced at commit.
  auto fetched = fetcher->Fetch(
      {entry.bundle.url, dest, entry.bundle.size, entry.bundle.sha256, &follower, /*sync=*/false});
  follower.Finished(fetched ? std::optional<std::filesystem::path>(dest) : std::nullopt);
  unpacker.join();
  if (!fetched) {
    streamed.reset();  // discards whatever was staged
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
                        fetched->resumed ? fmt::format(", resumed from {}", fetched->resumed_from)
                                         : std::string())))
    return;
  (void)FromVerifying(run, dest, std::move(streamed));
}

}  // namespace edgefleet::agent
