-- PostgreSQL form of deploy/collector/collector_migrations/0002_rollouts.sql.
-- Collector schema 2: the rollouts `edgefleet rollout` publishes on
-- edgefleet/v1/<fleet>/rollout/<id>/status (retained). One row per fleet and rollout id holding
-- the message with the newest `ts` (the publisher's clock); an older one is stale and changes
-- nothing. `ts`, `started_ts` and `finished_ts` are the publisher's clock (Unix ms, finished_ts 0
-- while the rollout runs), `received_ms` the collector's. The columns besides `json` are copies of
-- its fields for ordering and filtering; `json` is the message as published.
CREATE TABLE rollouts (
  fleet       TEXT COLLATE "C" NOT NULL,
  id          TEXT COLLATE "C" NOT NULL CHECK (length(id) BETWEEN 1 AND 64),
  ts          BIGINT NOT NULL,
  received_ms BIGINT NOT NULL,
  started_ts  BIGINT NOT NULL,
  finished_ts BIGINT NOT NULL,
  grp         TEXT COLLATE "C" NOT NULL,                 -- the target group ("group" is an SQL keyword)
  model       TEXT COLLATE "C" NOT NULL,
  version     TEXT COLLATE "C" NOT NULL,
  state       TEXT COLLATE "C" NOT NULL,
  json        TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (fleet, id)
);
CREATE INDEX rollouts_by_start ON rollouts (started_ts);
