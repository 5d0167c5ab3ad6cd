// The `edgefleet rollout` commands (rollout.hpp): start/resume/abort/pause/status/list. `start`
// checks every flag, downloads the bundle once to check what the devices will fetch, finds the
// group's devices on the broker and plans the waves, then creates the rollout in the database;
// the driver (rollout_driver.hpp) runs it. The other commands act on the database: through the
// control column when another process drives the rollout; resume and abort run the driver here
// when none does.
//
// Thread safety: commands run one at a time from main().

#include <algorithm>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "deploy/collector/collector.hpp"
#include "deploy/commands.hpp"
#include "deploy/common/files.hpp"
#include "deploy/common/stop_signals.hpp"
#include "deploy/rollout/rollout.hpp"
#include "deploy/rollout/rollout_backends.hpp"
#include "deploy/rollout/rollout_driver.hpp"
#include "deploy/rollout/rollout_plan.hpp"
#include "deploy/rollout/rollout_store.hpp"
#include "manifests/log_value.hpp"
#include "manifests/time.hpp"
#include "manifests/trust.hpp"
#include "telemetry/mqtt_client.hpp"
#include "telemetry/payloads.hpp"
#include "updater/bundle_reader.hpp"
#include "updater/fetch.hpp"

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;
using manifests::LogValue;
using nlohmann::json;

constexpr std::uint64_t kMaxBundleBytes = 8ull << 30;  // what start downloads to inspect

using manifests::NowMs;

// ---- the bundle: downloaded once, so what the devices will fetch is what start checked ----

struct FetchedBundle {
  std::uint64_t size = 0;
  std::string sha256;
};

// The agent's downloader (updater/fetch.hpp) with the size only a limit: retried with backoff,
// the slow-retrieval and endless-data defences, redirects to http(s) only; progress logged.
Result<FetchedBundle> FetchBundle(const std::string& url, const fs::path& dest) {
  updater::FetchOptions options;
  options.retry.max_attempts = 3;
  options.low_speed_limit = 1000;
  options.user_agent = "edgefleet-rollout";
  options.progress_interval = std::chrono::seconds(2);
  options.on_progress = [&url](const updater::FetchProgress& p) {
    spdlog::info("event=bundle_download url={} bytes={} bytes_per_second={:.0f} attempt={}",
                 LogValue(url), p.bytes, p.bytes_per_second, p.attempt);
  };
  EF_ASSIGN_OR_RETURN(const updater::Fetcher fetcher, updater::Fetcher::Create(options));
  updater::FetchRequest request;
  request.url = url;
  request.dest = dest;
  request.size = kMaxBundleBytes;
  request.size_is_limit = true;
  request.sync = false;  // inspected, then deleted
  Result<updater::FetchResult> fetched = fetcher.Fetch(request);
  if (!fetched) {
    return Fail(fetched.error().code, "--bundle " + fetched.error().message);
  }
  if (fetched->size == 0) return Fail(ErrorCode::kParse, "--bundle " + url + ": empty response");
  return FetchedBundle{fetched->size, fetched->sha256};
}

// ---- before the driver starts ----

