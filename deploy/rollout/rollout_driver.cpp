// The rollout's driver: see rollout_driver.hpp. Everything here runs on the thread that calls
// Drive, except the Link's callbacks, which only fill its Inbox (and the signing helpers of
// rollout_sign.cpp).
#include "deploy/rollout/rollout_driver.hpp"

#include <unistd.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <thread>

#include "deploy/collector/collector.hpp"
#include "deploy/common/files.hpp"
#include "deploy/rollout/rollout.hpp"
#include "manifests/log_value.hpp"
#include "manifests/time.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::deploy {
namespace {

namespace fs = std::filesystem;
using manifests::LogValue;
using nlohmann::json;

constexpr std::int64_t kLeaseStaleMs = 5000;
// Connections that publish the rollout's outbox (Link::publishers and the link's own client).
constexpr std::size_t kPublishers = 4;

using manifests::NowMs;

// `models` with the entry named like `entry` replaced by it (or appended), allow_downgrade set
// on it as given.
json WithModel(const json& models, json entry, bool allow_downgrade) {
  entry["allow_downgrade"] = allow_downgrade;
  json out = json::array();
  bool replaced = false;
  if (models.is_array()) {
    for (const json& m : models) {
      if (m.is_object() && m.value("name", "") == entry.value("name", "")) {
        out.push_back(entry);
        replaced = true;
      } else {
        out.push_back(m);
      }
    }
  }
  if (!replaced) out.push_back(entry);
  return out;
}

// ---- the MQTT side ----

Result<std::string> ReadPassword(const std::string& file) {
  if (file.empty()) return std::string();
  EF_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(file, 4096));
  const auto nl = text.find('\n');
  if (nl != std::string::npos) text.resize(nl);
  return text;
}

Result<telemetry::MqttOptions> MqttOptionsFor(const RolloutConnection& c,
                                              const std::string& client_id, bool clean) {
  EF_ASSIGN_OR_RETURN(HostPort hp, ParseHostPort("--broker", c.broker, 1));
  telemetry::MqttOptions o;
  o.host = hp.host;
  o.port = hp.port;
  o.client_id = client_id;
  o.username = c.username;
  EF_ASSIGN_OR_RETURN(o.password, ReadPassword(c.password_file));
  o.ca_file = c.ca_file;
  o.cert_file = c.cert_file;
  o.key_file = c.key_file;
  o.reconnect_min = std::chrono::milliseconds(200);
  o.reconnect_max = std::chrono::milliseconds(5000);
  o.clean_session = clean;
  return o;
}

std::string ClientId(const std::string& rollout_id) { return "edgefleet-rollout-" + rollout_id; }

// Ends the broker's persistent session of this rollout (a clean-session connection with the same
// client id), so the broker stops queueing the fleet's events for a rollout that is over.
void DropSession(const RolloutConnection& c, const std::string& rollout_id) {
  auto o = MqttOptionsFor(c, ClientId(rollout_id), true);
  if (!o) return;
  auto connected = std::make_shared<std::atomic<bool>>(false);
  telemetry::MqttHandlers h;
  h.on_connection = [connected](bool up, const std::string&) {
    if (up) *connected = true;
  };
  auto client = telemetry::MqttClient::Start(std::move(*o), nullptr, std::move(h));
  if (!client) return;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!*connected && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  (*client)->Stop();
}

// ---- the driver ----

class Driver final {
 public:
  Driver(RolloutStore& store, RolloutRecord rollout, std::vector<RolloutDevice> devices,
         Signer signer, Link& link, std::ostream& out)
      : store_(store),
        r_(std::move(rollout)),
        devices_(std::move(devices)),
        signer_(std::move(signer)),
        link_(link),
        out_(out),
        changed_(devices_.size(), false) {
    for (std::size_t i = 0; i < devices_.size(); ++i) index_[devices_[i].device] = i;
  }

