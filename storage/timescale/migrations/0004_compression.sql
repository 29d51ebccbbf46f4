-- Warm tier (community edition only): compress chunks of audit_events older than 7 days.
-- On the Apache edition compression does not exist; `auditwatch storage status` says so and
-- nothing else changes.
--
-- segmentby event_type: about fifteen values, so each segment of a one-day chunk holds
--   thousands of rows (a segment needs more than ~100 to compress well; user_id, with a few
--   events per user per day, would not), and the event-type queries of the API and the
--   rollups read only their own segments.
-- orderby "timestamp" DESC, event_id DESC: the API's newest-first keyset order, so a time
--   range is pruned by each batch's min/max; both primary-key columns appear here, which is
--   what lets TimescaleDB keep enforcing the key (R5's ON CONFLICT DO NOTHING) on compressed
--   chunks.
DO $migration$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE $native$
            ALTER TABLE audit_events SET (
                timescaledb.compress,
                timescaledb.compress_segmentby = 'event_type',
                timescaledb.compress_orderby = '"timestamp" DESC, event_id DESC'
            )
        $native$;
        PERFORM add_compression_policy('audit_events', compress_after => INTERVAL '7 days');
    END IF;
END
$migration$;
