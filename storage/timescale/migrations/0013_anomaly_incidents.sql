-- Anomalies become incidents: overlapping or adjacent windows of one detector and entity (gap at most the
-- merge gap the scoring job passes, 1 h by default) are ONE row that grows. window_start/window_end are the
-- incident's span (first seen, last seen), score/severity/explanation/sample ids those of its peak window,
-- peak_at that window's start, and window_starts every window merged in (so a rerun over the same windows
-- changes nothing: storage/timescale/anomalies.py upsert); windows is their count.
ALTER TABLE anomalies ADD COLUMN peak_at       timestamptz;
ALTER TABLE anomalies ADD COLUMN window_starts timestamptz[] NOT NULL DEFAULT '{}';
ALTER TABLE anomalies ADD COLUMN windows       integer NOT NULL DEFAULT 1 CHECK (windows >= 1);

-- Rows stored before: each was one window, its own peak. (A row written without them by other code reads the
-- same way: peak_at NULL is its window_start, and an empty window_starts is its one window.)
UPDATE anomalies SET peak_at = window_start, window_starts = ARRAY[window_start];

-- The merge looks up an entity's incidents near the new windows.
CREATE INDEX anomalies_incident_idx ON anomalies (detector, entity_type, entity_value, window_end DESC);

-- Ranges of events written behind the scoring jobs (a bulk `auditwatch ingest`, a backfill, the demo's
-- history): the writer notes them with the rollup invalidations, the scoring job claims them once the
-- backfill has settled and scores them again (bounded to `analytics_backfill_days`).
CREATE TABLE score_invalidations (
    low      timestamptz NOT NULL,
    high     timestamptz NOT NULL,
    noted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX score_invalidations_noted_idx ON score_invalidations (noted_at);