  // What discovery collected: the newest statuses, and the messages it did not consume (events
  // a persistent session queued while no driver ran: verdicts that must not be lost).
  void SetStatuses(std::map<std::string, telemetry::StatusMessage> statuses) {
    statuses_ = std::move(statuses);
  }
  void Feed(std::vector<telemetry::MqttMessage> messages) { early_ = std::move(messages); }

  // Publishes again what an earlier driver may not have delivered (same bytes: the devices see
  // "already applied").
  Status Republish() {
    std::vector<telemetry::OutgoingMessage> msgs;
    for (const RolloutDevice& d : devices_) {
      if (!d.doc.empty() && d.restore_doc.empty()) msgs.push_back(DesiredMessage(d.device, d.doc));
      if (!d.restore_doc.empty()) msgs.push_back(DesiredMessage(d.device, d.restore_doc));
    }
    if (msgs.empty()) return Ok();
    EF_RETURN_IF_ERROR(link_.outbox->Append(msgs));
    link_.Wake();
    return Ok();
  }

  Result<int> Run(const StopSignals& stop) {
    const std::int64_t pid = getpid();
    EF_RETURN_IF_ERROR(store_.AcquireLease(r_.id, pid, NowMs(), kLeaseStaleMs));
    Result<int> result = Loop(stop);
    (void)store_.ReleaseLease(r_.id, pid);
    return result;
  }

 private:
  telemetry::OutgoingMessage DesiredMessage(const std::string& device, const std::string& doc) {
    telemetry::OutgoingMessage m;
    m.topic = telemetry::DeviceTopic(r_.fleet, device, "desired");
    m.payload = doc;
    m.retain = true;
    m.supersede = true;
    return m;
  }

  void Say(const std::string& line) { out_ << "rollout=" << r_.id << " " << line << std::endl; }

  std::string WaveLine() const {
    const Tally t = Count(devices_, r_.wave);
    std::ostringstream s;
    s << "wave=" << r_.wave << "/" << Waves()
      << " percent=" << (r_.wave >= 1 && r_.wave <= r_.waves.size() ? r_.waves[r_.wave - 1] : 0)
      << " released=" << t.released << " succeeded=" << t.succeeded << " failed=" << t.failed
      << " pending=" << t.updating << " state=" << ToString(r_.state);
    return s.str();
  }

  std::size_t Waves() const { return MaxWave(devices_); }

  // Something to store and to publish: the rollout's own fields...
  void MarkRollout() { save_pending_ = publish_pending_ = true; }
  // ... or a device's (only changed device rows are written).
  void Touch(RolloutDevice& d) {
    changed_[static_cast<std::size_t>(&d - devices_.data())] = true;
    d.updated_ms = NowMs();
    MarkRollout();
  }

  void Changed(RolloutDevice& d, DeviceState state, const std::string& detail) {
    d.state = state;
    d.detail = detail;
    Touch(d);
  }

  // The verdict on the rollout's document. A device still updating moves to `state`; one that is
  // already being restored (halted before its verdict came) keeps restoring.
  void SetOutcome(RolloutDevice& d, const char* outcome, DeviceState state,
                  const std::string& detail) {
    d.outcome = outcome;
    if (d.state == DeviceState::kUpdating) d.state = state;
    d.detail = detail;
    Touch(d);
  }

  void OnMessage(const telemetry::MqttMessage& m) {
    auto parts = telemetry::ParseTopic(m.topic);
    if (!parts || parts->fleet != r_.fleet || parts->kind != "device" || m.payload.empty()) return;
    if (parts->leaf == "status") {
      auto status = telemetry::ParseStatus(m.payload);
      if (!status) return;
      auto it = statuses_.find(parts->name);
      if (it == statuses_.end() || it->second.ts <= status->ts) statuses_[parts->name] = *status;
      return;
    }
    if (parts->leaf != "events") return;
    const auto it = index_.find(parts->name);
    if (it == index_.end()) return;
    auto ev = telemetry::ParseEvent(m.payload);
    if (ev) OnEvent(devices_[it->second], *ev);
  }

