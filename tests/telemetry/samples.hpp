// Sample payload messages shared by the payload tests and the schema example writer: each
// message with every optional field present, and with every optional field absent.
#pragma once

#include "telemetry/latency_histogram.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::telemetry::testing {

inline StatusMessage FullStatus() {
  StatusMessage m;
  m.id = "3f1c9a6e-2b7d-4e0a-9c5b-8d7e6f5a4b3c";
  m.device = "box-17";
  m.fleet = "demo";
  m.ts = 1763700000123;
  m.online = true;
  m.agent_version = "0.1.0";
  m.groups = {"lab", "canary"};
  m.backends = {{"opencv", "4.6.0", {"onnx"}, {"cpu"}}, {"torch", "1.13.1", {"torchscript"}, {}}};
  m.models = {
      {"digits", SlotInfo{"B", "1.2.0", std::string(64, 'b')},
       SlotInfo{"A", "1.1.0", std::string(64, 'a')}},
      {"faces", SlotInfo{"A", "2.0.0-rc.1", std::string(64, 'c')}, std::nullopt},
      {"unused", std::nullopt, std::nullopt},
  };
  m.connection = 3;
  m.outbox_pending = 12;
  m.outbox_dropped = 1;
  return m;
}

// The last will: the same shape, offline, with every list empty and every counter 0.
inline StatusMessage LastWill() {
  StatusMessage m = FullStatus();
  m.id = "will-1";
  m.online = false;
  m.groups.clear();
  m.backends.clear();
  m.models.clear();
  m.connection = m.outbox_pending = m.outbox_dropped = 0;
  return m;
}

inline LatencySnapshot SampleLatency() {
  LatencyHistogram h;
  for (double ms : {0.05, 0.3, 0.9, 4.0, 11.9, 11.9, 12.5, 16.0, 30.1, 41.2, 20000.0}) h.Record(ms);
  return h.Snapshot();
}

inline TelemetryWindow FullWindow() {
  TelemetryWindow m;
  m.id = "8a0e3b5c-1d2f-4a6b-8c9d-0e1f2a3b4c5d";
  m.device = "box-17";
  m.ts = 1763700010000;
  m.start_ts = 1763700000000;
  m.window_s = 10;
  m.model = "digits";
  m.version = "1.2.0";
  m.slot = "B";
  m.role = "candidate";
  m.count = 14;
  m.errors = 3;
  m.server_errors = 1;
  m.latency = SampleLatency();
  m.stage_ms = {1.25, 10.125, 0.5};
  m.throughput_rps = 1.4;
  m.labeled = 40;
  m.correct = 37;
  m.golden_accuracy = 0.98;
  m.shadow_agree = 0.96;
  m.predictions = 11;
  m.confidence_mean = 0.83;
  m.confidence_std = 0.09;
  m.health = {81234944, 37.5, -4.5, 1234567890};
  m.outbox_dropped = 2;
  m.seq = {"00c0ffee12345678", 4097};
  return m;
}

// No golden accuracy, no shadowing, no thermal zone, no requests: counters, latency, stages and
// accuracy all zero.
inline TelemetryWindow MinimalWindow() {
  const TelemetryWindow full = FullWindow();
  TelemetryWindow m;
  m.id = "w";
  m.device = full.device;
  m.window_s = 0.5;
  m.model = full.model;
  m.version = full.version;
  m.slot = "A";
  m.role = "active";
  m.health.rss_bytes = full.health.rss_bytes;
  return m;
}

inline EventMessage ParityEvent() {
  EventMessage m;
  m.id = "5b2a1c0d-9e8f-4a7b-b6c5-d4e3f2a1b0c9";
  m.device = "box-17";
  m.ts = 1763700005000;
  m.event = "parity_report";
  m.deployment = 42;
  m.model = "digits";
  m.version = "1.2.0";
  m.from = "parity";
  m.reason = "";
  m.serial = 7;
  m.target = "group/lab";
  // Compact with sorted keys: what the parser gives back.
  m.parity_json =
      R"({"accuracy":0.98,"passed":true,"sets":[{"max_abs_diff":1e-06,"name":"heldout","top1_agreement":1.0}]})";
  m.seq = {"00c0ffee12345678", 4098};
  return m;
}

// A desired state refused before any deployment: no deployment, model, version, target or parity.
inline EventMessage RejectedEvent() {
  EventMessage m;
  m.id = "e-2";
  m.device = ParityEvent().device;
  m.ts = 1763700006000;
  m.event = "rejected";
  m.reason = "desired: signed.serial: expected an integer >= 0, found -1\nsecond line";
  return m;
}

}  // namespace edgefleet::telemetry::testing
