-- The invalidation threshold of the Apache edition's rollups (storage/timescale/rollups.py), the way TimescaleDB's
-- own continuous aggregates keep one.
--
-- The refresh recomputed [watermark - 1 hour, now - 1 minute) on every run, because the writer noted only batches
-- more than 30 minutes old: the hour covered events that arrived up to half an hour late. That is a whole hour of
-- minutes a minute, and at the legacy peak (8,500 events/s, 30 M events an hour) more than the refresh can recompute
-- (about 43,000 events/s, bench.storage). With a threshold the notes are exact, and the refresh recomputes only the
-- minutes past its watermark and the ranges actually written behind it:
-- * every transaction that writes events reads the threshold under FOR SHARE, held to commit, and notes its batch
--   in rollup_invalidations when the batch's oldest event is behind it (storage/timescale/writer.py);
-- * the refresh first raises the threshold to its new end in a transaction of its own, under LOCK TABLE ... IN
--   EXCLUSIVE MODE: that waits for the writers already holding the share lock (their events are committed, and
--   so visible, before the refresh reads them) and queues the writers after it, which then read the new threshold.
--
-- A table of its own rather than a row of rollup_watermarks: the refresh locks it whole (a row lock alone is
-- starved by writers whose share locks overlap), and rollup_watermarks is read by every series read and written
-- by the refresh at its end; the threshold also moves at a different time (before the recompute, the watermark
-- after it). One row per rollup family, named by its minute rollup ('events_1m': every rollup is refreshed
-- together, behind events_1m's watermark). Plain PostgreSQL on both editions; the community edition never adds
-- the row (TimescaleDB tracks its own invalidations), so there the writers note nothing.
CREATE TABLE rollup_thresholds (
    rollup    text        PRIMARY KEY,
    threshold timestamptz NOT NULL,  -- a write behind this is noted: the refresh has counted, or is counting, it
    moved_at  timestamptz NOT NULL DEFAULT now()
);

-- An upgraded store starts at its watermark, and its first refresh recomputes once the hour the old late allowance
-- would have (events written before this release, up to 30 minutes late, were not noted). A store never refreshed
-- has no threshold: its first refresh starts from the oldest event anyway.
INSERT INTO rollup_thresholds (rollup, threshold)
SELECT rollup, watermark FROM rollup_watermarks WHERE rollup = 'events_1m';
INSERT INTO rollup_invalidations (low, high)
SELECT watermark - INTERVAL '1 hour', watermark - INTERVAL '1 microsecond' FROM rollup_watermarks
 WHERE rollup = 'events_1m';