  static bool IsFailure(const std::string& e) {
    return e == "failed" || e == "rolled_back" || e == "rejected";
  }

  void OnEvent(RolloutDevice& d, const telemetry::EventMessage& ev) {
    if (!ev.model.empty() && ev.model != r_.model) return;
    const std::string reason = ev.reason.empty() ? ev.event : ev.event + ": " + ev.reason;
    if (d.serial != 0 && ev.serial == d.serial && d.outcome.empty()) {
      const bool success =
          ev.event == "committed" || (r_.success_on == "activated" && ev.event == "watching");
      if (success) {
        SetOutcome(d, "succeeded", DeviceState::kSucceeded, ev.event);
      } else if (IsFailure(ev.event)) {
        SetOutcome(d, "failed", DeviceState::kFailed, reason);
      } else if (d.state == DeviceState::kUpdating) {
        Changed(d, DeviceState::kUpdating, ev.event);
      }
      Say("device=" + d.device + " wave=" + std::to_string(d.wave) + " event=" + ev.event +
          (ev.reason.empty() ? "" : " reason=" + LogValue(ev.reason)));
      return;
    }
    if (d.restore_serial != 0 && ev.serial == d.restore_serial &&
        d.state == DeviceState::kRestoring) {
      if (IsFailure(ev.event)) {
        Changed(d, DeviceState::kFailed, d.detail + "; restore " + reason);
        Say("device=" + d.device + " restore_failed=" + LogValue(reason));
      } else if (ev.event == "committed") {
        RestoredNow(d);
      }
    }
  }

  void RestoredNow(RolloutDevice& d) {
    // The detail keeps why the device failed (if it did): that is what the operator needs.
    Changed(d, DeviceState::kRestored,
            d.detail + (d.detail.empty() ? "" : "; ") + "restored: runs " +
                (d.prev_version.empty() ? std::string("its previous models") : d.prev_version) +
                " again");
    Say("device=" + d.device + " restored=" + (d.prev_version.empty() ? "-" : d.prev_version));
  }

  // The rollout model's active slot on `device` from its newest status, if any.
  std::optional<telemetry::SlotInfo> Active(const std::string& device) const {
    auto it = statuses_.find(device);
    if (it == statuses_.end()) return std::nullopt;
    for (const auto& m : it->second.models) {
      if (m.name == r_.model) return m.active;
    }
    return std::nullopt;
  }

  std::string BundleSha() const {
    return r_.desired_model.at("bundle").at("sha256").get<std::string>();
  }

  void CheckStatuses() {
    for (RolloutDevice& d : devices_) {
      const auto active = Active(d.device);
      if (d.state == DeviceState::kUpdating && r_.success_on == "activated" && active &&
          active->version == r_.version && active->sha256 == BundleSha()) {
        SetOutcome(d, "succeeded", DeviceState::kSucceeded, "activated");
        Say("device=" + d.device + " wave=" + std::to_string(d.wave) + " event=activated");
      }
      // Restored without a new deployment: a device that failed the rollout's version (refused,
      // failed or rolled back by itself) still or again serves the previous one, and the agent
      // ignores the restore document as "already active"; likewise when the previous version
      // is the rollout's own. A device that took the new version is restored only by the
      // committed event of the restore document (OnEvent): its status shows the old version
      // already while it watches it, and a watch can still roll back.
      if (d.state == DeviceState::kRestoring &&
          ((d.outcome == "failed" && active && active->version == d.prev_version) ||
           d.prev_version == r_.version)) {
        RestoredNow(d);
      }
    }
  }

