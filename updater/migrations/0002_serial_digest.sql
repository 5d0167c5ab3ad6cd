-- Journal schema 2: the digest (hex SHA-256 of the canonical signed body) of the desired-state
-- document accepted with each serial. A document re-read with the same serial is the same
-- document only if its digest matches; different content under an accepted serial is a replay.
ALTER TABLE serials ADD COLUMN digest TEXT NOT NULL DEFAULT '';
