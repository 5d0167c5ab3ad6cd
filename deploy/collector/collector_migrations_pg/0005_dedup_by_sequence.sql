-- PostgreSQL form of deploy/collector/collector_migrations/0005_dedup_by_sequence.sql.
-- Collector schema 5: a numbered telemetry window or event is a duplicate when the same message
-- (its device, series and time, and its stream and number: "seq") is already stored; a message
-- without "seq" (agents before it) when its id is. The id (a random UUID) was the primary key,
-- so every message inserted at a random place in an index as large as all the ids ever stored;
-- the unique key now extends windows_by_series and events_by_device_ts, whose entries grow at
-- one end per device. `stream` and `n` are NULL for a message without "seq" (NULLs never
-- conflict in a unique index, so those rows have a partial unique index on id). Existing rows
-- take "seq" from their stored message (read as json, which keeps the text as it is); a message
-- stored twice under two ids keeps the row received first (then the smaller id) as the numbered
-- one and the others as unnumbered rows, so nothing stored is lost.
ALTER TABLE windows DROP CONSTRAINT windows_pkey;
ALTER TABLE windows ADD COLUMN stream TEXT COLLATE "C", ADD COLUMN n BIGINT;
UPDATE windows SET stream = json::json -> 'seq' ->> 'stream', n = (json::json -> 'seq' ->> 'n')::bigint
WHERE json LIKE '%"seq"%' AND json::json -> 'seq' ->> 'stream' IS NOT NULL
  AND json::json -> 'seq' ->> 'n' ~ '^[0-9]{1,19}$';
UPDATE windows SET stream = NULL, n = NULL
FROM (SELECT ctid AS row, row_number() OVER (PARTITION BY device, model, version, ts, stream, n
                                             ORDER BY received_ms, id) AS k
      FROM windows WHERE n IS NOT NULL) d
WHERE windows.ctid = d.row AND d.k > 1;
DROP INDEX windows_by_series;
CREATE UNIQUE INDEX windows_by_series ON windows (device, model, version, ts, stream, n);
CREATE UNIQUE INDEX windows_by_id ON windows (id) WHERE n IS NULL;

ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD COLUMN stream TEXT COLLATE "C", ADD COLUMN n BIGINT;
UPDATE events SET stream = json::json -> 'seq' ->> 'stream', n = (json::json -> 'seq' ->> 'n')::bigint
WHERE json LIKE '%"seq"%' AND json::json -> 'seq' ->> 'stream' IS NOT NULL
  AND json::json -> 'seq' ->> 'n' ~ '^[0-9]{1,19}$';
UPDATE events SET stream = NULL, n = NULL
FROM (SELECT ctid AS row, row_number() OVER (PARTITION BY device, ts, stream, n
                                             ORDER BY received_ms, id) AS k
      FROM events WHERE n IS NOT NULL) d
WHERE events.ctid = d.row AND d.k > 1;
DROP INDEX events_by_device_ts;
CREATE UNIQUE INDEX events_by_device_ts ON events (device, ts, stream, n);
CREATE UNIQUE INDEX events_by_id ON events (id) WHERE n IS NULL;
