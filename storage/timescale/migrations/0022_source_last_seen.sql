-- When each sender (`source`) was last seen, so an absence rule (the packaged `silent_source`, MITRE T1562.008:
-- a log source switched off) costs an index lookup instead of a scan.
--
-- audit_events has no index on `source` (one would cost every insert 10-20 % of raw COPY throughput, measured),
-- so "when did sender S last send?" walked the time index back from now until it met one of S's events: for
-- a sender silent for hours, every row of those hours, every minute the rule ran, exactly while an attacker
-- keeps that sender quiet.
--
-- The writers keep this table through source_seen, in the transaction that stores the events, at most every
-- 10 s per sender and process (storage/timescale/writer.py). So a sender's true last event lies in
-- [last_seen, last_seen + 10 s), and storage/timescale/rule_inputs.py reads only that slice of the time index.
-- It is a hint, never the answer: if the slice holds none of the sender's events (erased, or a forged
-- last_seen), the rule scans as before. The app role can only move a sender forward through source_seen,
-- never back, and never delete one (storage/timescale/roles.sql): nothing here can make a silent sender look
-- alive.

CREATE TABLE source_last_seen (
    source    text        PRIMARY KEY,
    last_seen timestamptz NOT NULL
);

-- Senders seen in the last 7 days (one bounded scan now); older ones are looked up by scanning, as before. The
-- platform's own records (`auditwatch`, `auditwatch-...`) are not tracked: a rule on them scans, as before.
INSERT INTO source_last_seen (source, last_seen)
SELECT source, max("timestamp") FROM audit_events
 WHERE "timestamp" >= now() - INTERVAL '7 days' AND "timestamp" < now() + INTERVAL '1 day' AND source IS NOT NULL
   AND lower(source) <> 'auditwatch' AND lower(source) NOT LIKE 'auditwatch-%'
 GROUP BY source;

-- Forward only, and any time is taken as given (a forged one far ahead only sends the rule back to the walk).
-- Sorted, so two writers updating the same senders cannot deadlock.
CREATE FUNCTION source_seen(p_sources text[], p_times timestamptz[]) RETURNS void
LANGUAGE sql SECURITY DEFINER AS $fn$
    INSERT INTO source_last_seen AS s (source, last_seen)
    SELECT u.src, u.t FROM ROWS FROM (pg_catalog.unnest(p_sources), pg_catalog.unnest(p_times)) AS u(src, t)
     WHERE u.src IS NOT NULL AND u.t IS NOT NULL
     ORDER BY u.src
    ON CONFLICT (source) DO UPDATE SET last_seen = EXCLUDED.last_seen WHERE s.last_seen < EXCLUDED.last_seen
$fn$;
DO $pin$
BEGIN
    EXECUTE pg_catalog.format('ALTER FUNCTION source_seen(text[], timestamptz[]) SET search_path = pg_catalog, %I, '
                              'pg_temp', pg_catalog.current_schema());
END
$pin$;
