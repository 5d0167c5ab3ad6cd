-- Collector schema 1: devices, telemetry windows, events, and running totals per device, model
-- and version. Times named *_ms are milliseconds since the Unix epoch (UTC): `ts`, `start_ts` and
-- `status_ts` are the device's clock as published; `received_ms`, `last_seen_ms` and
-- `offline_since_ms` are the collector's clock. Message ids are the agents' UUIDs; a message whose
-- id is already stored is a duplicate (at-least-once delivery) and is counted, not stored again.

-- One row per device (the device name is the MQTT username = certificate CN, taken from the topic).
CREATE TABLE devices (
  device           TEXT PRIMARY KEY NOT NULL CHECK (length(device) > 0),
  fleet            TEXT NOT NULL,            -- the fleet of the device's newest message's topic
  online           INTEGER NOT NULL CHECK (online IN (0, 1)),
  last_seen_ms     INTEGER,                  -- NULL: only the broker (last will) spoke for it
  offline_since_ms INTEGER,                  -- when the last will or a clean offline arrived
  status_id        TEXT,                     -- id of the last status applied (birth, offline, will)
  status_ts        INTEGER,                  -- device clock of the newest applied full status
  agent_version    TEXT,
  connection       INTEGER,                  -- the agent's connection counter in that status
  status_json      TEXT                      -- that status, as published (never the last will)
) STRICT;

-- One row per telemetry window (one model version on one device). b00..b16 are the cumulative
-- latency bucket counts for telemetry::kLatencyBoundsMs (0.1 ms .. 10 s) and +inf, so windows add
-- up bucket by bucket and merged percentiles come from the sums.
CREATE TABLE windows (
  id              TEXT PRIMARY KEY NOT NULL,
  device          TEXT NOT NULL,
  fleet           TEXT NOT NULL,
  model           TEXT NOT NULL,
  version         TEXT NOT NULL,
  slot            TEXT NOT NULL,
  role            TEXT NOT NULL,
  ts              INTEGER NOT NULL,
  start_ts        INTEGER NOT NULL,
  window_s        REAL NOT NULL,
  received_ms     INTEGER NOT NULL,
  count           INTEGER NOT NULL,
  errors          INTEGER NOT NULL,
  server_errors   INTEGER NOT NULL,
  latency_count   INTEGER NOT NULL,
  latency_sum_ms  REAL NOT NULL,
  latency_max_ms  REAL NOT NULL,
  p50_ms          REAL NOT NULL,
  p99_ms          REAL NOT NULL,
  b00 INTEGER NOT NULL, b01 INTEGER NOT NULL, b02 INTEGER NOT NULL, b03 INTEGER NOT NULL,
  b04 INTEGER NOT NULL, b05 INTEGER NOT NULL, b06 INTEGER NOT NULL, b07 INTEGER NOT NULL,
  b08 INTEGER NOT NULL, b09 INTEGER NOT NULL, b10 INTEGER NOT NULL, b11 INTEGER NOT NULL,
  b12 INTEGER NOT NULL, b13 INTEGER NOT NULL, b14 INTEGER NOT NULL, b15 INTEGER NOT NULL,
  b16 INTEGER NOT NULL,
  labeled         INTEGER NOT NULL,
  correct         INTEGER NOT NULL,
  golden_accuracy REAL,
  shadow_agree    REAL,
  confidence_mean REAL NOT NULL,
  confidence_std  REAL NOT NULL,
  rss_bytes       INTEGER NOT NULL,
  cpu_pct         REAL NOT NULL,
  temp_c          REAL,
  disk_free_bytes INTEGER NOT NULL,
  json            TEXT NOT NULL              -- the message as published
) STRICT;
CREATE INDEX windows_by_series ON windows (device, model, version, ts);
CREATE INDEX windows_by_ts ON windows (ts);

-- Update lifecycle events.
CREATE TABLE events (
  id          TEXT PRIMARY KEY NOT NULL,
  device      TEXT NOT NULL,
  fleet       TEXT NOT NULL,
  ts          INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  event       TEXT NOT NULL,
  deployment  INTEGER NOT NULL,
  model       TEXT NOT NULL,
  version     TEXT NOT NULL,
  from_state  TEXT NOT NULL,
  reason      TEXT NOT NULL,
  serial      INTEGER NOT NULL,
  target      TEXT NOT NULL,
  json        TEXT NOT NULL                  -- the message as published
) STRICT;
CREATE INDEX events_by_device_ts ON events (device, ts);
CREATE INDEX events_by_ts ON events (ts);

-- Sums over every window ever stored per device, model and version, kept in the transaction that
-- stores the window, so /metrics counters are monotonic and a scrape never scans `windows`.
CREATE TABLE totals (
  device          TEXT NOT NULL,
  model           TEXT NOT NULL,
  version         TEXT NOT NULL,
  windows         INTEGER NOT NULL,
  requests        INTEGER NOT NULL,
  errors          INTEGER NOT NULL,
  latency_count   INTEGER NOT NULL,
  latency_sum_ms  REAL NOT NULL,
  latency_max_ms  REAL NOT NULL,
  b00 INTEGER NOT NULL, b01 INTEGER NOT NULL, b02 INTEGER NOT NULL, b03 INTEGER NOT NULL,
  b04 INTEGER NOT NULL, b05 INTEGER NOT NULL, b06 INTEGER NOT NULL, b07 INTEGER NOT NULL,
  b08 INTEGER NOT NULL, b09 INTEGER NOT NULL, b10 INTEGER NOT NULL, b11 INTEGER NOT NULL,
  b12 INTEGER NOT NULL, b13 INTEGER NOT NULL, b14 INTEGER NOT NULL, b15 INTEGER NOT NULL,
  b16 INTEGER NOT NULL,
  labeled         INTEGER NOT NULL,
  correct         INTEGER NOT NULL,
  last_ts         INTEGER NOT NULL,          -- newest window end (device clock)
  last_slot       TEXT NOT NULL,             -- slot of that window
  PRIMARY KEY (device, model, version)
) STRICT;
