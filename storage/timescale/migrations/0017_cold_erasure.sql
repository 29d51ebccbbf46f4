-- Erasure across tiers (issue 14 #7).
--
-- An archived event is erased by rewriting its Parquet file without it (storage/timescale/erasure.py).
-- The database cannot see inside the file, so the erasure is recorded twice over, in the transaction
-- that swaps the catalogue rows: a tombstone per erased row (its leaf, under its batch, so the batch
-- still verifies) and a link of the removal chain with reason 'erasure', naming the file and the
-- sealed event_erased record that lists the leaves. verify then expects the archived range to hold
-- that many rows fewer, and says which events were erased from which file.

ALTER TABLE integrity_removals DROP CONSTRAINT integrity_removals_reason_check;
ALTER TABLE integrity_removals ADD CONSTRAINT integrity_removals_reason_check
    CHECK (reason IN ('archive', 'retention', 'erasure'));

-- Keeps the tombstones of rows erased from one archive file and records the erasure as the next
-- removal link. Every row must lie in a range archived before (a recorded 'archive' removal): this
-- cannot excuse rows missing from the hot table. The event_erased record p_erasure_event must be
-- stored in the same transaction (the tombstones' deferred check).
CREATE FUNCTION integrity_erase_archived(p_event_id uuid, p_seqs bigint[], p_times timestamptz[],
                                         p_leaves bytea[], p_erasure_event uuid, p_erased_by text,
                                         p_erased_at timestamptz, p_archive_ref text)
RETURNS TABLE (removal_id bigint, removal_pos bigint)
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    i integer;
    n integer := coalesce(cardinality(p_leaves), 0);
    seq bigint;
BEGIN
    IF n = 0 OR n <> cardinality(p_seqs) OR n <> cardinality(p_times) THEN
        RAISE EXCEPTION 'integrity_erase_archived needs one batch, time and leaf per erased row'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. n LOOP
        IF NOT EXISTS (SELECT 1 FROM integrity_removals r WHERE r.reason = 'archive' AND r.chain_pos IS NOT NULL
                          AND r.lo <= p_times[i] AND r.hi > p_times[i]) THEN
            RAISE EXCEPTION 'event % at % is not in an archived range: erase hot rows with integrity_erase',
                p_event_id, p_times[i] USING ERRCODE = 'invalid_parameter_value';
        END IF;
        seq := p_seqs[i];
        IF seq IS NULL THEN  -- a row adopted by migration 0005 belongs to its day's legacy batch
            SELECT b.batch_seq INTO seq FROM integrity_batches b
             WHERE b.kind = 'legacy' AND b.lo <= p_times[i] AND b.hi >= p_times[i] ORDER BY b.chain_pos LIMIT 1;
        END IF;
        IF seq IS NOT NULL THEN
            INSERT INTO integrity_tombstones (event_id, "timestamp", batch_seq, leaf, erasure_event_id, erased_by,
                                              erased_at)
            VALUES (p_event_id, p_times[i], seq, p_leaves[i], p_erasure_event, p_erased_by, p_erased_at);
        END IF;
    END LOOP;
    RETURN QUERY SELECT r.removal_id, r.removal_pos FROM integrity_record_removal(
        (SELECT min(t) FROM unnest(p_times) AS t), (SELECT max(t) FROM unnest(p_times) AS t) + interval '1 microsecond',
        'erasure', n, p_archive_ref, p_erased_by, p_erasure_event, p_erased_at) AS r;
END
$fn$;
DO $pin$
BEGIN
    EXECUTE pg_catalog.format('ALTER FUNCTION integrity_erase_archived(uuid, bigint[], timestamptz[], bytea[], '
                              'uuid, text, timestamptz, text) SET search_path = pg_catalog, %I, pg_temp',
                              pg_catalog.current_schema());
END
$pin$;