// Collects retained statuses and desired documents (and keeps events) for `span`, then stops
// the discovery client and takes what it delivered before it stopped.
Discovery Discover(Link& link, const std::string& fleet, const std::string& group,
                   std::chrono::milliseconds span) {
  Discovery d;
  auto take = [&] {
    std::deque<telemetry::MqttMessage> batch;
    {
      std::lock_guard lock(link.inbox->mu);
      batch.swap(link.inbox->messages);
    }
    for (const auto& m : batch) {
      auto parts = telemetry::ParseTopic(m.topic);
      if (!parts || parts->fleet != fleet || m.payload.empty()) continue;
      if (parts->kind == "device" && parts->leaf == "status") {
        auto s = telemetry::ParseStatus(m.payload);
        if (!s) continue;
        auto it = d.statuses.find(parts->name);
        if (it == d.statuses.end() || it->second.ts <= s->ts) d.statuses[parts->name] = *s;
      } else if (parts->kind == "device" && parts->leaf == "desired") {
        d.device_docs[parts->name] = m.payload;
      } else if (parts->kind == "group" && parts->leaf == "desired" && parts->name == group) {
        d.group_doc = m.payload;
      } else if (parts->kind == "device" && parts->leaf == "events") {
        d.events.push_back(m);
      }
    }
  };
  const auto deadline = std::chrono::steady_clock::now() + span;
  while (std::chrono::steady_clock::now() < deadline) {
    take();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (link.discovery) {
    link.discovery->Stop();
    link.discovery.reset();
  }
  take();
  return d;
}

Result<std::int64_t> Seconds(const std::string& flag, const std::string& text) {
  auto d = ParseDuration(text);
  if (!d) return Fail(ErrorCode::kInvalidArgument, flag + ": " + d.error().message);
  return static_cast<std::int64_t>(d->count());
}

std::string DefaultId(const std::string& model, const std::string& version) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  std::string id = model + "-" + version + "-" + buf;
  for (char& c : id) {
    if (!IsRolloutId(std::string_view(&c, 1))) c = '_';
  }
  return id.substr(0, 64);
}

RolloutConnection ConnectionFrom(const RolloutStartOptions& o) {
  RolloutConnection c;
  c.broker = o.connection.broker;
  c.ca_file = o.connection.ca_file.string();
  c.cert_file = o.connection.cert_file.string();
  c.key_file = o.connection.key_file.string();
  c.username = o.connection.username;
  c.password_file = o.connection.password_file.string();
  for (const auto& k : o.deploy_keys) c.deploy_keys.push_back(fs::absolute(k).string());
  return c;
}

// Drives an existing rollout from the database (resume, abort without a live driver).
Result<int> DriveStored(RolloutStore& store, const RolloutRecord& r, std::ostream& out,
                        const std::filesystem::path& password_file) {
  StopSignals signals;
  RolloutConnection c = r.connection;
  if (!password_file.empty()) c.password_file = password_file.string();
  EF_ASSIGN_OR_RETURN(Signer signer, LoadSigner(c.deploy_keys, r.fleet, r.expires_s));
  EF_ASSIGN_OR_RETURN(auto devices, store.Devices(r.id));
  EF_ASSIGN_OR_RETURN(Link link, OpenLink(c, r.fleet, r.group, r.id, store.path()));
  EF_RETURN_IF_ERROR(WaitConnected(link, c.broker, signals, std::chrono::seconds(15)));
  Discovery found = Discover(link, r.fleet, r.group, std::chrono::milliseconds(1000));
  return Drive(store, r, std::move(devices), std::move(signer), link, std::move(found), c, signals,
               out);
}

}  // namespace

