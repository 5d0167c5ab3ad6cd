-- PostgreSQL form of deploy/collector/collector_migrations/0006_windows_by_time.sql.
-- Collector schema 6: telemetry windows are indexed by their 10-second bucket first, so a
-- commit's new entries share the pages of the newest buckets instead of touching one leaf per
-- device; one device's windows of one bucket stay together. Same key columns, same duplicates.
DROP INDEX windows_by_series;
CREATE UNIQUE INDEX windows_by_time ON windows ((ts / 10000), device, model, version, ts, stream, n);

-- The hours in which each device has windows (ts / 3600000): a read of one device's windows walks
-- the buckets of these hours only.
CREATE TABLE window_hours (
  device TEXT COLLATE "C" NOT NULL,
  hour   BIGINT NOT NULL,
  PRIMARY KEY (device, hour)
);
INSERT INTO window_hours SELECT DISTINCT device, ts / 3600000 FROM windows;

-- The active version of each model in each device's newest status, written with the status: the
-- fleet summary counts these rows instead of parsing every stored status.
CREATE TABLE device_active (
  device  TEXT COLLATE "C" NOT NULL,
  model   TEXT COLLATE "C" NOT NULL,
  version TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (device, model, version)
);
INSERT INTO device_active
SELECT d.device, m ->> 'name', m -> 'active' ->> 'version'
FROM devices d, jsonb_array_elements(d.status_json::jsonb -> 'models') m
WHERE d.status_json IS NOT NULL AND jsonb_typeof(m -> 'active') = 'object'
  AND m ->> 'name' IS NOT NULL AND m -> 'active' ->> 'version' IS NOT NULL
ON CONFLICT DO NOTHING;
