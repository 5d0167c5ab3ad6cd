// The agent's configuration file (agent/SPEC.md "Config"): JSON, read field by field with
// manifests::FieldReader so every problem is reported with its JSON path; unknown fields are
// refused; relative paths are resolved against the config file's directory.
//
// Thread safety: AgentConfig is a plain value.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "runtime/plugin_backend.hpp"

namespace edgefleet::agent {

struct ApiConfig {
  std::string host = "127.0.0.1";
  int port = 0;
  bool shared_memory = true;  // inputs from POSIX shared memory (agent/shared_memory.hpp)
  // What decoding one raw image body may cost (runtime/image_decode.hpp): 16 MiB, within the
  // agent's 40 MiB memory budget, takes a 1920x1080 RGB frame.
  std::int64_t max_image_bytes = std::int64_t{16} << 20;
  // Also serve the API on this Unix socket (empty: TCP only), with this mode (octal string in the
  // config, e.g. "0660") and group, so that only apps in the group can infer.
  std::filesystem::path unix_socket;
  unsigned unix_socket_mode = 0660;
  std::string unix_socket_group;
};

struct DesiredStateConfig {
  std::filesystem::path file;  // empty: not set
  std::string url;             // empty: not set
  std::int64_t poll_ms = 1000;
};

struct DownloadConfig {
  std::int64_t connect_timeout_s = 10;
  std::int64_t low_speed_bytes_per_s = 5000;
  std::int64_t low_speed_time_s = 60;
  std::int64_t max_bytes_per_s = 0;
  std::int64_t reserve_bytes = 64ll << 20;
  std::int64_t max_attempts = 5;
  std::int64_t backoff_initial_ms = 500;
  std::int64_t backoff_max_ms = 30000;
  std::filesystem::path ca_file;
  std::filesystem::path client_cert;
  std::filesystem::path client_key;
};

struct RuntimeConfig {
  int threads = 1;
  int parallel_runs = 2;
};

struct WatchConfig {
  double max_extension_factor = 10;
  // A p95 latency breach also needs the candidate this many ms above the previous model.
  double min_p95_increase_ms = 1.0;
};

// The fleet link (issue 5): MQTT for status, telemetry, events and desired state. Off when host
// is empty.
struct MqttConfig {
  std::string host;  // empty: no MQTT
  int port = 1883;
  std::string client_id;                // empty: the device name
  std::string username;                 // empty: none (with client certificates, the broker
                                        // takes the identity from the certificate)
  std::filesystem::path password_file;  // first line is the password; empty: none
  std::int64_t keepalive_s = 30;
  std::filesystem::path ca_file;    // TLS on when set
  std::filesystem::path cert_file;  // client certificate (with key_file)
  std::filesystem::path key_file;
  std::int64_t reconnect_min_ms = 500;
  std::int64_t reconnect_max_ms = 30000;
};

struct TelemetryConfig {
  double window_s = 10;                       // one telemetry message per model version per window
  std::int64_t outbox_max_messages = 100000;  // the store-and-forward bound (count)
  std::int64_t outbox_max_age_s = 7 * 24 * 3600;  // ... and age
};

struct AgentConfig {
  std::filesystem::path path;  // the config file itself
  std::string device;
  std::string fleet;
  std::vector<std::string> groups;
  std::filesystem::path state_dir;
  std::filesystem::path trust_root;
  // Backend libraries (runtime/plugin_backend.hpp): every *.so in backends_dir is loaded at start;
  // empty means DefaultBackendsDir(). `backends`, when not empty, names the ones to use, in
  // order of preference (the others are unloaded); empty means all, in file-name order.
  // backend_options (a JSON object keyed by backend name) goes to each library as it is.
  std::filesystem::path backends_dir;
  std::vector<std::string> backends;
  std::string backend_options_json = "{}";
  ApiConfig api;
  DesiredStateConfig desired_state;
  DownloadConfig download;
  RuntimeConfig runtime;
  WatchConfig watch;
  MqttConfig mqtt;
  TelemetryConfig telemetry;
};

// Parses config text; `path` names the file in messages and anchors relative paths. Fails with
// kParse listing every problem ("agent.json: download.max_attempts: expected an integer >= 1,
// found 0").
Result<AgentConfig> ParseConfig(std::string_view text, const std::filesystem::path& path);
// Reads and parses the file (kIo when it cannot be read; at most 1 MiB).
Result<AgentConfig> LoadConfig(const std::filesystem::path& path);

// runtime::DefaultBackendsDir(): beside the executable.
using runtime::DefaultBackendsDir;

// The member `backend` of backend_options as JSON text ("{}" when there is none).
std::string BackendOptionsFor(const AgentConfig& config, std::string_view backend);

}  // namespace edgefleet::agent
