-- Collector schema 6: what the store writes per message no longer grows with the fleet, and the
-- fleet summary no longer parses every device's status. Three parts: telemetry windows indexed
-- by their 10-second bucket first, the hours each device has windows in (window_hours), and the
-- active versions of each device's newest status (device_active).
-- windows_by_series (device, model, version, ts, stream, n) put each device's windows at its own
-- end of the index, so every commit rewrote one leaf page per device: at 10,000 devices two
-- thirds of the pages a commit wrote, and the store's cost per message grew from 28 to 70 us
-- over five minutes (bench/RESULTS.md, runs 9 and 10). The same key led by ts / 10000 keeps one
-- device's windows of one bucket together (one seek reads them) while a commit's new entries
-- share the few pages of the newest buckets. The key is the same set of columns, so the same
-- rows are duplicates as before. Reads of one device or series walk its buckets
-- (fleet_view.cpp); collector_sql::kWindowBucketMs is the 10000 here.
DROP INDEX windows_by_series;
CREATE UNIQUE INDEX windows_by_time ON windows ((ts / 10000), device, model, version, ts, stream, n);

-- The hours in which each device has windows (ts / 3600000, collector_sql::kWindowHourMs): a read
-- of one device's windows walks the buckets of these hours only. A row is added by a device's
-- first window of an hour; the later ones find it and write nothing.
CREATE TABLE window_hours (
  device TEXT NOT NULL,
  hour   INTEGER NOT NULL,
  PRIMARY KEY (device, hour)
) STRICT, WITHOUT ROWID;
INSERT INTO window_hours SELECT DISTINCT device, ts / 3600000 FROM windows;

-- The active version of each model in each device's newest status (its status_json), written
-- with the status: the fleet summary counts these rows instead of parsing every stored status
-- (45 ms at 10,000 devices, on every /api/summary).
CREATE TABLE device_active (
  device  TEXT NOT NULL,
  model   TEXT NOT NULL,
  version TEXT NOT NULL,
  PRIMARY KEY (device, model, version)
) STRICT, WITHOUT ROWID;
INSERT OR IGNORE INTO device_active
SELECT d.device, json_extract(m.value, '$.name'), json_extract(m.value, '$.active.version')
FROM devices d, json_each(d.status_json, '$.models') m
WHERE d.status_json IS NOT NULL AND json_valid(d.status_json)
  AND json_type(m.value, '$.active') = 'object' AND json_type(m.value, '$.name') = 'text'
  AND json_type(m.value, '$.active.version') = 'text';
