-- Tamper evidence against an insider with write access (issue 14 #2).
--
-- * Removal records (archive, retention) form a hash chain of their own, whose head every checkpoint
--   signs beside the batch head, and each names the sealed self-audit record (events_archived,
--   events_expired) written in the same transaction: a row inserted by hand is not in the chain, and
--   one appended through the function below has no sealed record to match.
-- * The number of checkpoints ever signed is kept, so deleting all of them is not mistaken for a
--   chain that was never signed.
-- * Every integrity function runs with a pinned search_path, so a function or operator created in
--   another schema cannot shadow the built-ins it calls.
-- Verification recomputes all of it (storage/integrity/chain.py is the reference encoding).

ALTER TABLE integrity_removals
    ADD COLUMN chain_pos      bigint UNIQUE,   -- 1, 2, 3 ... without gaps; NULL: never chained (forged)
    ADD COLUMN audit_event_id uuid,            -- the sealed self-audit record of this removal
    ADD COLUMN audit_event_at timestamptz,     -- ... and its event time (where to find it once archived)
    ADD COLUMN prev_hash      bytea,
    ADD COLUMN chain_hash     bytea;

CREATE TABLE integrity_removal_head (
    id         smallint PRIMARY KEY CHECK (id = 1),
    chain_pos  bigint   NOT NULL,
    chain_hash bytea    NOT NULL
);
INSERT INTO integrity_removal_head VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- How many checkpoints have been signed (incremented with each insert into integrity_checkpoints).
CREATE TABLE integrity_signed (
    id          smallint PRIMARY KEY CHECK (id = 1),
    checkpoints bigint   NOT NULL
);
INSERT INTO integrity_signed SELECT 1, count(*) FROM integrity_checkpoints;

-- sha256 over the previous link and every field of one removal record (chain.removal_link in Python).
CREATE FUNCTION integrity_removal_link(p_prev bytea, p_pos bigint, p_lo timestamptz, p_hi timestamptz,
                                       p_reason text, p_rows bigint, p_archive_ref text, p_removed_by text,
                                       p_removed_at timestamptz, p_audit_event uuid,
                                       p_audit_at timestamptz) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT sha256('\x4157524d564c3031'::bytea  -- 'AWRMVL01'
        || p_prev || int8send(p_pos)
        || int8send((extract(epoch FROM p_lo) * 1000000)::bigint)
        || int8send((extract(epoch FROM p_hi) * 1000000)::bigint)
        || int4send(octet_length(convert_to(p_reason, 'UTF8'))) || convert_to(p_reason, 'UTF8')
        || int8send(p_rows)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(p_archive_ref, 'UTF8')))
                    || convert_to(p_archive_ref, 'UTF8'), '\x00'::bytea)
        || int4send(octet_length(convert_to(p_removed_by, 'UTF8'))) || convert_to(p_removed_by, 'UTF8')
        || int8send((extract(epoch FROM p_removed_at) * 1000000)::bigint)
        || coalesce('\x01'::bytea || uuid_send(p_audit_event), '\x00'::bytea)
        || coalesce('\x01'::bytea || int8send((extract(epoch FROM p_audit_at) * 1000000)::bigint), '\x00'::bytea))
$fn$;

-- Records one lawful removal as the next link of the removal chain; call it in the transaction that
-- removes the rows and stores the removal's self-audit record (storage/timescale/removals.py).
CREATE FUNCTION integrity_record_removal(p_lo timestamptz, p_hi timestamptz, p_reason text, p_rows bigint,
                                         p_archive_ref text, p_removed_by text, p_audit_event uuid,
                                         p_audit_at timestamptz)
RETURNS TABLE (removal_id bigint, removal_pos bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    head integrity_removal_head%ROWTYPE;
    pos bigint;
    at timestamptz := now();
    link bytea;
    rid bigint;
BEGIN
    SELECT * INTO head FROM integrity_removal_head WHERE id = 1 FOR UPDATE;
    pos := head.chain_pos + 1;
    link := integrity_removal_link(head.chain_hash, pos, p_lo, p_hi, p_reason, p_rows, p_archive_ref,
                                   p_removed_by, at, p_audit_event, p_audit_at);
    INSERT INTO integrity_removals (lo, hi, reason, rows, archive_ref, removed_by, removed_at, chain_pos,
                                    audit_event_id, audit_event_at, prev_hash, chain_hash)
    VALUES (p_lo, p_hi, p_reason, p_rows, p_archive_ref, p_removed_by, at, pos, p_audit_event, p_audit_at,
            head.chain_hash, link)
    RETURNING id INTO rid;
    UPDATE integrity_removal_head SET chain_pos = pos, chain_hash = link WHERE id = 1;
    RETURN QUERY SELECT rid, pos;
END
$fn$;

-- Chain the removals recorded before this migration, in the order they were made, each with the
-- self-audit record its job wrote in the same transaction (matched by type and archive reference).
DO $adopt$
DECLARE
    r record;
    prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    pos bigint := 0;
    audit uuid;
    audit_at timestamptz;
BEGIN
    FOR r IN SELECT * FROM integrity_removals ORDER BY id LOOP
        pos := pos + 1;
        SELECT e.event_id, e."timestamp" INTO audit, audit_at FROM audit_events e
         WHERE e.event_type = CASE r.reason WHEN 'archive' THEN 'events_archived' ELSE 'events_expired' END
           AND e.resource_id = r.archive_ref AND e.source = 'auditwatch'
           AND NOT EXISTS (SELECT 1 FROM integrity_removals o WHERE o.audit_event_id = e.event_id)
         ORDER BY e."timestamp" LIMIT 1;
        UPDATE integrity_removals SET chain_pos = pos, audit_event_id = audit, audit_event_at = audit_at,
               prev_hash = prev,
               chain_hash = integrity_removal_link(prev, pos, r.lo, r.hi, r.reason, r.rows, r.archive_ref,
                                                   r.removed_by, r.removed_at, audit, audit_at)
         WHERE id = r.id
        RETURNING chain_hash INTO prev;
    END LOOP;
    UPDATE integrity_removal_head SET chain_pos = pos, chain_hash = prev WHERE id = 1;
END
$adopt$;

-- Pin the search_path of every integrity function to pg_catalog first, then this schema.
DO $pin$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = pg_catalog.current_schema()::regnamespace AND p.proname LIKE 'integrity\_%'
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                                  fn, pg_catalog.current_schema());
    END LOOP;
END
$pin$;