  Status Release(std::size_t wave) {
    r_.wave = wave;
    r_.wave_started_ms = NowMs();
    MarkRollout();
    std::vector<telemetry::OutgoingMessage> msgs;
    const json entry = r_.desired_model;
    // Every serial of the wave in one transaction (one fsync, not one per device).
    std::vector<RolloutStore::SerialRequest> requests;
    for (const RolloutDevice& d : devices_) {
      if (d.wave == wave) requests.push_back({"device/" + d.device, d.prev_serial});
    }
    EF_ASSIGN_OR_RETURN(const std::vector<std::uint64_t> serials,
                        store_.NextSerials(r_.fleet, requests, NowMs()));
    std::vector<DeviceDoc> docs;
    for (const RolloutDevice& d : devices_) {
      if (d.wave != wave) continue;
      docs.push_back({&d.device, serials[docs.size()], WithModel(d.prev_models, entry, false)});
    }
    EF_ASSIGN_OR_RETURN(std::vector<std::string> signed_docs, SignDeviceDocs(signer_, docs));
    std::size_t next = 0;
    for (RolloutDevice& d : devices_) {
      if (d.wave != wave) continue;
      d.serial = serials[next];
      d.doc = std::move(signed_docs[next++]);
      const auto active = Active(d.device);
      if (active && active->version == r_.version && active->sha256 == BundleSha()) {
        d.outcome = "succeeded";
        Changed(d, DeviceState::kSucceeded, "already active");
      } else {
        Changed(d, DeviceState::kUpdating, "published");
      }
      msgs.push_back(DesiredMessage(d.device, d.doc));
    }
    EF_RETURN_IF_ERROR(Save());  // what was published is on disk before it is sent
    EF_RETURN_IF_ERROR(link_.outbox->Append(msgs));
    link_.Wake();
    at_broker_wave_ = wave;
    at_broker_count_ = msgs.size();
    Say(WaveLine());
    for (const RolloutDevice& d : devices_) {
      if (d.wave == wave) {
        Say("device=" + d.device + " wave=" + std::to_string(wave) +
            " event=" + (d.state == DeviceState::kSucceeded ? "already_active" : "released") +
            " serial=" + std::to_string(d.serial));
      }
    }
    return Ok();
  }

  Status Complete(const std::string& reason) {
    const PreviousDoc group = ReadPreviousDoc(r_.group_doc);
    EF_ASSIGN_OR_RETURN(r_.group_serial,
                        store_.NextSerial(r_.fleet, "group/" + r_.group, group.serial, NowMs()));
    EF_ASSIGN_OR_RETURN(std::string doc,
                        SignDesired(signer_, "group", r_.group, r_.group_serial,
                                    WithModel(group.models, r_.desired_model, false)));
    r_.state = RolloutState::kCompleted;
    r_.reason = reason;
    r_.finished_ms = NowMs();
    MarkRollout();
    EF_RETURN_IF_ERROR(Save());
    telemetry::OutgoingMessage m;
    m.topic = telemetry::GroupDesiredTopic(r_.fleet, r_.group);
    m.payload = doc;
    m.retain = true;
    m.supersede = true;
    EF_RETURN_IF_ERROR(link_.outbox->Append(m));
    link_.Wake();
    Say("group=" + r_.group +
        " event=group_desired_published serial=" + std::to_string(r_.group_serial));
    return Ok();
  }