Result<int> RolloutStart(const RolloutStartOptions& o, std::ostream& out) {
  // Every flag first: nothing is downloaded, published or written for a bad command line.
  if (o.model.empty()) return Fail(ErrorCode::kInvalidArgument, "--model: required");
  if (o.group.empty()) return Fail(ErrorCode::kInvalidArgument, "--group: required");
  if (o.fleet.empty()) return Fail(ErrorCode::kInvalidArgument, "--fleet: required");
  if (o.success_on != "committed" && o.success_on != "activated") {
    return Fail(ErrorCode::kInvalidArgument,
                "--success-on: expected committed or activated, found '" + o.success_on + "'");
  }
  if (!o.id.empty() && !IsRolloutId(o.id)) {
    return Fail(ErrorCode::kInvalidArgument,
                "--id: 1 to 64 of A-Z a-z 0-9 . _ -, found '" + o.id + "'");
  }
  EF_ASSIGN_OR_RETURN(auto waves, ParseWaves(o.waves));
  Thresholds thresholds;
  EF_ASSIGN_OR_RETURN(thresholds.success, ParsePercent("--success-threshold", o.success_threshold));
  EF_ASSIGN_OR_RETURN(thresholds.error, ParsePercent("--error-threshold", o.error_threshold));
  if (thresholds.success <= 0) {
    return Fail(ErrorCode::kInvalidArgument, "--success-threshold: must be above 0%");
  }
  EF_ASSIGN_OR_RETURN(const std::int64_t wave_timeout_s, Seconds("--wave-timeout", o.wave_timeout));
  EF_ASSIGN_OR_RETURN(const std::int64_t expires_s, Seconds("--expires", o.expires));
  EF_ASSIGN_OR_RETURN(const std::int64_t discover_s, Seconds("--discover", o.discover));
  if (auto broker = ParseHostPort("--broker", o.connection.broker, 1); !broker) {
    return Unexpected(broker.error());
  }
  const RolloutConnection connection = ConnectionFrom(o);
  EF_ASSIGN_OR_RETURN(Signer signer, LoadSigner(connection.deploy_keys, o.fleet, expires_s));

  // The bundle, as the devices will download it.
  const fs::path scratch = o.db.string() + ".download";
  auto fetched = FetchBundle(o.bundle, scratch);
  auto cleanup = [&] {
    std::error_code ec;
    fs::remove(scratch, ec);
    fs::remove(scratch.string() + ".part", ec);  // a failed download's part file
  };
  if (!fetched) {
    cleanup();
    return Unexpected(fetched.error());
  }
  auto contents = o.trust.empty() ? updater::ReadBundleManifest(scratch)
                                  : [&]() -> Result<updater::BundleContents> {
    EF_ASSIGN_OR_RETURN(auto trust, manifests::TrustRoot::Load(o.trust, manifests::Now()));
    return updater::VerifyBundleFile(scratch, trust);
  }();
  cleanup();
  if (!contents) {
    return Fail(contents.error().code, "--bundle " + o.bundle + ": " + contents.error().message);
  }
  if (contents->manifest.name != o.model) {
    return Fail(ErrorCode::kInvalidArgument, "--bundle " + o.bundle + ": holds model '" +
                                                 contents->manifest.name + "', not --model '" +
                                                 o.model + "'");
  }
  json requirements = json::array();
  for (json v : contents->envelope.signed_body.at("variants")) {
    v.erase("file");
    requirements.push_back(std::move(v));
  }
  const std::string version = contents->manifest.version.ToString();
  const json desired_model = {
      {"name", o.model},
      {"version", version},
      {"bundle", {{"url", o.bundle}, {"size", fetched->size}, {"sha256", fetched->sha256}}},
      {"allow_downgrade", false},
      {"requirements", requirements}};
  out << "rollout: bundle " << o.bundle << ": " << o.model << " " << version << ", "
      << fetched->size << " bytes, sha256 " << fetched->sha256.substr(0, 16) << "…"
      << (o.trust.empty() ? "" : ", release signatures verified") << std::endl;

  EF_ASSIGN_OR_RETURN(RolloutStore store, RolloutStore::Open(o.db));
  const std::string id = o.id.empty() ? DefaultId(o.model, version) : o.id;
  if (auto existing = store.Get(id)) {
    return Fail(ErrorCode::kInvalidArgument,
                o.db.string() + ": a rollout with id '" + id + "' exists already (" +
                    std::string(ToString(existing->state)) + "); choose another --id");
  }

  StopSignals signals;
  EF_ASSIGN_OR_RETURN(Link link, OpenLink(connection, o.fleet, o.group, id, o.db));
  auto stop_link = [&] { link.Stop(); };
  if (Status up = WaitConnected(link, connection.broker, signals, std::chrono::seconds(15)); !up) {
    stop_link();
    return Unexpected(up.error());
  }
  Discovery found = Discover(link, o.fleet, o.group, std::chrono::seconds(discover_s));

  // The group's devices, sorted by name (the canary is the first wave's).
  std::vector<std::string> names;
  for (const auto& [name, status] : found.statuses) {
    if (std::find(status.groups.begin(), status.groups.end(), o.group) != status.groups.end()) {
      names.push_back(name);
    }
  }
  if (names.empty()) {
    stop_link();
    return Fail(ErrorCode::kNotFound, "--group " + o.group +
                                          ": no device reported a status naming this group on " +
                                          std::string(telemetry::kTopicRoot) + "/" + o.fleet +
                                          "/device/+/status within " + std::to_string(discover_s) +
                                          " s (" + std::to_string(found.statuses.size()) +
                                          " device(s) seen in fleet " + o.fleet + ")");
  }
  // Every device the rollout releases must be able to run some variant: refused before anything
  // is published or stored, naming each device that cannot (or that did not say what it runs).
  std::vector<std::string> unable;
  for (const auto& name : names) {
    if (auto why = NoVariantReason(contents->manifest.variants, found.statuses.at(name).backends)) {
      unable.push_back(name + ": " + *why);
    }
  }
  if (!unable.empty()) {
    stop_link();
    std::string list;
    for (const auto& line : unable) list += "\n  " + line;
    return Fail(ErrorCode::kUnsupported,
                "--group " + o.group + ": " + std::to_string(unable.size()) + " of " +
                    std::to_string(names.size()) + " device(s) can run no variant of " + o.model +
                    " " + version + "; nothing was published:" + list);
  }
  const std::vector<WavePlan> plan = PlanWaves(waves, names.size());
  const PreviousDoc group_prev = ReadPreviousDoc(found.group_doc);
  std::vector<RolloutDevice> devices;
  std::size_t wave = 0;  // index into plan of the wave that releases device i
  for (std::size_t i = 0; i < names.size(); ++i) {
    while (i >= plan[wave].cumulative) ++wave;  // plan's last cumulative is names.size()
    RolloutDevice d;
    d.device = names[i];
    d.wave = wave + 1;
    const auto doc_it = found.device_docs.find(d.device);
    const PreviousDoc device_prev =
        doc_it == found.device_docs.end() ? PreviousDoc{} : ReadPreviousDoc(doc_it->second);
    d.prev_serial = device_prev.serial;
    // The device follows the newer of its own and its group's documents.
    const PreviousDoc& effective =
        (!device_prev.models.is_null() &&
         (group_prev.models.is_null() || device_prev.created >= group_prev.created))
            ? device_prev
            : group_prev;
    d.prev_models = effective.models;
    const auto& status = found.statuses.at(d.device);
    for (const auto& m : status.models) {
      if (m.name == o.model && m.active) d.prev_version = m.active->version;
    }
    d.updated_ms = NowMs();
    devices.push_back(std::move(d));
  }

  RolloutRecord r;
  r.id = id;
  r.fleet = o.fleet;
  r.group = o.group;
  r.model = o.model;
  r.version = version;
  r.bundle_url = o.bundle;
  r.desired_model = desired_model;
  for (const WavePlan& w : plan) r.waves.push_back(w.percent);  // the waves that release someone
  r.thresholds = thresholds;
  r.wave_timeout_s = wave_timeout_s;
  r.expires_s = expires_s;
  r.success_on = o.success_on;
  r.connection = connection;
  r.group_doc = found.group_doc;
  r.started_ms = NowMs();
  r.updated_ms = r.started_ms;
  if (Status created = store.Create(r, devices); !created) {
    stop_link();
    return Unexpected(created.error());
  }
  out << "rollout=" << id << " model=" << o.model << " version=" << version << " group=" << o.group
      << " devices=" << devices.size() << " waves=";
  for (std::size_t w = 0; w < plan.size(); ++w) {
    out << (w ? "," : "") << plan[w].cumulative << "@" << FormatPercent(plan[w].percent / 100);
  }
  out << " success_threshold=" << FormatPercent(thresholds.success)
      << " error_threshold=" << FormatPercent(thresholds.error) << " canary=";
  for (const RolloutDevice& d : devices) {
    if (d.wave == 1) out << (d.device == devices.front().device ? "" : ",") << d.device;
  }
  out << std::endl;

  return Drive(store, r, std::move(devices), std::move(signer), link, std::move(found), connection,
               signals, out);
}

