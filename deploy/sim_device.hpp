// One simulated device of `edgefleet simulate` (deploy/simulate.hpp): the messages a real agent
// publishes, built with the agent's own encoders (telemetry/payloads.hpp), at the times it would
// publish them: the birth status and last will, one telemetry window per window_s, an event every
// event_every_s, and the event sequence with which an agent answers a desired-state document
// (downloading ... committed, or failed at parity for a device that fails updates).
//
// No I/O and no clock of its own: the caller passes the time and sends what comes back, so the
// behaviour is tested without a broker.
//
// Thread safety: none; one thread owns a device.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telemetry/latency_histogram.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::deploy {

// What every simulated device shares.
struct SimProfile {
  std::string fleet;
  std::vector<std::string> groups;
  std::string model = "digits";  // the model every device runs at the start
  std::string version = "1.0.0";
  double window_s = 1;        // one telemetry window per model this often
  double event_every_s = 60;  // a parity_report event this often (0: none)
  double update_s = 2;        // from a desired state to its committed (or failed) event
  std::uint32_t requests_per_window = 10;
};

struct SimMessage {
  enum class Kind { kStatus, kWindow, kEvent };
  Kind kind = Kind::kWindow;
  std::string topic;
  std::string payload;
  bool retain = false;
};

class SimDevice final {
 public:
  // `fails_updates`: updates to any version other than the profile's fail at parity (a restore
  // to the starting version succeeds, as it would on a real box). `seed` makes the sequence
  // stream and the latencies reproducible.
  SimDevice(const SimProfile* profile, std::string name, bool fails_updates, std::uint64_t seed,
            std::int64_t now_ms);

  const std::string& name() const { return name_; }
  bool fails_updates() const { return fails_updates_; }
  // The device's and its groups' desired-state topics.
  std::vector<std::string> DesiredTopics() const;

  // The retained status: online (birth, after each CONNACK) or offline (last will, clean stop).
  SimMessage Status(bool online, std::uint64_t connection, std::int64_t now_ms) const;

  // Everything due at `now_ms` (windows, the periodic event, update steps), oldest first.
  void TakeDue(std::int64_t now_ms, std::vector<SimMessage>* out);
  // The earliest time something will be due.
  std::int64_t NextDue() const;
  // The device's connection came up at `now_ms`: window periods that passed while it had none
  // were not made (an agent's outbox would have held them) and are not the loop falling behind,
  // so they are skipped uncounted; the next window is due at the latest period boundary.
  void OnConnected(std::int64_t now_ms);

  // A message on one of DesiredTopics(). A document this device does not already run begins an
  // update (TakeDue then yields its events); one with a serial not above the last one taken from
  // the same topic is ignored, as an agent ignores a replay; one that does not parse yields a
  // "rejected" event naming why.
  void OnDesired(const std::string& topic, std::string_view payload, std::int64_t now_ms);

  struct Counters {
    std::uint64_t numbered = 0;  // windows + events, i.e. the sequence's highest number
    std::uint64_t windows = 0;
    // Window periods that passed while the loop was behind: each is folded into the next window
    // (which then covers the longer span), so a load figure can say it was not generated.
    std::uint64_t windows_late = 0;
    std::uint64_t events = 0;
    std::uint64_t desired = 0;  // documents taken (not ignored as replays)
    std::uint64_t rejected = 0;
    std::uint64_t committed = 0;
    std::uint64_t failed = 0;
  };
  const Counters& counters() const { return counters_; }

 private:
  struct Step {
    std::int64_t at_ms = 0;
    std::string event;  // a deployment state, or "parity_report"
    std::string from;
    std::string reason;
  };
  struct Update {
    std::uint64_t deployment = 0;
    std::uint64_t serial = 0;
    std::string target;  // "device/<name>" or "group/<name>"
    std::string model, version, sha256;
    std::vector<Step> steps;  // in order; the front is next
    std::size_t next = 0;
  };

  SimMessage Window(std::int64_t now_ms);
  SimMessage Event(const Update& u, const Step& s, std::int64_t now_ms);
  SimMessage Numbered(SimMessage::Kind kind, std::string topic, std::string payload);
  void Begin(const std::string& target, std::uint64_t serial, const std::string& model,
             const std::string& version, const std::string& sha256, std::int64_t now_ms);
  void Reject(const std::string& target, std::uint64_t serial, const std::string& reason,
              std::int64_t now_ms);
  void Commit(const Update& u);
  std::uint64_t Random();

  const SimProfile* profile_;
  std::string name_;
  bool fails_updates_;
  std::uint64_t rng_;
  std::string stream_;  // 16 hex digits
  std::int64_t window_start_ms_;
  std::int64_t next_window_ms_;
  std::int64_t next_event_ms_;
  std::map<std::string, telemetry::SlotInfo> active_;   // model -> what runs
  std::map<std::string, telemetry::SlotInfo> standby_;  // model -> the other slot
  std::map<std::string, std::uint64_t> last_serial_;    // desired topic -> serial taken
  std::vector<Update> updates_;                         // in progress, oldest first
  std::vector<SimMessage> immediate_;                   // due now (rejections)
  std::uint64_t next_deployment_ = 1;
  telemetry::LatencyHistogram latency_;
  Counters counters_;
};

}  // namespace edgefleet::deploy
