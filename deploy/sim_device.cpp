// One simulated device: see sim_device.hpp.
#include "deploy/sim_device.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/desired_state.hpp"
#include "manifests/envelope.hpp"

namespace edgefleet::deploy {
namespace {

std::int64_t Ms(double seconds) { return std::llround(seconds * 1000.0); }

// The states an agent enters for a desired state it takes, in order, each an event.
constexpr const char* kSuccess[] = {"downloading", "verifying", "unpacking",
                                    "loading",     "parity",    "parity_report",
                                    "activating",  "watching",  "committed"};
constexpr const char* kFailure[] = {"downloading", "verifying",     "unpacking", "loading",
                                    "parity",      "parity_report", "failed"};

// A stand-in for the hash of the bundle a device starts with: stable per model and version.
std::string StartSha(const std::string& model, const std::string& version) {
  return manifests::Sha256Hex("edgefleet simulate: " + model + " " + version);
}

}  // namespace

SimDevice::SimDevice(const SimProfile* profile, std::string name, bool fails_updates,
                     std::uint64_t seed, std::int64_t now_ms)
    : profile_(profile),
      name_(std::move(name)),
      fails_updates_(fails_updates),
      rng_(seed | 1),
      window_start_ms_(now_ms) {
  stream_ = fmt::format("{:016x}", Random());
  // Devices start at random points of their window and event period, as a real fleet does.
  const std::int64_t window_ms = std::max<std::int64_t>(1, Ms(profile_->window_s));
  next_window_ms_ = now_ms + static_cast<std::int64_t>(Random() % window_ms) + 1;
  const std::int64_t event_ms = Ms(profile_->event_every_s);
  next_event_ms_ =
      event_ms > 0 ? now_ms + static_cast<std::int64_t>(Random() % event_ms) + 1 : INT64_MAX;
  active_[profile_->model] = {"A", profile_->version, StartSha(profile_->model, profile_->version)};
}

std::uint64_t SimDevice::Random() {
  // xorshift64*: cheap, and reproducible from the seed.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 0x2545F4914F6CDD1DULL;
}

std::vector<std::string> SimDevice::DesiredTopics() const {
  std::vector<std::string> topics = {telemetry::DeviceTopic(profile_->fleet, name_, "desired")};
  for (const auto& g : profile_->groups) {
    topics.push_back(telemetry::GroupDesiredTopic(profile_->fleet, g));
  }
  return topics;
}

SimMessage SimDevice::Status(bool online, std::uint64_t connection, std::int64_t now_ms) const {
  telemetry::StatusMessage s;
  s.id = telemetry::NewMessageId();
  s.device = name_;
  s.fleet = profile_->fleet;
  s.ts = now_ms;
  s.online = online;
  s.agent_version = "simulated";
  s.groups = profile_->groups;
  s.backends = {{"opencv", "4.6.0", {"onnx"}, {"cpu"}}};
  s.connection = connection;
  if (online) {
    for (const auto& [model, slot] : active_) {
      telemetry::ModelStatus m{model, slot, std::nullopt};
      if (auto it = standby_.find(model); it != standby_.end()) m.standby = it->second;
      s.models.push_back(std::move(m));
    }
  }
  return {SimMessage::Kind::kStatus, telemetry::DeviceTopic(profile_->fleet, name_, "status"),
          telemetry::EncodeStatus(s), true};
}

SimMessage SimDevice::Numbered(SimMessage::Kind kind, std::string topic, std::string payload) {
  return {kind, std::move(topic), std::move(payload), false};
}

SimMessage SimDevice::Window(std::int64_t now_ms) {
  const auto& [model, slot] = *active_.begin();
  telemetry::TelemetryWindow t;
  t.id = telemetry::NewMessageId();
  t.device = name_;
  t.ts = now_ms;
  t.start_ts = window_start_ms_;
  t.window_s = static_cast<double>(now_ms - window_start_ms_) / 1000.0;
  t.model = model;
  t.version = slot.version;
  t.slot = slot.slot;
  t.role = "active";
  t.count = profile_->requests_per_window;
  for (std::uint32_t i = 0; i < t.count; ++i) {
    latency_.Record(1.0 + static_cast<double>(Random() % 4000) / 1000.0);  // 1-5 ms
  }
  t.latency = latency_.SnapshotAndReset();
  t.latency.UpdatePercentiles();
  t.stage_ms = {0.1, t.latency.count ? t.latency.sum_ms / static_cast<double>(t.count) : 0, 0.05};
  t.throughput_rps = t.window_s > 0 ? static_cast<double>(t.count) / t.window_s : 0;
  t.predictions = t.count;
  t.confidence_mean = 0.9;
  t.confidence_std = 0.05;
  t.health = {48u << 20, 12.5, std::nullopt, 8ull << 30};
  t.seq = {stream_, ++counters_.numbered};
  ++counters_.windows;
  window_start_ms_ = now_ms;
  return Numbered(SimMessage::Kind::kWindow,
                  telemetry::DeviceTopic(profile_->fleet, name_, "telemetry"),
                  telemetry::EncodeTelemetry(t));
}

SimMessage SimDevice::Event(const Update& u, const Step& s, std::int64_t now_ms) {
  telemetry::EventMessage e;
  e.id = telemetry::NewMessageId();
  e.device = name_;
  e.ts = now_ms;
  e.event = s.event;
  e.deployment = static_cast<std::int64_t>(u.deployment);
  e.model = u.model;
  e.version = u.version;
  e.from = s.from;
  e.reason = s.reason;
  e.serial = u.serial;
  e.target = u.target;
  if (s.event == "parity_report") {
    const bool pass = s.reason == "parity passed";
    e.parity_json = nlohmann::json{
        {"pass", pass},
        {"samples", 360},
        {"top1_agreement", pass ? 1.0 : 0.41},
        {"accuracy", pass ? 0.992 : 0.4},
        {"simulated",
         true}}.dump();
  }
  e.seq = {stream_, ++counters_.numbered};
  ++counters_.events;
  return Numbered(SimMessage::Kind::kEvent,
                  telemetry::DeviceTopic(profile_->fleet, name_, "events"),
                  telemetry::EncodeEvent(e));
}

void SimDevice::TakeDue(std::int64_t now_ms, std::vector<SimMessage>* out) {
  for (SimMessage& m : immediate_) out->push_back(std::move(m));
  immediate_.clear();
  for (Update& u : updates_) {
    while (u.next < u.steps.size() && u.steps[u.next].at_ms <= now_ms) {
      const Step& s = u.steps[u.next++];
      out->push_back(Event(u, s, now_ms));
      if (s.event == "committed") {
        Commit(u);
        out->push_back(Status(true, 0, now_ms));  // serving changed: a fresh status
      } else if (s.event == "failed") {
        ++counters_.failed;
      }
    }
  }
  std::erase_if(updates_, [](const Update& u) { return u.next >= u.steps.size(); });
  if (now_ms >= next_window_ms_) {
    out->push_back(Window(now_ms));
    const std::int64_t window_ms = std::max<std::int64_t>(1, Ms(profile_->window_s));
    // Windows keep their period; a loop that fell behind sends one, not a burst, and counts the
    // periods it folded into it.
    const std::int64_t periods = (now_ms - next_window_ms_) / window_ms + 1;
    counters_.windows_late += static_cast<std::uint64_t>(periods - 1);
    next_window_ms_ += window_ms * periods;
  }
  if (now_ms >= next_event_ms_) {
    const auto& [model, slot] = *active_.begin();
    Update report;
    report.model = model;
    report.version = slot.version;
    out->push_back(Event(report, {now_ms, "parity_report", "committed", "parity passed"}, now_ms));
    next_event_ms_ = now_ms + std::max<std::int64_t>(1, Ms(profile_->event_every_s));
  }
}

void SimDevice::OnConnected(std::int64_t now_ms) {
  const std::int64_t window_ms = std::max<std::int64_t>(1, Ms(profile_->window_s));
  if (next_window_ms_ < now_ms) {
    next_window_ms_ += window_ms * ((now_ms - next_window_ms_) / window_ms);
  }
}

std::int64_t SimDevice::NextDue() const {
  if (!immediate_.empty()) return 0;
  std::int64_t due = std::min(next_window_ms_, next_event_ms_);
  for (const Update& u : updates_) {
    if (u.next < u.steps.size()) due = std::min(due, u.steps[u.next].at_ms);
  }
  return due;
}

void SimDevice::OnDesired(const std::string& topic, std::string_view payload, std::int64_t now_ms) {
  const std::string source = "desired state on " + topic;
  std::string target = "device/" + name_;
  if (auto parts = telemetry::ParseTopic(topic); parts && parts->kind == "group") {
    target = "group/" + parts->name;
  }
  if (payload.empty()) return;  // a cleared retained document
  auto envelope =
      manifests::SignedEnvelope::FromText(payload, source, manifests::kMaxDesiredStateBytes);
  if (!envelope) return Reject(target, 0, envelope.error().message, now_ms);
  auto desired = manifests::DesiredState::FromJson(envelope->signed_body, source);
  if (!desired) return Reject(target, 0, desired.error().message, now_ms);
  std::uint64_t& last = last_serial_[topic];
  if (desired->serial <= last) return;  // a replay (or the retained copy after a reconnect)
  last = desired->serial;
  ++counters_.desired;
  for (const manifests::DesiredModel& m : desired->models) {
    const std::string version = m.version.ToString();
    auto it = active_.find(m.name);
    if (it != active_.end() && it->second.version == version &&
        it->second.sha256 == m.bundle.sha256) {
      continue;  // already runs it: an agent starts no deployment
    }
    Begin(target, desired->serial, m.name, version, m.bundle.sha256, now_ms);
  }
}

void SimDevice::Begin(const std::string& target, std::uint64_t serial, const std::string& model,
                      const std::string& version, const std::string& sha256, std::int64_t now_ms) {
  Update u;
  u.deployment = next_deployment_++;
  u.serial = serial;
  u.target = target;
  u.model = model;
  u.version = version;
  u.sha256 = sha256;
  const bool fail = fails_updates_ && !(model == profile_->model && version == profile_->version);
  std::vector<std::string> events;
  if (fail) {
    events.assign(std::begin(kFailure), std::end(kFailure));
  } else {
    events.assign(std::begin(kSuccess), std::end(kSuccess));
  }
  const double step_ms = profile_->update_s * 1000.0 / static_cast<double>(events.size());
  std::string from = "pending";
  for (std::size_t i = 0; i < events.size(); ++i) {
    Step s;
    s.at_ms = now_ms + std::llround(step_ms * static_cast<double>(i + 1));
    s.event = events[i];
    s.from = from;
    if (events[i] == "parity_report") {
      s.reason =
          fail ? "parity failed: top-1 agreement 0.41 below 0.99 (simulated)" : "parity passed";
    } else if (events[i] == "failed") {
      s.reason = "parity failed: top-1 agreement 0.41 below 0.99 (simulated)";
    }
    if (events[i] != "parity_report") from = events[i];
    u.steps.push_back(std::move(s));
  }
  updates_.push_back(std::move(u));
}

void SimDevice::Reject(const std::string& target, std::uint64_t serial, const std::string& reason,
                       std::int64_t now_ms) {
  ++counters_.rejected;
  Update u;
  u.serial = serial;
  u.target = target;
  immediate_.push_back(Event(u, {now_ms, "rejected", "", reason}, now_ms));
}

void SimDevice::Commit(const Update& u) {
  ++counters_.committed;
  auto it = active_.find(u.model);
  std::string slot = "A";
  if (it != active_.end()) {
    slot = it->second.slot == "A" ? "B" : "A";
    standby_[u.model] = it->second;
  }
  active_[u.model] = {slot, u.version, u.sha256};
}

}  // namespace edgefleet::deploy
