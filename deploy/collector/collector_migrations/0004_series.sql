-- Collector schema 4: the fleet's windows summed per model version and 10-second bucket (by the
-- window's end, ts) as they are stored, so /api/series and the dashboard's charts read a few
-- hundred rows however many devices report (it read every device's windows of the last 15
-- minutes: 9 million rows at 10,000 devices). Buckets start at multiples of 10,000 ms.
CREATE TABLE series (
  model           TEXT NOT NULL,
  version         TEXT NOT NULL,
  bucket_ts       INTEGER NOT NULL,
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
  golden_sum      REAL NOT NULL,             -- golden accuracy summed over the windows with one
  golden_n        INTEGER NOT NULL,          -- and their count
  PRIMARY KEY (model, version, bucket_ts)
) STRICT;

-- What an older collector stored, summed the same way.
INSERT INTO series
SELECT model, version, ts - (((ts % 10000) + 10000) % 10000), COUNT(*), SUM(count), SUM(errors),
       SUM(latency_count), SUM(latency_sum_ms), MAX(latency_max_ms),
       SUM(b00), SUM(b01), SUM(b02), SUM(b03), SUM(b04), SUM(b05), SUM(b06), SUM(b07), SUM(b08), SUM(b09), SUM(b10), SUM(b11), SUM(b12), SUM(b13), SUM(b14), SUM(b15), SUM(b16),
       SUM(labeled), SUM(correct), COALESCE(SUM(golden_accuracy), 0), COUNT(golden_accuracy)
FROM windows GROUP BY 1, 2, 3;
