-- Rollups: events per minute and per hour by event_type, outcome, user_id and source_ip.
-- The same relation names and columns on both editions:
--   timescale (community): native continuous aggregates, hierarchical, real-time aggregation on,
--     refreshed by TimescaleDB's own policies;
--   apache: ordinary hypertables kept current by storage.timescale.rollups.refresh (a scheduled
--     job with a stored watermark); readers add the raw tail past the watermark.

-- Ranges of audit_events changed behind the watermark (backfills, erasure, retention), for the
-- apache refresh to recompute. Written in the same transaction as the change.
CREATE TABLE rollup_invalidations (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    low      timestamptz NOT NULL,
    high     timestamptz NOT NULL,  -- inclusive: the newest timestamp touched
    noted_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollup_watermarks (
    rollup       text PRIMARY KEY,
    watermark    timestamptz NOT NULL,  -- every bucket before this is materialised
    refreshed_at timestamptz NOT NULL DEFAULT now()
);

DO $migration$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW events_1m
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 minute', "timestamp") AS bucket,
                   event_type, outcome, user_id, source_ip, count(*) AS events
            FROM audit_events
            GROUP BY time_bucket(INTERVAL '1 minute', "timestamp"), event_type, outcome, user_id, source_ip
            WITH NO DATA
        $cagg$;
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW events_1h
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
                   event_type, outcome, user_id, source_ip, sum(events)::bigint AS events
            FROM events_1m
            GROUP BY time_bucket(INTERVAL '1 hour', bucket), event_type, outcome, user_id, source_ip
            WITH NO DATA
        $cagg$;
        PERFORM add_continuous_aggregate_policy('events_1m',
            start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 minute',
            schedule_interval => INTERVAL '1 minute');
        PERFORM add_continuous_aggregate_policy('events_1h',
            start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '10 minutes');
    ELSE
        CREATE TABLE events_1m (
            bucket     timestamptz NOT NULL,
            event_type text        NOT NULL,
            outcome    text        NOT NULL,
            user_id    text        NOT NULL,
            source_ip  inet,
            events     bigint      NOT NULL
        );
        PERFORM create_hypertable('events_1m', by_range('bucket', INTERVAL '7 days'));
        CREATE INDEX events_1m_type_idx ON events_1m (event_type, bucket DESC);
        CREATE INDEX events_1m_user_idx ON events_1m (user_id, bucket DESC);
        CREATE TABLE events_1h (LIKE events_1m);
        PERFORM create_hypertable('events_1h', by_range('bucket', INTERVAL '30 days'));
        CREATE INDEX events_1h_type_idx ON events_1h (event_type, bucket DESC);
        CREATE INDEX events_1h_user_idx ON events_1h (user_id, bucket DESC);
    END IF;
END
$migration$;
