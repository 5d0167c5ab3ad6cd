-- Journal schema 1: models, deployments and their append-only transitions, desired-state serials.
-- Times are milliseconds since the Unix epoch (UTC). Versions are semver text; the journal
-- compares them in C++ (manifests::SemVer), since text order is not semver order.

-- One row per model the box has ever been asked to run. `active` is the last committed model
-- (what a restart serves); `previous` is kept for a manual rollback; `highest_version` only grows
-- (rollback protection).
CREATE TABLE models (
  name             TEXT PRIMARY KEY NOT NULL CHECK (length(name) > 0),
  active_slot      TEXT CHECK (active_slot IN ('A', 'B')),
  active_version   TEXT,
  active_sha256    TEXT,
  previous_slot    TEXT CHECK (previous_slot IN ('A', 'B')),
  previous_version TEXT,
  previous_sha256  TEXT,
  highest_version  TEXT,
  updated_ms       INTEGER NOT NULL,
  CHECK ((active_slot IS NULL) = (active_version IS NULL)),
  CHECK ((previous_slot IS NULL) = (previous_version IS NULL)),
  CHECK (active_slot IS NULL OR previous_slot IS NULL OR active_slot <> previous_slot)
) STRICT;

CREATE TABLE deployments (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  model           TEXT NOT NULL REFERENCES models(name),
  version         TEXT NOT NULL,
  bundle_url      TEXT NOT NULL,
  bundle_size     INTEGER NOT NULL CHECK (bundle_size >= 0),
  bundle_sha256   TEXT NOT NULL,
  serial          INTEGER NOT NULL CHECK (serial >= 0),
  target          TEXT NOT NULL,
  allow_downgrade INTEGER NOT NULL CHECK (allow_downgrade IN (0, 1)),
  state           TEXT NOT NULL,
  -- 1 while the state is not terminal; the partial unique index below allows one per model.
  in_progress     INTEGER NOT NULL CHECK (in_progress IN (0, 1)),
  slot            TEXT NOT NULL CHECK (slot IN ('A', 'B')),
  reason          TEXT NOT NULL DEFAULT '',
  download_bytes  INTEGER NOT NULL DEFAULT 0 CHECK (download_bytes >= 0),
  created_ms      INTEGER NOT NULL,
  updated_ms      INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX deployments_one_in_progress_per_model
  ON deployments(model) WHERE in_progress = 1;

-- Append-only history; `seq` orders it (AUTOINCREMENT: never reused, even after a crash).
CREATE TABLE transitions (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  deployment_id INTEGER NOT NULL REFERENCES deployments(id),
  from_state    TEXT,
  to_state      TEXT NOT NULL,
  reason        TEXT NOT NULL DEFAULT '',
  at_ms         INTEGER NOT NULL
) STRICT;

CREATE INDEX transitions_by_deployment ON transitions(deployment_id, seq);

CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions
BEGIN
  SELECT RAISE(ABORT, 'transitions are append-only');
END;

CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
BEGIN
  SELECT RAISE(ABORT, 'transitions are append-only');
END;

-- Last desired-state serial accepted per target ("device/box-1", "group/lab"): replay defence.
CREATE TABLE serials (
  target TEXT PRIMARY KEY NOT NULL,
  serial INTEGER NOT NULL CHECK (serial >= 0)
) STRICT;
