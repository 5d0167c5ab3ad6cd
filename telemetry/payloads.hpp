// The messages an agent publishes (ARCHITECTURE.md "Desired state and MQTT topics", "Telemetry")
// and the collector reads: their topics, their C++ shape, JSON encoding and field-precise parsing.
// Each payload has a JSON Schema in manifests/schema/ (status, telemetry, event .schema.json);
// tests check encoder, parser and schema agree.
//
// Every message carries a unique "id" (a random UUID v4) and the device's clock "ts" (Unix ms);
// the collector deduplicates by id, so at-least-once delivery never counts twice.
//
// Thread safety: free functions on plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "telemetry/latency_histogram.hpp"

namespace edgefleet::telemetry {

inline constexpr std::string_view kTopicRoot = "edgefleet/v1";
// Payloads larger than this are refused by the parsers (and by the agent for desired state).
inline constexpr std::size_t kMaxPayloadBytes = 64 * 1024;

// "edgefleet/v1/<fleet>/device/<device>/<leaf>" (leaf: status, telemetry, events, desired).
std::string DeviceTopic(std::string_view fleet, std::string_view device, std::string_view leaf);
// "edgefleet/v1/<fleet>/group/<group>/desired".
std::string GroupDesiredTopic(std::string_view fleet, std::string_view group);

struct TopicParts {
  std::string fleet;
  std::string kind;  // "device" or "group"
  std::string name;  // device or group name
  std::string leaf;  // status, telemetry, events, desired
};
// Splits a topic under kTopicRoot; kInvalidArgument naming the topic when it is not one of ours.
Result<TopicParts> ParseTopic(std::string_view topic);

// A random UUID v4 (OpenSSL RAND_bytes), lower-case with dashes.
std::string NewMessageId();

// ---- status (retained; birth record and last will) ----
struct SlotInfo {
  std::string slot;  // "A" or "B"
  std::string version;
  std::string sha256;
};
struct ModelStatus {
  std::string name;
  std::optional<SlotInfo> active;
  std::optional<SlotInfo> standby;  // the other slot when it holds a committed model
};
struct BackendInfo {
  std::string name;
  std::string version;
  std::vector<std::string> formats;  // model formats it loads ("onnx", ...); may be empty
  std::vector<std::string> devices;  // where it runs ("cpu", ...); may be empty
};
struct StatusMessage {
  std::string id;
  std::string device;
  std::string fleet;
  std::int64_t ts = 0;
  bool online = true;  // false: the last will (or a clean shutdown)
  std::string agent_version;
  std::vector<std::string> groups;
  std::vector<BackendInfo> backends;
  std::vector<ModelStatus> models;
  std::uint64_t connection = 0;  // the agent's connection counter (0 in the last will)
  std::uint64_t outbox_pending = 0;
  std::uint64_t outbox_dropped = 0;
};

// ---- the device's message sequence (telemetry windows and events; "seq" in the JSON) ----
// The outbox numbers each telemetry window and event 1, 2, 3, ... within a stream (see
// telemetry/outbox.hpp), so the collector can count the numbers that never arrived. Agents
// before sequence numbers send none: n 0, stream empty, and nothing is counted for them.
struct MessageSeq {
  std::string stream;  // 16 lower-case hex digits
  std::uint64_t n = 0;
};

// ---- telemetry (one message per model version and window) ----
struct StageMs {  // mean per successful request in the window
  double pre = 0;
  double infer = 0;
  double post = 0;
};
struct Health {
  std::uint64_t rss_bytes = 0;
  double cpu_pct = 0;                 // of one CPU, over the window (may exceed 100 on several)
  std::optional<double> temp_c;       // absent when /sys/class/thermal has no zone
  std::uint64_t disk_free_bytes = 0;  // of the state directory's file system
};
struct TelemetryWindow {
  std::string id;
  std::string device;
  std::int64_t ts = 0;        // end of the window, Unix ms
  std::int64_t start_ts = 0;  // start of the window, Unix ms
  double window_s = 0;
  std::string model;
  std::string version;
  std::string slot;          // "A" or "B"
  std::string role;          // "active", "candidate", "previous"
  std::uint64_t count = 0;   // infer requests answered (any outcome)
  std::uint64_t errors = 0;  // of them, failed (4xx + 5xx)
  std::uint64_t server_errors = 0;
  LatencySnapshot latency;  // successful requests
  StageMs stage_ms;
  double throughput_rps = 0;  // count / window_s
  std::uint64_t labeled = 0;  // feedback in this window
  std::uint64_t correct = 0;
  std::optional<double> golden_accuracy;  // parity accuracy at install, when labeled
  std::optional<double> shadow_agree;     // when shadowing
  std::uint64_t predictions = 0;          // top-1 predictions in this window
  double confidence_mean = 0;
  double confidence_std = 0;
  Health health;
  std::uint64_t outbox_dropped = 0;  // the outbox's drop counter when the window closed
  MessageSeq seq;
};

// ---- events (update lifecycle) ----
struct EventMessage {
  std::string id;
  std::string device;
  std::int64_t ts = 0;
  // A deployment state entered (downloading, verifying, unpacking, loading, parity, activating,
  // watching, committed, failed, rolling_back, rolled_back, abandoned), "parity_report", or
  // "rejected" (a desired state or model entry refused before any deployment started).
  std::string event;
  std::int64_t deployment = 0;  // 0 when none
  std::string model;
  std::string version;
  std::string from;  // previous state; empty when none
  std::string reason;
  std::uint64_t serial = 0;  // desired-state serial when known
  std::string target;        // "device/<name>", "group/<name>" or "offline" when known
  std::string parity_json;   // the parity report (JSON object text) for "parity_report"; else empty
  MessageSeq seq;
};

std::string EncodeStatus(const StatusMessage& m);
std::string EncodeTelemetry(const TelemetryWindow& m);
std::string EncodeEvent(const EventMessage& m);

// Parsers refuse payloads larger than kMaxPayloadBytes (kLimit), and (kParse, naming the field,
// expected vs found) payloads that are not JSON, miss a required field, have a wrong type, or
// carry unknown keys (other than x-* extensions) at any level. "latency_ms" is re-derived from its
// le_* buckets (percentiles recomputed).
Result<StatusMessage> ParseStatus(std::string_view text);
// ParseTelemetry tries the fast path first (telemetry_fast_path.hpp) and this reference parser
// (nlohmann::json and the field reader) when that does not accept the text; the reference is the
// one that explains a refusal. Public for the tests and the fuzz target that compare the two.
Result<TelemetryWindow> ParseTelemetry(std::string_view text);
Result<TelemetryWindow> ParseTelemetryReference(std::string_view text);
Result<EventMessage> ParseEvent(std::string_view text);

// Field checks both telemetry parsers share.
bool IsMessageId(std::string_view id);  // 1 to 64 characters from [A-Za-z0-9-]
bool IsSeqStream(std::string_view s);   // 16 lower-case hex digits
bool IsSlot(std::string_view slot);     // "A" or "B"
bool IsRole(std::string_view role);     // "active", "candidate" or "previous"
bool IsSemVer(std::string_view text);   // a version manifests::SemVer::Parse accepts

}  // namespace edgefleet::telemetry
