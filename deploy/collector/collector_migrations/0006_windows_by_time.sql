-- Collector schema 6: telemetry windows are indexed by their 10-second bucket first.
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