  // Halt or abort: the previous desired state goes back to every released device.
  Status Restore(RolloutState state, const std::string& reason) {
    r_.state = state;
    r_.reason = reason;
    r_.finished_ms = NowMs();
    MarkRollout();
    Say("state=" + std::string(ToString(state)) + " reason=" + LogValue(reason) +
        " restoring=previous_desired_state");
    std::vector<telemetry::OutgoingMessage> msgs;
    auto restorable = [](const RolloutDevice& d) {
      return d.state != DeviceState::kWaiting && d.prev_models.is_array();
    };
    std::vector<RolloutStore::SerialRequest> requests;
    for (const RolloutDevice& d : devices_) {
      if (restorable(d)) requests.push_back({"device/" + d.device, d.serial});
    }
    EF_ASSIGN_OR_RETURN(const std::vector<std::uint64_t> serials,
                        store_.NextSerials(r_.fleet, requests, NowMs()));
    std::vector<DeviceDoc> docs;
    for (const RolloutDevice& d : devices_) {
      if (!restorable(d)) continue;
      json prev_entry;
      for (const json& m : d.prev_models) {
        if (m.is_object() && m.value("name", "") == r_.model) prev_entry = m;
      }
      docs.push_back(
          {&d.device, serials[docs.size()],
           prev_entry.is_null() ? d.prev_models : WithModel(d.prev_models, prev_entry, true)});
    }
    EF_ASSIGN_OR_RETURN(std::vector<std::string> signed_docs, SignDeviceDocs(signer_, docs));
    std::size_t next = 0;
    for (RolloutDevice& d : devices_) {
      if (d.state == DeviceState::kWaiting) continue;
      if (!restorable(d)) {
        Changed(d, DeviceState::kRestored, "no previous desired state; left as it is");
        continue;
      }
      d.restore_serial = serials[next];
      d.restore_doc = std::move(signed_docs[next++]);
      Changed(d, DeviceState::kRestoring, d.detail);
      msgs.push_back(DesiredMessage(d.device, d.restore_doc));
    }
    EF_RETURN_IF_ERROR(Save());
    if (!msgs.empty()) {
      EF_RETURN_IF_ERROR(link_.outbox->Append(msgs));
      link_.Wake();
    }
    return Ok();
  }

  bool Restoring() const {
    return std::any_of(devices_.begin(), devices_.end(),
                       [](const auto& d) { return d.state == DeviceState::kRestoring; });
  }

  // Writes the rollout and the devices changed since the last Save.
  Status Save() {
    r_.updated_ms = NowMs();
    std::vector<RolloutDevice> changed;
    for (std::size_t i = 0; i < devices_.size(); ++i) {
      if (changed_[i]) changed.push_back(devices_[i]);
    }
    EF_RETURN_IF_ERROR(store_.Save(r_, changed));
    std::fill(changed_.begin(), changed_.end(), false);
    save_pending_ = false;
    return Ok();
  }

  Status PublishStatus() {
    publish_pending_ = false;
    telemetry::OutgoingMessage m;
    m.topic = RolloutStatusTopic(r_.fleet, r_.id);
    m.payload = StatusJson(r_, devices_).dump();
    m.retain = true;
    m.supersede = true;
    EF_RETURN_IF_ERROR(link_.outbox->Append(m));
    link_.Wake();
    return Ok();
  }

  // One step: control requests, timeouts, decisions.
  Status Step() {
    EF_ASSIGN_OR_RETURN(const std::string control, store_.TakeControl(r_.id));
    if (control == "pause" && r_.state == RolloutState::kRunning) {
      r_.state = RolloutState::kPaused;
      MarkRollout();
      Say("state=paused (no further wave is released; `resume` continues)");
    } else if (control == "resume" && r_.state == RolloutState::kPaused) {
      r_.state = RolloutState::kRunning;
      MarkRollout();
      Say("state=running (resumed)");
    } else if (control == "abort" && !IsFinal(r_.state)) {
      EF_RETURN_IF_ERROR(Restore(RolloutState::kAborted, "aborted by the operator"));
    }
    if (IsFinal(r_.state)) {
      if (Restoring() && NowMs() - r_.finished_ms > r_.wave_timeout_s * 1000) {
        restore_timed_out_ = true;
      }
      return Ok();
    }
    if (r_.wave == 0) {
      if (r_.state == RolloutState::kRunning) return Release(1);
      return Ok();
    }
    bool timed_out = false;
    if (NowMs() - r_.wave_started_ms > r_.wave_timeout_s * 1000) {
      for (RolloutDevice& d : devices_) {
        if (d.wave <= r_.wave && d.outcome.empty()) {
          SetOutcome(d, "failed", DeviceState::kFailed,
                     "no verdict within " + std::to_string(r_.wave_timeout_s) +
                         " s (last: " + d.detail + ")");
          Say("device=" + d.device + " wave=" + std::to_string(d.wave) + " event=timed_out");
        }
      }
      timed_out = true;
    }
    const Decision decision = Decide(Count(devices_, r_.wave), r_.thresholds, r_.wave, Waves(),
                                     r_.state == RolloutState::kPaused, timed_out);
    switch (decision.verdict) {
      case Verdict::kWait:
        break;
      case Verdict::kNextWave:
        Say(WaveLine() + " event=wave_succeeded");
        return Release(r_.wave + 1);
      case Verdict::kComplete:
        return Complete(decision.reason);
      case Verdict::kHalt:
        return Restore(RolloutState::kHalted, decision.reason);
    }
    return Ok();
  }

