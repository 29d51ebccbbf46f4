-- Cold tier: the catalogue of Parquet archive files and legal holds.
--
-- An archive file moves through these states (storage.timescale.archive):
--   pending    a catalogue row claims the path; the file may be missing or half written
--   verified   the file is written, fsynced, renamed into place and read back: its row count and
--              SHA-256 are recorded here, but its chunk is still in the hypertable (hot)
--   complete   the chunk was dropped in the same transaction that set this state: the file is
--              now the only copy (cold)
--   failed     a pending or verified attempt that a later run abandoned (its file is removed)
--   superseded retention rewrote the file without its expired event types; `superseded_by` names
--              the new file (the old one is removed after the commit)
--   expired    retention deleted the whole file (removed after the commit)
-- Live files, the ones `auditwatch verify` checks, are those in state verified or complete.

INSERT INTO event_types (event_type, description, ocsf_class, builtin) VALUES
    ('legal_hold',      'A legal hold was placed or released',                       'API Activity [6003]', true),
    ('events_archived', 'Hot events were archived to Parquet and their chunk dropped', 'API Activity [6003]', true),
    ('events_expired',  'Archived events past their cold retention were deleted',     'API Activity [6003]', true)
ON CONFLICT (event_type) DO NOTHING;

CREATE TABLE log_archives (
    archive_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path          text        NOT NULL UNIQUE,  -- relative to the archive root: year=YYYY/month=MM/day=DD/...
    day           date        NOT NULL,         -- the UTC day the file's rows fall in
    range_start   timestamptz NOT NULL,         -- the slice of time the file covers: [range_start, range_end)
    range_end     timestamptz NOT NULL CHECK (range_end > range_start),
    chunk_name    text,                         -- the hypertable chunk it was exported from
    state         text        NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'verified', 'complete', 'failed', 'superseded', 'expired')),
    rows          bigint,
    bytes         bigint,
    sha256        text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    min_time      timestamptz,                  -- of the rows in the file
    max_time      timestamptz,
    event_types   text[]      NOT NULL DEFAULT '{}',
    columns       text[]      NOT NULL DEFAULT '{}',  -- audit_events' columns at export time, in file order
    fingerprint   numeric,                      -- sum of per-row key hashes: the drop re-checks the chunk against it
    supersedes    bigint,                       -- the file this one replaced (a retention rewrite)
    superseded_by bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    verified_at   timestamptz,
    completed_at  timestamptz,
    deleted_at    timestamptz,                  -- when retention removed (or replaced) the file
    note          text,
    CHECK (state NOT IN ('verified', 'complete') OR (rows IS NOT NULL AND bytes IS NOT NULL AND sha256 IS NOT NULL))
);
CREATE INDEX log_archives_day_idx ON log_archives (day) WHERE state IN ('verified', 'complete');
CREATE INDEX log_archives_chunk_idx ON log_archives (chunk_name, state);

-- A hold keeps matching events where they are: their chunk is not dropped and their archive rows
-- are not deleted. Criteria are ANDed; at least one is required (a hold on nothing is refused).
CREATE TABLE legal_holds (
    hold_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id        text CHECK (length(case_id) BETWEEN 1 AND 256),  -- events tagged metadata.case_id
    user_id        text CHECK (length(user_id) BETWEEN 1 AND 256),
    start_time     timestamptz,
    end_time       timestamptz,
    reason         text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    released_at    timestamptz,
    released_by    text,
    release_reason text,
    CHECK (case_id IS NOT NULL OR user_id IS NOT NULL OR start_time IS NOT NULL OR end_time IS NOT NULL),
    CHECK (start_time IS NULL OR end_time IS NULL OR start_time < end_time),
    CHECK ((released_at IS NULL) = (released_by IS NULL))
);
CREATE INDEX legal_holds_active_idx ON legal_holds (hold_id) WHERE released_at IS NULL;
