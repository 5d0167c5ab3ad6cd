-- PostgreSQL form of deploy/collector/collector_migrations/0001_initial.sql: the same tables, columns and
-- meaning, with BIGINT, DOUBLE PRECISION and TEXT COLLATE "C" (names sort by their bytes, as in
-- SQLite). Keep the two directories in step: version N here is version N there.
-- Collector schema 1: devices, telemetry windows, events, and running totals per device, model
-- and version. Times named *_ms are milliseconds since the Unix epoch (UTC): `ts`, `start_ts` and
-- `status_ts` are the device's clock as published; `received_ms`, `last_seen_ms` and
-- `offline_since_ms` are the collector's clock. Message ids are the agents' UUIDs; a message whose
-- id is already stored is a duplicate (at-least-once delivery) and is counted, not stored again.

-- One row per device (the device name is the MQTT username = certificate CN, taken from the topic).
CREATE TABLE devices (
  device           TEXT COLLATE "C" PRIMARY KEY NOT NULL CHECK (length(device) > 0),
  fleet            TEXT COLLATE "C" NOT NULL,            -- the fleet of the device's newest message's topic
  online           BIGINT NOT NULL CHECK (online IN (0, 1)),
  last_seen_ms     BIGINT,                  -- NULL: only the broker (last will) spoke for it
  offline_since_ms BIGINT,                  -- when the last will or a clean offline arrived
  status_id        TEXT COLLATE "C",                     -- id of the last status applied (birth, offline, will)
  status_ts        BIGINT,                  -- device clock of the newest applied full status
  agent_version    TEXT COLLATE "C",
  connection       BIGINT,                  -- the agent's connection counter in that status
  status_json      TEXT COLLATE "C"                      -- that status, as published (never the last will)
);

-- One row per telemetry window (one model version on one device). b00..b16 are the cumulative
-- latency bucket counts for telemetry::kLatencyBoundsMs (0.1 ms .. 10 s) and +inf, so windows add
-- up bucket by bucket and merged percentiles come from the sums.
CREATE TABLE windows (
  id              TEXT COLLATE "C" PRIMARY KEY NOT NULL,
  device          TEXT COLLATE "C" NOT NULL,
  fleet           TEXT COLLATE "C" NOT NULL,
  model           TEXT COLLATE "C" NOT NULL,
  version         TEXT COLLATE "C" NOT NULL,
  slot            TEXT COLLATE "C" NOT NULL,
  role            TEXT COLLATE "C" NOT NULL,
  ts              BIGINT NOT NULL,
  start_ts        BIGINT NOT NULL,
  window_s        DOUBLE PRECISION NOT NULL,
  received_ms     BIGINT NOT NULL,
  count           BIGINT NOT NULL,
  errors          BIGINT NOT NULL,
  server_errors   BIGINT NOT NULL,
  latency_count   BIGINT NOT NULL,
  latency_sum_ms  DOUBLE PRECISION NOT NULL,
  latency_max_ms  DOUBLE PRECISION NOT NULL,
  p50_ms          DOUBLE PRECISION NOT NULL,
  p99_ms          DOUBLE PRECISION NOT NULL,
  b00 BIGINT NOT NULL, b01 BIGINT NOT NULL, b02 BIGINT NOT NULL, b03 BIGINT NOT NULL,
  b04 BIGINT NOT NULL, b05 BIGINT NOT NULL, b06 BIGINT NOT NULL, b07 BIGINT NOT NULL,
  b08 BIGINT NOT NULL, b09 BIGINT NOT NULL, b10 BIGINT NOT NULL, b11 BIGINT NOT NULL,
  b12 BIGINT NOT NULL, b13 BIGINT NOT NULL, b14 BIGINT NOT NULL, b15 BIGINT NOT NULL,
  b16 BIGINT NOT NULL,
  labeled         BIGINT NOT NULL,
  correct         BIGINT NOT NULL,
  golden_accuracy DOUBLE PRECISION,
  shadow_agree    DOUBLE PRECISION,
  confidence_mean DOUBLE PRECISION NOT NULL,
  confidence_std  DOUBLE PRECISION NOT NULL,
  rss_bytes       BIGINT NOT NULL,
  cpu_pct         DOUBLE PRECISION NOT NULL,
  temp_c          DOUBLE PRECISION,
  disk_free_bytes BIGINT NOT NULL,
  json            TEXT COLLATE "C" NOT NULL              -- the message as published
);
CREATE INDEX windows_by_series ON windows (device, model, version, ts);
CREATE INDEX windows_by_ts ON windows (ts);

-- Update lifecycle events.
CREATE TABLE events (
  id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
  device      TEXT COLLATE "C" NOT NULL,
  fleet       TEXT COLLATE "C" NOT NULL,
  ts          BIGINT NOT NULL,
  received_ms BIGINT NOT NULL,
  event       TEXT COLLATE "C" NOT NULL,
  deployment  BIGINT NOT NULL,
  model       TEXT COLLATE "C" NOT NULL,
  version     TEXT COLLATE "C" NOT NULL,
  from_state  TEXT COLLATE "C" NOT NULL,
  reason      TEXT COLLATE "C" NOT NULL,
  serial      BIGINT NOT NULL,
  target      TEXT COLLATE "C" NOT NULL,
  json        TEXT COLLATE "C" NOT NULL                  -- the message as published
);
CREATE INDEX events_by_device_ts ON events (device, ts);
CREATE INDEX events_by_ts ON events (ts);

-- Sums over every window ever stored per device, model and version, kept in the transaction that
-- stores the window, so /metrics counters are monotonic and a scrape never scans `windows`.
CREATE TABLE totals (
  device          TEXT COLLATE "C" NOT NULL,
  model           TEXT COLLATE "C" NOT NULL,
  version         TEXT COLLATE "C" NOT NULL,
  windows         BIGINT NOT NULL,
  requests        BIGINT NOT NULL,
  errors          BIGINT NOT NULL,
  latency_count   BIGINT NOT NULL,
  latency_sum_ms  DOUBLE PRECISION NOT NULL,
  latency_max_ms  DOUBLE PRECISION NOT NULL,
  b00 BIGINT NOT NULL, b01 BIGINT NOT NULL, b02 BIGINT NOT NULL, b03 BIGINT NOT NULL,
  b04 BIGINT NOT NULL, b05 BIGINT NOT NULL, b06 BIGINT NOT NULL, b07 BIGINT NOT NULL,
  b08 BIGINT NOT NULL, b09 BIGINT NOT NULL, b10 BIGINT NOT NULL, b11 BIGINT NOT NULL,
  b12 BIGINT NOT NULL, b13 BIGINT NOT NULL, b14 BIGINT NOT NULL, b15 BIGINT NOT NULL,
  b16 BIGINT NOT NULL,
  labeled         BIGINT NOT NULL,
  correct         BIGINT NOT NULL,
  last_ts         BIGINT NOT NULL,          -- newest window end (device clock)
  last_slot       TEXT COLLATE "C" NOT NULL,             -- slot of that window
  PRIMARY KEY (device, model, version)
);
