-- Collector schema 3: each device's message sequence. Agents number their telemetry windows and
-- events 1, 2, 3, ... within a stream that is fixed while their outbox file lives ("seq" in the
-- payloads); a number between the lowest and the highest one stored that was never stored is a
-- message lost somewhere between the device's outbox and this database (dropped by the outbox's
-- bounds, by a broker's queue, or by a collector). Counted from the lowest number stored, so a
-- collector that starts with an empty database under a running fleet counts nothing it never
-- could have had. Messages without "seq" (agents before it) are not counted here.
CREATE TABLE sequences (
  device     TEXT NOT NULL,
  stream     TEXT NOT NULL,
  first_n    INTEGER NOT NULL,           -- lowest number stored
  last_n     INTEGER NOT NULL,           -- highest number stored
  received   INTEGER NOT NULL,           -- messages stored (a duplicate id is not stored twice)
  updated_ms INTEGER NOT NULL,           -- collector clock of the newest one stored
  PRIMARY KEY (device, stream)
) STRICT;
