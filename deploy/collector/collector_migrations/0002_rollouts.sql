-- Collector schema 2: the rollouts `edgefleet rollout` publishes on
-- edgefleet/v1/<fleet>/rollout/<id>/status (retained). One row per fleet and rollout id holding
-- the message with the newest `ts` (the publisher's clock); an older one is stale and changes
-- nothing. `ts`, `started_ts` and `finished_ts` are the publisher's clock (Unix ms, finished_ts 0
-- while the rollout runs), `received_ms` the collector's. The columns besides `json` are copies of
-- its fields for ordering and filtering; `json` is the message as published.
CREATE TABLE rollouts (
  fleet       TEXT NOT NULL,
  id          TEXT NOT NULL CHECK (length(id) BETWEEN 1 AND 64),
  ts          INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  started_ts  INTEGER NOT NULL,
  finished_ts INTEGER NOT NULL,
  grp         TEXT NOT NULL,                 -- the target group ("group" is an SQL keyword)
  model       TEXT NOT NULL,
  version     TEXT NOT NULL,
  state       TEXT NOT NULL,
  json        TEXT NOT NULL,
  PRIMARY KEY (fleet, id)
) STRICT;
CREATE INDEX rollouts_by_start ON rollouts (started_ts);
