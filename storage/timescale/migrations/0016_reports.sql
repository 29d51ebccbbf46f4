-- Generated compliance reports (issue 17): each run of a report, its parameters and the hash of what it
-- produced, so an auditor can check a PDF they were handed against the store. Append-only: a report is
-- never edited, a re-run is a new row.
CREATE TABLE generated_reports (
    report_id     uuid PRIMARY KEY,
    name          text NOT NULL,
    version       integer NOT NULL,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    scope         text NOT NULL DEFAULT 'all',
    parameters    jsonb NOT NULL,
    figures       jsonb NOT NULL,
    files         jsonb NOT NULL,          -- {"report.pdf": "<sha256>", ...}
    sha256        text NOT NULL,           -- of the manifest: the files' names and hashes, sorted
    generated_by  text NOT NULL,
    generated_at  timestamptz NOT NULL,
    location      text,                    -- where the files were written (a directory or an object-store URL)
    CHECK (period_start < period_end)
);
CREATE INDEX generated_reports_by_name ON generated_reports (name, generated_at DESC);

-- The platform's record of generating one (reserved: no producer may forge it).
INSERT INTO event_types (event_type, description, ocsf_class, class_uid, activity_id, builtin, reserved) VALUES
    ('report_generated', 'A compliance report was generated from the audit log', 'API Activity [6003]', 6003, 2,
     true, true)  -- OCSF API Activity, Read (0015's ids)
ON CONFLICT (event_type) DO NOTHING;