Result<int> RolloutResume(const RolloutCommandOptions& o, std::ostream& out) {
  EF_ASSIGN_OR_RETURN(RolloutStore store, RolloutStore::Open(o.db));
  EF_ASSIGN_OR_RETURN(RolloutRecord r, store.Get(o.id));
  if (DriverAlive(r)) {
    EF_RETURN_IF_ERROR(store.RequestControl(r.id, "resume"));
    out << "rollout=" << r.id << " resume requested from the running driver (pid " << r.driver_pid
        << ")" << std::endl;
    return kRolloutCompleted;
  }
  EF_ASSIGN_OR_RETURN(auto devices, store.Devices(r.id));
  const bool restoring = std::any_of(devices.begin(), devices.end(), [](const auto& d) {
    return d.state == DeviceState::kRestoring;
  });
  if (IsFinal(r.state) && !restoring) {
    out << "rollout=" << r.id << " state=" << ToString(r.state) << " reason=" << LogValue(r.reason)
        << " (finished; nothing to resume)" << std::endl;
    return r.state == RolloutState::kCompleted ? kRolloutCompleted
           : r.state == RolloutState::kAborted ? kRolloutAborted
                                               : kRolloutHalted;
  }
  if (r.state == RolloutState::kPaused) EF_RETURN_IF_ERROR(store.RequestControl(r.id, "resume"));
  out << "rollout=" << r.id << " event=resuming state=" << ToString(r.state) << " wave=" << r.wave
      << std::endl;
  return DriveStored(store, r, out, o.password_file);
}

