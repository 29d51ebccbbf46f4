-- Compressed days answer "what did this user / this address do" (community edition only; the Apache
-- edition has no compression and skips all of this).
--
-- Measured on TimescaleDB 2.28.3 (3 M events over 30 days) with 0004's settings: a user + 7-day
-- query over compressed days went from P50 4.5 ms / P99 14 ms to P50 29 ms / P99 41 ms. With
-- segmentby event_type and orderby "timestamp", each ~1,000-row batch holds a slice of time for
-- every user, so a user_id filter decompresses every batch of every segment.
--
-- segmentby event_type (unchanged): about fifteen values, thousands of rows per segment in a
--   one-day chunk, so it compresses well; type queries and the rollups read only their segments.
-- orderby user_id, "timestamp" DESC, event_id DESC: inside a segment the rows are grouped by user,
--   and every orderby column carries per-batch min/max metadata, so a user filter decompresses
--   about one batch per segment per chunk instead of all of them. A user's run of rows also
--   compresses better (equal user_id, near-sorted timestamps). Both primary-key columns stay in
--   the orderby, which keeps the key (R5's ON CONFLICT DO NOTHING) enforced on compressed chunks.
-- sparse_index bloom(source_ip) (explicit sparse indexes exist from 2.22): an address shows up in
--   the batches of few users, and a per-batch bloom filter lets an address filter skip the rest.
--   No bloom on user_id: the orderby's min/max already prunes it. Where the server refuses the
--   bloom (an older release or a type it cannot hash), the migration warns and goes on: 2.20 and
--   2.21 build bloom filters on their own for columns with a btree index.
-- The price: newest-first paging inside a compressed day can no longer stream batches in time
--   order, it sorts the day's matching rows (the hot, uncompressed week is unchanged).
-- New settings apply to chunks compressed from now on; chunks compressed before keep theirs until
--   they are recompressed (decompress_chunk + compress_chunk), which is safe to do at any time.
DO $migration$
DECLARE
    version int[] := string_to_array(split_part(
        (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), '-', 1), '.')::int[];
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE $native$
            ALTER TABLE audit_events SET (
                timescaledb.compress_segmentby = 'event_type',
                timescaledb.compress_orderby = 'user_id, "timestamp" DESC, event_id DESC'
            )
        $native$;
        IF version >= ARRAY[2, 22] THEN
            BEGIN
                EXECUTE 'ALTER TABLE audit_events SET (timescaledb.sparse_index = ''bloom(source_ip)'')';
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'bloom(source_ip) sparse index not created: %; address queries over '
                              'compressed days read every batch of the matching segments', SQLERRM;
            END;
        END IF;
    END IF;
END
$migration$;