  std::vector<telemetry::MqttMessage> Drain() {
    std::lock_guard lock(link_.inbox->mu);
    std::vector<telemetry::MqttMessage> out(link_.inbox->messages.begin(),
                                            link_.inbox->messages.end());
    link_.inbox->messages.clear();
    return out;
  }

  Result<int> Loop(const StopSignals& stop) {
    const std::int64_t pid = getpid();
    std::int64_t last_beat = 0, last_publish = 0, last_line = NowMs();
    for (const auto& m : early_) OnMessage(m);
    early_.clear();
    MarkRollout();
    while (true) {
      for (const auto& m : Drain()) OnMessage(m);
      CheckStatuses();
      EF_RETURN_IF_ERROR(Step());
      const std::int64_t now = NowMs();
      if (save_pending_) EF_RETURN_IF_ERROR(Save());
      // Progress is published at most twice a second (and at the end).
      if (publish_pending_ && now - last_publish >= 500) {
        EF_RETURN_IF_ERROR(PublishStatus());
        last_publish = now;
      }
      ReportAtBroker(now);
      if (now - last_beat >= 1000) {
        EF_RETURN_IF_ERROR(store_.Heartbeat(r_.id, pid, now));
        last_beat = now;
      }
      if (!IsFinal(r_.state) && now - last_line >= 10000) {
        Say(WaveLine());
        last_line = now;
      }
      if (IsFinal(r_.state) && (!Restoring() || restore_timed_out_)) break;
      if (stop.Wait(std::chrono::milliseconds(200)) != 0) {
        EF_RETURN_IF_ERROR(Save());
        (void)PublishStatus();
        Flush(std::chrono::seconds(3));
        Say("event=interrupted state=" + std::string(ToString(r_.state)));
        return Fail(ErrorCode::kIo,
                    "interrupted; rollout " + r_.id + " stays " + std::string(ToString(r_.state)) +
                        " (devices already released keep updating): `edgefleet rollout resume " +
                        r_.id + " --db " + store_.path().string() + "` continues it");
      }
    }
    if (save_pending_) EF_RETURN_IF_ERROR(Save());
    if (publish_pending_) EF_RETURN_IF_ERROR(PublishStatus());
    const bool flushed = Flush(std::chrono::seconds(10));
    for (const RolloutDevice& d : devices_) {
      Say("device=" + d.device + " wave=" + std::to_string(d.wave) + " state=" +
          std::string(ToString(d.state)) + " outcome=" + (d.outcome.empty() ? "-" : d.outcome) +
          " detail=" + LogValue(d.detail.empty() ? "-" : d.detail));
    }
    if (restore_timed_out_) {
      Say("event=restore_unconfirmed devices still restoring after " +
          std::to_string(r_.wave_timeout_s) + " s; `resume` waits for them again");
    }
    if (!flushed) Say("event=publish_pending (the broker has not acknowledged everything yet)");
    Say("state=" + std::string(ToString(r_.state)) + " reason=" + LogValue(r_.reason));
    finished_ = flushed && !restore_timed_out_;
    switch (r_.state) {
      case RolloutState::kCompleted:
        return kRolloutCompleted;
      case RolloutState::kAborted:
        return kRolloutAborted;
      default:
        return kRolloutHalted;
    }
  }