Result<int> RolloutAbort(const RolloutCommandOptions& o, std::ostream& out) {
  EF_ASSIGN_OR_RETURN(RolloutStore store, RolloutStore::Open(o.db));
  EF_ASSIGN_OR_RETURN(RolloutRecord r, store.Get(o.id));
  if (IsFinal(r.state)) {
    return Fail(
        ErrorCode::kInvalidArgument,
        "rollout " + r.id + " is " + std::string(ToString(r.state)) + " already; nothing to abort");
  }
  EF_RETURN_IF_ERROR(store.RequestControl(r.id, "abort"));
  if (DriverAlive(r)) {
    out << "rollout=" << r.id << " abort requested from the running driver (pid " << r.driver_pid
        << "); it restores the previous desired state" << std::endl;
    return kRolloutAborted;
  }
  return DriveStored(store, r, out, o.password_file);
}

Status RolloutPause(const RolloutCommandOptions& o, std::ostream& out) {
  EF_ASSIGN_OR_RETURN(RolloutStore store, RolloutStore::Open(o.db));
  EF_ASSIGN_OR_RETURN(RolloutRecord r, store.Get(o.id));
  if (r.state != RolloutState::kRunning) {
    return Fail(ErrorCode::kInvalidArgument, "rollout " + r.id + " is " +
                                                 std::string(ToString(r.state)) +
                                                 ", not running; nothing to pause");
  }
  if (DriverAlive(r)) {
    EF_RETURN_IF_ERROR(store.RequestControl(r.id, "pause"));
    out << "rollout=" << r.id << " pause requested from the running driver (pid " << r.driver_pid
        << ")" << std::endl;
    return Ok();
  }
  r.state = RolloutState::kPaused;
  r.updated_ms = NowMs();
  EF_RETURN_IF_ERROR(store.Save(r, {}));
  out << "rollout=" << r.id << " state=paused (no driver is running; `resume` drives it again)"
      << std::endl;
  return Ok();
}

