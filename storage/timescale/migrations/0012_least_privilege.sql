-- Append-only enforced by the database (issue 14 #2). With the roles of storage/timescale/roles.sql, the
-- application role (API, writer) may INSERT events but never UPDATE or DELETE one, nor write the
-- integrity tables directly; it seals and erases only through these functions, which run as their
-- owner (the role that ran the migrations) with a pinned search_path:
-- * integrity_append: one link per sealed batch (migration 0005);
-- * integrity_erase: lawful erasure, which deletes the rows and keeps their tombstones, and whose
--   event_erased record must be stored in the same transaction (a deferred check below);
-- * integrity_record_removal (0011): executable by the owner only (archiving and retention run as the
--   owner in the worker: drop_chunks needs the hypertable's owner anyway).

ALTER FUNCTION integrity_append(bigint, text, integer, bytea, timestamptz, timestamptz) SECURITY DEFINER;
ALTER FUNCTION integrity_record_removal(timestamptz, timestamptz, text, bigint, text, text, uuid, timestamptz)
    SECURITY DEFINER;
REVOKE EXECUTE ON FUNCTION integrity_record_removal(timestamptz, timestamptz, text, bigint, text, text, uuid,
                                                    timestamptz) FROM PUBLIC;

-- The leaf hash of a stored row (storage/timescale/sealing.py's leaf_sql and storage/integrity/chain.py
-- are the references; the erasure tests hold all three equal).
CREATE FUNCTION integrity_leaf(e audit_events) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT sha256('\x00'::bytea || '\x01'::bytea || uuid_send(e.event_id) || timestamptz_send(e."timestamp")
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.event_type, 'UTF8'))) || convert_to(e.event_type, 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.user_id, 'UTF8'))) || convert_to(e.user_id, 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.outcome, 'UTF8'))) || convert_to(e.outcome, 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.source, 'UTF8'))) || convert_to(e.source, 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(host(e.source_ip) || '/' || masklen(e.source_ip), 'UTF8'))) || convert_to(host(e.source_ip) || '/' || masklen(e.source_ip), 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.source_country, 'UTF8'))) || convert_to(e.source_country, 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.source_asn, 'UTF8'))) || convert_to(e.source_asn, 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.user_agent, 'UTF8'))) || convert_to(e.user_agent, 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.resource_id, 'UTF8'))) || convert_to(e.resource_id, 'UTF8'), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(convert_to(e.metadata::text, 'UTF8'))) || convert_to(e.metadata::text, 'UTF8'), '\x00'::bytea)
        || timestamptz_send(e.received_at))
$fn$;

-- Deletes every row with this event_id and keeps each one's tombstone (its leaf, under its batch, or
-- its day's legacy batch), naming the erasure's own audit record; refuses when the rows are not the
-- ones the caller read (p_leaves), so the record lists exactly what was erased. Returns the rows erased.
CREATE FUNCTION integrity_erase(p_event_id uuid, p_leaves bytea[], p_erasure_event uuid, p_erased_by text,
                                p_erased_at timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    e audit_events;
    leaf bytea;
    seq bigint;
    n integer := 0;
BEGIN
    FOR e IN DELETE FROM audit_events WHERE event_id = p_event_id RETURNING * LOOP
        leaf := integrity_leaf(e);
        IF NOT leaf = ANY(p_leaves) THEN
            RAISE EXCEPTION 'event % changed while it was being erased; try again', p_event_id
                USING ERRCODE = 'serialization_failure';
        END IF;
        seq := e.batch_seq;
        IF seq IS NULL THEN  -- a row adopted by migration 0005 belongs to its day's legacy batch
            SELECT b.batch_seq INTO seq FROM integrity_batches b
             WHERE b.kind = 'legacy' AND b.lo <= e."timestamp" AND b.hi >= e."timestamp" ORDER BY b.chain_pos LIMIT 1;
        END IF;
        IF seq IS NOT NULL THEN
            INSERT INTO integrity_tombstones (event_id, "timestamp", batch_seq, leaf, erasure_event_id, erased_by,
                                              erased_at)
            VALUES (e.event_id, e."timestamp", seq, leaf, p_erasure_event, p_erased_by, p_erased_at);
        END IF;
        n := n + 1;
    END LOOP;
    IF n <> coalesce(cardinality(p_leaves), 0) THEN
        RAISE EXCEPTION 'event % changed while it was being erased; try again', p_event_id
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN n;
END
$fn$;

-- At commit, every new tombstone's event_erased record must be stored: no erasure without its record.
CREATE FUNCTION integrity_tombstone_has_record() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_events WHERE event_id = NEW.erasure_event_id AND event_type = 'event_erased') THEN
        RAISE EXCEPTION 'the erasure of event % has no event_erased record %: store it in the same transaction',
            NEW.event_id, NEW.erasure_event_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE CONSTRAINT TRIGGER integrity_tombstone_record AFTER INSERT ON integrity_tombstones
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION integrity_tombstone_has_record();

DO $pin$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = pg_catalog.current_schema()::regnamespace
                 AND p.proname IN ('integrity_leaf', 'integrity_erase', 'integrity_tombstone_has_record')
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                                  fn, pg_catalog.current_schema());
    END LOOP;
END
$pin$;