  // Once the broker has acknowledged every document of the wave released last: how long they
  // took to leave. A row leaves the outbox when the broker acknowledges it, so they all are once
  // no device document is left in it; the only other rows are the rollout's progress status
  // (superseded, so at most one or two) and the group's document. Checked once per loop turn.
  void ReportAtBroker(std::int64_t now) {
    if (at_broker_wave_ == 0) return;
    std::int64_t after = 0;
    for (int page = 0;; ++page) {
      if (page == 4) return;  // more rows than expected: look again next turn
      auto rows = link_.outbox->After(after, 4);
      if (!rows) return;
      if (rows->empty()) break;
      for (const telemetry::OutboxRow& row : *rows) {
        if (row.topic.ends_with("/desired") && row.topic.find("/device/") != std::string::npos) {
          return;
        }
      }
      after = rows->back().id;
    }
    Say("wave=" + std::to_string(at_broker_wave_) + " event=documents_at_broker documents=" +
        std::to_string(at_broker_count_) + " ms=" + std::to_string(now - r_.wave_started_ms));
    at_broker_wave_ = 0;
  }

  // Waits until the broker acknowledged everything queued (or the limit).
  bool Flush(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      auto stats = link_.outbox->Stats();
      if (stats && stats->pending == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

 public:
  bool finished() const { return finished_; }

 private:
  RolloutStore& store_;
  RolloutRecord r_;
  std::vector<RolloutDevice> devices_;
  Signer signer_;
  Link& link_;
  std::ostream& out_;
  std::vector<bool> changed_;                  // devices_ rows not yet saved
  std::map<std::string, std::size_t> index_;   // device name -> devices_ index
  std::vector<telemetry::MqttMessage> early_;  // queued before the loop started
  std::map<std::string, telemetry::StatusMessage> statuses_;
  bool save_pending_ = false;
  bool publish_pending_ = false;
  bool restore_timed_out_ = false;
  bool finished_ = false;
  std::size_t at_broker_wave_ = 0;  // a wave whose documents the broker has not all acknowledged
  std::size_t at_broker_count_ = 0;
};

}  // namespace

// ---- retained documents, the MQTT link ----

PreviousDoc ReadPreviousDoc(const std::string& text) {
  PreviousDoc doc;
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("signed") || !j["signed"].is_object()) return doc;
  const json& s = j["signed"];
  if (s.contains("serial") && s["serial"].is_number_unsigned()) {
    doc.serial = s["serial"].get<std::uint64_t>();
  }
  if (s.contains("created") && s["created"].is_string()) doc.created = s["created"];
  if (s.contains("models") && s["models"].is_array()) doc.models = s["models"];
  return doc;
}