Status PrintRolloutStatus(const RolloutCommandOptions& o, std::ostream& out) {
  EF_ASSIGN_OR_RETURN(RolloutStore store, RolloutStore::Open(o.db, true));
  EF_ASSIGN_OR_RETURN(RolloutRecord r, store.Get(o.id));
  EF_ASSIGN_OR_RETURN(auto devices, store.Devices(r.id));
  json status = StatusJson(r, devices);
  const bool driven = DriverAlive(r);
  if (o.json) {
    status["driver_pid"] = driven ? r.driver_pid : 0;
    json list = json::array();
    for (const RolloutDevice& d : devices) {
      list.push_back({{"device", d.device},
                      {"wave", d.wave},
                      {"state", ToString(d.state)},
                      {"outcome", d.outcome},
                      {"detail", d.detail},
                      {"serial", d.serial},
                      {"previous_version", d.prev_version},
                      {"restore_serial", d.restore_serial}});
    }
    status["device_list"] = list;
    out << status.dump(2) << "\n";
    return Ok();
  }
  out << "rollout " << r.id << ": " << r.model << " " << r.version << " -> group " << r.group
      << " (fleet " << r.fleet << "): " << ToString(r.state)
      << (driven ? " (driven by pid " + std::to_string(r.driver_pid) + ")" : "") << "\n";
  if (!r.reason.empty()) out << "  reason     " << r.reason << "\n";
  out << "  bundle     " << r.bundle_url << "\n"
      << "  thresholds success " << FormatPercent(r.thresholds.success) << ", error "
      << FormatPercent(r.thresholds.error) << "; wave timeout " << r.wave_timeout_s << " s\n";
  std::size_t w = 1;
  for (const json& wave : status["waves"]) {
    out << "  wave " << w++ << " (" << wave["percent"].get<double>()
        << "%): " << wave["devices"].get<std::size_t>() << " device(s), " << wave["succeeded"]
        << " succeeded, " << wave["failed"] << " failed, " << wave["pending"] << " pending ["
        << wave["state"].get<std::string>() << "]\n";
  }
  for (const RolloutDevice& d : devices) {
    out << "  " << d.device << "  wave " << d.wave << "  " << ToString(d.state)
        << (d.outcome.empty() ? "" : " (" + d.outcome + ")")
        << (d.detail.empty() ? "" : "  " + d.detail) << "\n";
  }
  return Ok();
}

Status RolloutList(const RolloutCommandOptions& o, std::ostream& out) {
  EF_ASSIGN_OR_RETURN(RolloutStore store, RolloutStore::Open(o.db, true));
  EF_ASSIGN_OR_RETURN(auto rollouts, store.List());
  json list = json::array();
  for (const RolloutRecord& r : rollouts) {
    EF_ASSIGN_OR_RETURN(auto devices, store.Devices(r.id));
    const Tally t = Count(devices, MaxWave(devices));
    if (o.json) {
      list.push_back({{"id", r.id},
                      {"model", r.model},
                      {"version", r.version},
                      {"group", r.group},
                      {"fleet", r.fleet},
                      {"state", ToString(r.state)},
                      {"reason", r.reason},
                      {"devices", devices.size()},
                      {"succeeded", t.succeeded},
                      {"failed", t.failed},
                      {"started_ms", r.started_ms},
                      {"finished_ms", r.finished_ms}});
    } else {
      out << r.id << "  " << r.model << " " << r.version << " -> " << r.group << "  "
          << ToString(r.state) << "  " << t.succeeded << "/" << devices.size() << " succeeded, "
          << t.failed << " failed" << (r.reason.empty() ? "" : "  " + r.reason) << "\n";
    }
  }
  if (o.json) out << list.dump(2) << "\n";
  return Ok();
}

}  // namespace edgefleet::deploy
