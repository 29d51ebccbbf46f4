-- Anomalies found by the scoring jobs (analytics/), read by alerts/ and dashboard/.
-- One row per (detector, entity, window): a job that reruns over the same window upserts the
-- same row, so scoring is idempotent.

CREATE TABLE anomalies (
    anomaly_id       uuid             NOT NULL DEFAULT gen_random_uuid(),
    detector         text             NOT NULL,
    detector_version text             NOT NULL,
    entity_type      text             NOT NULL CHECK (entity_type IN ('user', 'source_ip', 'user_ip', 'series')),
    entity_value     text             NOT NULL,
    window_start     timestamptz      NOT NULL,
    window_end       timestamptz      NOT NULL CHECK (window_end > window_start),
    -- Calibrated: the same score means the same rarity whichever detector produced it.
    score            double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    severity         text             NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    -- {"summary": str, "observed": {...}, "expected": {...}, "features": [{"name", "value", "contribution"}],
    --  "peers": {...}} — what an analyst needs to judge the anomaly without re-running anything.
    explanation      jsonb            NOT NULL DEFAULT '{}'::jsonb,
    sample_event_ids uuid[]           NOT NULL DEFAULT '{}',
    detected_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (detector, entity_type, entity_value, window_start)
);

SELECT create_hypertable('anomalies', by_range('window_start', INTERVAL '7 days'), create_default_indexes => false);

CREATE INDEX anomalies_time_idx     ON anomalies (window_start DESC);
CREATE INDEX anomalies_detected_idx ON anomalies (detected_at DESC);
CREATE INDEX anomalies_entity_idx   ON anomalies (entity_type, entity_value, window_start DESC);
CREATE INDEX anomalies_id_idx       ON anomalies (anomaly_id);

-- Analyst feedback: "this is a false positive", scoped to an entity and/or a detector for a while.
-- Later scoring honours it (suppresses matching anomalies until `until`).
CREATE TABLE anomaly_feedback (
    feedback_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    anomaly_id   uuid,
    detector     text,            -- NULL: any detector
    entity_type  text,            -- NULL with entity_value NULL: any entity
    entity_value text,
    verdict      text        NOT NULL DEFAULT 'false_positive' CHECK (verdict IN ('false_positive', 'true_positive')),
    until        timestamptz,     -- NULL: no expiry
    reason       text        NOT NULL DEFAULT '',
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((entity_type IS NULL) = (entity_value IS NULL))
);
CREATE INDEX anomaly_feedback_scope_idx ON anomaly_feedback (detector, entity_type, entity_value);

-- Per-job watermarks and fitted model versions (scoring is reproducible from a stored version).
CREATE TABLE detector_state (
    job          text PRIMARY KEY,
    watermark    timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE detector_models (
    detector     text        NOT NULL,
    version      text        NOT NULL,
    fitted_at    timestamptz NOT NULL DEFAULT now(),
    trained_from timestamptz,
    trained_to   timestamptz,
    params       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    model        bytea       NOT NULL,
    PRIMARY KEY (detector, version)
);

-- Added with the detectors (analytics/): listing one detector's anomalies, and the scoring job's
-- lookup of live false-positive scopes.
CREATE INDEX anomalies_detector_idx ON anomalies (detector, window_start DESC);
CREATE INDEX anomaly_feedback_until_idx ON anomaly_feedback (verdict, until);