Result<Link> OpenLink(const RolloutConnection& c, const std::string& fleet,
                      const std::string& group, const std::string& rollout_id, const fs::path& db) {
  Link link;
  link.inbox = std::make_unique<Inbox>();
  link.outbox_path = db.string() + "." + rollout_id + ".outbox";
  EF_ASSIGN_OR_RETURN(link.outbox, telemetry::Outbox::Open(link.outbox_path, {}));
  EF_ASSIGN_OR_RETURN(telemetry::MqttOptions o, MqttOptionsFor(c, ClientId(rollout_id), false));
  // A wave publishes one document per device at once: with 100 unacknowledged at a time, 9,000
  // documents took 6.6 s to leave (bench/rollout_scale.py); 1,000 let the outbox settle
  // acknowledgements in larger transactions.
  o.max_inflight = 1000;
  const std::string root = std::string(telemetry::kTopicRoot) + "/" + fleet;
  o.subscriptions = {root + "/device/+/status", root + "/device/+/events",
                     telemetry::GroupDesiredTopic(fleet, group)};
  EF_ASSIGN_OR_RETURN(telemetry::MqttOptions d,
                      MqttOptionsFor(c, ClientId(rollout_id) + "-discovery", true));
  d.subscriptions = {root + "/device/+/desired"};
  Inbox* inbox = link.inbox.get();
  telemetry::MqttHandlers h;
  h.on_message = [inbox](const telemetry::MqttMessage& m) {
    std::lock_guard lock(inbox->mu);
    inbox->messages.push_back(m);
  };
  h.on_connection = [inbox](bool up, const std::string& reason) {
    inbox->up = up;
    std::lock_guard lock(inbox->mu);
    inbox->last_connection_reason = reason;
  };
  o.shards = kPublishers;
  for (std::size_t k = 1; k < kPublishers; ++k) {
    EF_ASSIGN_OR_RETURN(telemetry::MqttOptions p,
                        MqttOptionsFor(c, ClientId(rollout_id) + "-pub" + std::to_string(k), true));
    p.max_inflight = o.max_inflight;
    p.shard = k;
    p.shards = kPublishers;
    EF_ASSIGN_OR_RETURN(auto publisher,
                        telemetry::MqttClient::Start(std::move(p), link.outbox.get(), {}));
    link.publishers.push_back(std::move(publisher));
  }
  EF_ASSIGN_OR_RETURN(link.discovery,
                      telemetry::MqttClient::Start(std::move(d), nullptr, {h.on_message, {}, {}}));
  EF_ASSIGN_OR_RETURN(link.client,
                      telemetry::MqttClient::Start(std::move(o), link.outbox.get(), std::move(h)));
  return link;
}

void Link::Wake() {
  if (client) client->Wake();
  for (auto& p : publishers) p->Wake();
}

void Link::Stop() {
  if (discovery) discovery->Stop();
  for (auto& p : publishers) p->Stop();
  if (client) client->Stop();
}

Status WaitConnected(Link& link, const std::string& broker, const StopSignals& stop,
                     std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto all_up = [&link] {
    return link.inbox->up && (!link.discovery || link.discovery->connected()) &&
           std::all_of(link.publishers.begin(), link.publishers.end(),
                       [](const auto& p) { return p->connected(); });
  };
  while (!all_up()) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::lock_guard lock(link.inbox->mu);
      return Fail(
          ErrorCode::kIo,
          "--broker " + broker + ": not connected after " + std::to_string(limit.count()) + " s (" +
              (link.inbox->last_connection_reason.empty() ? std::string("no answer")
                                                          : link.inbox->last_connection_reason) +
              ")");
    }
    if (stop.Wait(std::chrono::milliseconds(100)) != 0) {
      return Fail(ErrorCode::kIo, "interrupted while connecting to " + broker);
    }
  }
  return Ok();
}

// ---- running it ----

Result<int> Drive(RolloutStore& store, const RolloutRecord& r, std::vector<RolloutDevice> devices,
                  Signer signer, Link& link, Discovery found, const RolloutConnection& c,
                  const StopSignals& signals, std::ostream& out) {
  Driver driver(store, r, std::move(devices), std::move(signer), link, out);
  driver.SetStatuses(std::move(found.statuses));
  driver.Feed(std::move(found.events));
  EF_RETURN_IF_ERROR(driver.Republish());
  auto result = driver.Run(signals);
  link.Stop();
  if (result && driver.finished()) {
    DropSession(c, r.id);
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) {
      fs::remove(link.outbox_path.string() + suffix, ec);
    }
  }
  return result;
}

bool DriverAlive(const RolloutRecord& r) {
  return r.driver_pid != 0 && r.driver_pid != getpid() &&
         NowMs() - r.driver_heartbeat_ms < kLeaseStaleMs && ProcessAlive(r.driver_pid);
}

}  // namespace edgefleet::deploy
