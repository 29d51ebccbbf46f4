-- Coarse rollups for dashboards: events per minute and per hour by event_type and outcome only.
-- events_1m/events_1h keep user_id and source_ip for detectors, which makes them nearly as
-- large as the raw table on busy systems; a 7-day chart by type reads these instead.
DO $migration$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW events_type_1m
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 minute', "timestamp") AS bucket, event_type, outcome, count(*) AS events
            FROM audit_events
            GROUP BY time_bucket(INTERVAL '1 minute', "timestamp"), event_type, outcome
            WITH NO DATA
        $cagg$;
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW events_type_1h
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, event_type, outcome, sum(events)::bigint AS events
            FROM events_type_1m
            GROUP BY time_bucket(INTERVAL '1 hour', bucket), event_type, outcome
            WITH NO DATA
        $cagg$;
        PERFORM add_continuous_aggregate_policy('events_type_1m',
            start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 minute',
            schedule_interval => INTERVAL '1 minute');
        PERFORM add_continuous_aggregate_policy('events_type_1h',
            start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '10 minutes');
    ELSE
        CREATE TABLE events_type_1m (
            bucket     timestamptz NOT NULL,
            event_type text        NOT NULL,
            outcome    text        NOT NULL,
            events     bigint      NOT NULL
        );
        PERFORM create_hypertable('events_type_1m', by_range('bucket', INTERVAL '30 days'));
        CREATE TABLE events_type_1h (LIKE events_type_1m);
        PERFORM create_hypertable('events_type_1h', by_range('bucket', INTERVAL '365 days'));
    END IF;
END
$migration$;
