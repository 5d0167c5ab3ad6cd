-- PostgreSQL form of deploy/collector/collector_migrations/0004_series.sql.
-- Collector schema 4: the fleet's windows summed per model version and 10-second bucket (by the
-- window's end, ts) as they are stored, so /api/series and the dashboard's charts read a few
-- hundred rows however many devices report (it read every device's windows of the last 15
-- minutes: 9 million rows at 10,000 devices). Buckets start at multiples of 10,000 ms.
CREATE TABLE series (
  model           TEXT COLLATE "C" NOT NULL,
  version         TEXT COLLATE "C" NOT NULL,
  bucket_ts       BIGINT NOT NULL,
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
  golden_sum      DOUBLE PRECISION NOT NULL,             -- golden accuracy summed over the windows with one
  golden_n        BIGINT NOT NULL,          -- and their count
  PRIMARY KEY (model, version, bucket_ts)
);

-- What an older collector stored, summed the same way.
INSERT INTO series
SELECT model, version, ts - (((ts % 10000) + 10000) % 10000), COUNT(*), SUM(count), SUM(errors),
       SUM(latency_count), SUM(latency_sum_ms), MAX(latency_max_ms),
       SUM(b00), SUM(b01), SUM(b02), SUM(b03), SUM(b04), SUM(b05), SUM(b06), SUM(b07), SUM(b08), SUM(b09), SUM(b10), SUM(b11), SUM(b12), SUM(b13), SUM(b14), SUM(b15), SUM(b16),
       SUM(labeled), SUM(correct), COALESCE(SUM(golden_accuracy), 0), COUNT(golden_accuracy)
FROM windows GROUP BY 1, 2, 3;
