-- The invalidation threshold of the Apache edition's rollups (storage/timescale/rollups.py), the way TimescaleDB's
-- own continuous aggregates keep one.
--
-- The refresh recomputed [watermark - 1 hour, now - 1 minute) on every run, because the writer noted only batches
-- more than 30 minutes old: the hour covered events that arrived up to half an hour late. That is a whole hour of
-- minutes a minute, and at the legacy peak (8,500 events/s, 30 M events an hour) more than the refresh can recompute
-- (about 43,000 events/s, bench.storage). With a threshold the notes are exact, and the refresh recomputes only the
-- minutes past its watermark and the ranges actually written behind it:
-- * every transaction that writes events reads the threshold, after its rows (so it holds a transaction id), and
--   notes its batch in rollup_invalidations when the batch's oldest event is behind it (storage/timescale/writer.py);
-- * the refresh first raises the threshold to its new end in a transaction of its own, then waits until every
--   transaction that held an id at that moment has ended (pg_current_snapshot's running ids, pg_xact_status): a
--   writer that read the old threshold has committed, so its events are visible to what the refresh reads next,
--   and a writer's later statements read the new one (storage/timescale/rollups.py). No lock: a writer never waits
--   for the refresh, and a long writing transaction only defers the refresh (the rollups stay at their watermark,
--   and readers take the raw events past it).
--
-- A table of its own rather than a row of rollup_watermarks: the threshold moves at a different time (before the
-- recompute; the watermark after it), and a writer reads it in every write. One row per rollup family, named by
-- its minute rollup ('events_1m': every rollup is refreshed together, behind events_1m's watermark). Plain
-- PostgreSQL on both editions; the community edition never adds the row (TimescaleDB tracks its own
-- invalidations), so there the writers note nothing.
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
