-- Events per minute and per hour by event_type, outcome and source_country, for the dashboard's countries.
--
-- The other rollups keep no country, so the countries widget counted raw events, capped at the last 24 hours:
-- every overview read a day of audit_events (on 2 M events over 30 days, 104,000 rows and 27-31 ms with two
-- parallel workers; about five times that at 10 M), and a 7- or 30-day range showed only its last day.
-- These twins of events_type_1m/1h are small (countries x types x outcomes per bucket) and serve any range.
--
-- Same relation names and columns on both editions, as in 0002/0003:
--   timescale (community): native continuous aggregates, the hourly one on top of the minute one, with the
--     type rollups' policies; created WITH NO DATA (a migration runs in a transaction), so history is served by
--     real-time aggregation until the policies or `auditwatch storage refresh` materialise it;
--   apache: hypertables that storage.timescale.rollups.refresh keeps with the others; filled here from the raw
--     events up to the rollups' current watermarks, so readers see history at once. Ranges already archived
--     to the cold tier have no raw rows left and are not counted here (the other rollups keep them).
DO $migration$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW events_country_1m
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 minute', "timestamp") AS bucket, event_type, outcome, source_country,
                   count(*) AS events
            FROM audit_events
            GROUP BY time_bucket(INTERVAL '1 minute', "timestamp"), event_type, outcome, source_country
            WITH NO DATA
        $cagg$;
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW events_country_1h
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, event_type, outcome, source_country,
                   sum(events)::bigint AS events
            FROM events_country_1m
            GROUP BY time_bucket(INTERVAL '1 hour', bucket), event_type, outcome, source_country
            WITH NO DATA
        $cagg$;
        PERFORM add_continuous_aggregate_policy('events_country_1m',
            start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 minute',
            schedule_interval => INTERVAL '1 minute');
        PERFORM add_continuous_aggregate_policy('events_country_1h',
            start_offset => INTERVAL '2 days', end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '10 minutes');
    ELSE
        CREATE TABLE events_country_1m (
            bucket         timestamptz NOT NULL,
            event_type     text        NOT NULL,
            outcome        text        NOT NULL,
            source_country text,
            events         bigint      NOT NULL
        );
        PERFORM create_hypertable('events_country_1m', by_range('bucket', INTERVAL '30 days'));
        CREATE TABLE events_country_1h (LIKE events_country_1m);
        PERFORM create_hypertable('events_country_1h', by_range('bucket', INTERVAL '365 days'));
        INSERT INTO events_country_1m (bucket, event_type, outcome, source_country, events)
        SELECT time_bucket(INTERVAL '1 minute', "timestamp"), event_type, outcome, source_country, count(*)
        FROM audit_events
        WHERE "timestamp" < (SELECT watermark FROM rollup_watermarks WHERE rollup = 'events_1m')
        GROUP BY 1, 2, 3, 4;
        INSERT INTO events_country_1h (bucket, event_type, outcome, source_country, events)
        SELECT time_bucket(INTERVAL '1 hour', bucket), event_type, outcome, source_country, sum(events)
        FROM events_country_1m
        WHERE bucket < (SELECT watermark FROM rollup_watermarks WHERE rollup = 'events_1h')
        GROUP BY 1, 2, 3, 4;
    END IF;
END
$migration$;
