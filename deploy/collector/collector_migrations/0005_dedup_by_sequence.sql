-- Collector schema 5: a numbered telemetry window or event is a duplicate when the same message
-- (its device, series and time, and its stream and number: "seq") is already stored; a message
-- without "seq" (agents before it) when its id is. The id (a random UUID) was the primary key,
-- so every message inserted at a random place in an index as large as all the ids ever stored:
-- past the page cache, each one read pages back from the file and the writer fell behind at
-- 10,000 devices (bench/RESULTS.md, run 7). The unique key now starts with the index the reads
-- of one device already used, windows_by_series (device, model, version, ts) and
-- events_by_device_ts (device, ts), so each device's entries grow at one end and one index
-- instead of two takes a page per device per commit. `stream` and `n` are NULL for a message
-- without "seq" (NULLs never conflict in a unique index, so those rows have a partial unique
-- index on id). A number resent with another series or time (no agent does that) is stored
-- again, as one resent under another id was before.
--
-- SQLite cannot drop a primary key, so both tables are copied. The copy reads "seq" from each
-- stored message; a message stored twice under two ids (the old key allowed it) keeps the row
-- received first (then the smaller id) as the numbered one and the others as unnumbered rows, so
-- nothing stored is lost.
CREATE TABLE windows_5 (
  id              TEXT NOT NULL,
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
  json            TEXT NOT NULL,             -- the message as published
  stream          TEXT,                      -- "seq": the device's stream and number in it
  n               INTEGER
) STRICT;
INSERT INTO windows_5
SELECT *,
       CASE WHEN json_type(json, '$.seq.stream') = 'text' AND json_type(json, '$.seq.n') = 'integer'
            THEN json_extract(json, '$.seq.stream') END,
       CASE WHEN json_type(json, '$.seq.stream') = 'text' AND json_type(json, '$.seq.n') = 'integer'
            THEN json_extract(json, '$.seq.n') END
FROM windows ORDER BY rowid;
UPDATE windows_5 SET stream = NULL, n = NULL
WHERE rowid IN (SELECT r FROM (SELECT rowid AS r, row_number() OVER (
                                   PARTITION BY device, model, version, ts, stream, n
                                   ORDER BY received_ms, id) AS k
                               FROM windows_5 WHERE n IS NOT NULL) WHERE k > 1);
DROP TABLE windows;
ALTER TABLE windows_5 RENAME TO windows;
CREATE UNIQUE INDEX windows_by_series ON windows (device, model, version, ts, stream, n);
CREATE INDEX windows_by_ts ON windows (ts);
CREATE UNIQUE INDEX windows_by_id ON windows (id) WHERE n IS NULL;

CREATE TABLE events_5 (
  id          TEXT NOT NULL,
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
  json        TEXT NOT NULL,                 -- the message as published
  stream      TEXT,                          -- "seq", as in windows
  n           INTEGER
) STRICT;
INSERT INTO events_5
SELECT *,
       CASE WHEN json_type(json, '$.seq.stream') = 'text' AND json_type(json, '$.seq.n') = 'integer'
            THEN json_extract(json, '$.seq.stream') END,
       CASE WHEN json_type(json, '$.seq.stream') = 'text' AND json_type(json, '$.seq.n') = 'integer'
            THEN json_extract(json, '$.seq.n') END
FROM events ORDER BY rowid;
UPDATE events_5 SET stream = NULL, n = NULL
WHERE rowid IN (SELECT r FROM (SELECT rowid AS r, row_number() OVER (PARTITION BY device, ts, stream, n
                                   ORDER BY received_ms, id) AS k
                               FROM events_5 WHERE n IS NOT NULL) WHERE k > 1);
DROP TABLE events;
ALTER TABLE events_5 RENAME TO events;
CREATE UNIQUE INDEX events_by_device_ts ON events (device, ts, stream, n);
CREATE INDEX events_by_ts ON events (ts);
CREATE UNIQUE INDEX events_by_id ON events (id) WHERE n IS NULL;
