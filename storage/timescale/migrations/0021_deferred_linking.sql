-- Seal in the write transaction, link the chain after (issue 16: integrity costs <= 10 % of the writer).
--
-- Before, every writer transaction appended its batch to the chain at its very end, holding the head's
-- row lock through commit, so concurrent writers serialised on it. Now:
-- * integrity_seal: the writer's transaction inserts its batch's own sealed record (batch_seq, rows,
--   Merkle root, event-time span, sealed_at) into integrity_seals. No shared lock: writers never wait
--   on each other.
-- * integrity_link: in its own short transaction, under the head lock, appends every sealed-but-unlinked
--   batch to the chain in batch_seq order (a batch whose transaction commits after a later seq was linked
--   is linked next; a rolled-back seq is a gap that was never sealed, so nothing waits for it). The writer
--   runs it after each commit with a try-lock (SKIP LOCKED: when another linker holds the head, that one
--   looks again after its commit), and the checkpoint job runs it, waiting, before it signs.
-- * integrity_append (rare writes inside a caller's transaction: self-audit records, erasure) seals and
--   links at once, as before.
-- A link copies its seal's fields, and the seal records where it was linked (linked_pos), so verify
-- checks both ways: a linked batch whose seal was altered or deleted, a seal whose link was removed, and
-- a seal left unlinked past a grace period are each reported by name.

CREATE TABLE integrity_seals (
    batch_seq  bigint      PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('batch', 'legacy')),
    rows       integer     NOT NULL,
    root       bytea       NOT NULL,
    lo         timestamptz NOT NULL,
    hi         timestamptz NOT NULL,
    sealed_at  timestamptz NOT NULL,
    linked_pos bigint      UNIQUE               -- the chain position it was linked at; NULL: not yet
);
-- What the linker looks for: small however long the history.
CREATE INDEX integrity_seals_unlinked_idx ON integrity_seals (batch_seq) WHERE linked_pos IS NULL;

-- Every batch linked so far was sealed and linked at once: its seal is its link's fields.
INSERT INTO integrity_seals (batch_seq, kind, rows, root, lo, hi, sealed_at, linked_pos)
SELECT batch_seq, kind, rows, root, lo, hi, sealed_at, chain_pos FROM integrity_batches;

-- sha256 over the previous link and every field of one batch (chain.chain_link in Python).
CREATE FUNCTION integrity_chain_link(p_prev bytea, p_pos bigint, p_batch bigint, p_kind text, p_rows integer,
                                     p_root bytea, p_lo timestamptz, p_hi timestamptz, p_at timestamptz)
RETURNS bytea
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT sha256('\x4157434841494e31'::bytea  -- 'AWCHAIN1'
        || p_prev || int8send(p_pos) || int8send(p_batch)
        || int4send(octet_length(convert_to(p_kind, 'UTF8'))) || convert_to(p_kind, 'UTF8')
        || int8send(p_rows::bigint) || p_root
        || int8send((extract(epoch FROM p_lo) * 1000000)::bigint)
        || int8send((extract(epoch FROM p_hi) * 1000000)::bigint)
        || int8send((extract(epoch FROM p_at) * 1000000)::bigint))
$fn$;

-- The writer's seal: one row, no lock beyond its own primary key.
CREATE FUNCTION integrity_seal(p_batch bigint, p_rows integer, p_root bytea, p_lo timestamptz,
                               p_hi timestamptz) RETURNS void
LANGUAGE sql AS $fn$
    INSERT INTO integrity_seals (batch_seq, kind, rows, root, lo, hi, sealed_at)
    VALUES (p_batch, 'batch', p_rows, p_root, p_lo, p_hi, now())
$fn$;

-- Links every sealed-but-unlinked batch visible now, in batch_seq order; returns how many, or NULL when
-- p_wait is false and another transaction holds the head (that linker looks again after it commits).
CREATE FUNCTION integrity_link(p_wait boolean) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    head integrity_head%ROWTYPE;
    s integrity_seals%ROWTYPE;
    pos bigint;
    link bytea;
    next_link bytea;
    n integer := 0;
    total bigint := 0;
BEGIN
    IF p_wait THEN
        SELECT * INTO head FROM integrity_head WHERE id = 1 FOR UPDATE;
    ELSE
        SELECT * INTO head FROM integrity_head WHERE id = 1 FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    pos := head.chain_pos;
    link := head.chain_hash;
    -- A fresh snapshot, taken after the lock: every seal committed before it was granted is seen.
    FOR s IN SELECT * FROM integrity_seals WHERE linked_pos IS NULL ORDER BY batch_seq LOOP
        pos := pos + 1;
        next_link := integrity_chain_link(link, pos, s.batch_seq, s.kind, s.rows, s.root, s.lo, s.hi, s.sealed_at);
        INSERT INTO integrity_batches (chain_pos, batch_seq, kind, rows, root, lo, hi, sealed_at, prev_hash,
                                       chain_hash)
        VALUES (pos, s.batch_seq, s.kind, s.rows, s.root, s.lo, s.hi, s.sealed_at, link, next_link);
        UPDATE integrity_seals SET linked_pos = pos WHERE batch_seq = s.batch_seq;
        link := next_link;
        total := total + s.rows;
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        UPDATE integrity_head SET chain_pos = pos, chain_hash = link, events = events + total WHERE id = 1;
    END IF;
    RETURN n;
END
$fn$;

-- Seal and link at once, within the caller's transaction (which holds the head until it commits).
CREATE OR REPLACE FUNCTION integrity_append(p_batch bigint, p_kind text, p_rows integer, p_root bytea,
                                            p_lo timestamptz, p_hi timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
    INSERT INTO integrity_seals (batch_seq, kind, rows, root, lo, hi, sealed_at)
    VALUES (p_batch, p_kind, p_rows, p_root, p_lo, p_hi, now());
    PERFORM integrity_link(true);
    RETURN (SELECT linked_pos FROM integrity_seals WHERE batch_seq = p_batch);
END
$fn$;

ALTER FUNCTION integrity_seal(bigint, integer, bytea, timestamptz, timestamptz) SECURITY DEFINER;
ALTER FUNCTION integrity_link(boolean) SECURITY DEFINER;

-- Pin the search_path of every integrity function (as 0011 did), the new ones and the replaced one included.
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
