// `edgefleet simulate`: a load tool that plays N devices against a broker, one MQTT connection
// each, with the payloads a real agent sends (deploy/sim_device.hpp), so the collector and
// rollout figures of bench/RESULTS.md can be reproduced by anyone.
//
// Bounded: at most kMaxSimDevices devices for at most kMaxSimDuration, and a broker on loopback
// unless allow_remote. Connections open at connect_rate per second; every device sends its birth
// status (retained, QoS 1, with its last will), a telemetry window per window_s and an event per
// event_every_s (QoS 1), and answers desired state (device and group topics) with the event
// sequence of a real agent, failing updates on fail_share of the devices (chosen by a hash of
// the name, so the same devices fail in every run). At the end (duration or SIGTERM/SIGINT) each
// device publishes its offline status and disconnects; the report (JSON) says what was sent and
// acknowledged, per kind, so a collector's counts can be checked against it.
//
// Thread safety: Simulate runs on the calling thread and starts no other.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

inline constexpr std::size_t kMaxSimDevices = 20000;
inline constexpr std::chrono::hours kMaxSimDuration{24};

struct SimulateOptions {
  std::string broker;  // HOST:PORT
  std::string fleet;
  std::size_t devices = 100;
  std::chrono::milliseconds duration{std::chrono::seconds(60)};
  std::string prefix = "sim-";  // devices are <prefix>00001, <prefix>00002, ...
  std::vector<std::string> groups;
  std::string model = "digits";
  std::string version = "1.0.0";
  double window_s = 1;
  double event_every_s = 60;
  double update_s = 2;
  double fail_share = 0;            // [0, 1]
  std::size_t connect_rate = 1000;  // new connections per second
  // 0: read what the broker sends each connection as it arrives. S > 0 (at most 10, under the
  // keepalive): once connected, read each connection every S seconds, so a PUBACK costs no
  // read of its own (about one syscall less per message, the simulator's largest cost after
  // the send); desired state is then seen up to S late. At the end every connection is read
  // until its PUBACKs are in, as without it.
  double read_every_s = 0;
  std::string username;
  std::string password;
  bool allow_remote = false;
  std::optional<std::filesystem::path> report;  // also write the report here
};

Status Simulate(const SimulateOptions& options, std::ostream& out);

}  // namespace edgefleet::deploy
