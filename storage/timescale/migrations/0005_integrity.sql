-- Tamper evidence: every stored event belongs to a sealed batch; batches form a hash chain.
--
-- Each writer transaction stamps its rows with a batch_seq (from a sequence, so no lock is
-- held while rows are copied), computes the Merkle root of the rows' leaf hashes as
-- PostgreSQL STORED them (RETURNING, so a jsonb or inet round trip cannot cause false alarms),
-- and at its very end appends one link to the chain under a lock on the one-row head table.
-- Verification never trusts anything stored here: it recomputes leaves, roots and links
-- (storage/integrity/ has the encoding and the arithmetic; storage/timescale/integrity.py the SQL).

ALTER TABLE audit_events ADD COLUMN batch_seq bigint;  -- NULL only for rows adopted as 'legacy' below

CREATE SEQUENCE integrity_batch_seq;

-- One link per sealed batch. kind 'batch': the rows with this batch_seq; kind 'legacy': the rows
-- with no batch_seq and lo <= "timestamp" <= hi (rows written before this migration).
CREATE TABLE integrity_batches (
    chain_pos  bigint      PRIMARY KEY,           -- 1, 2, 3 ... without gaps
    batch_seq  bigint      NOT NULL UNIQUE,
    kind       text        NOT NULL CHECK (kind IN ('batch', 'legacy')),
    rows       integer     NOT NULL,
    root       bytea       NOT NULL,              -- RFC 6962 Merkle root over the sorted leaf hashes
    lo         timestamptz NOT NULL,              -- the batch's oldest and newest event time
    hi         timestamptz NOT NULL,
    sealed_at  timestamptz NOT NULL,
    prev_hash  bytea       NOT NULL,
    chain_hash bytea       NOT NULL               -- sha256 over prev_hash and every field above
);
CREATE INDEX integrity_batches_span_idx ON integrity_batches (hi, lo);

-- The chain's head, locked FOR UPDATE by each append: the only point where writers serialise.
CREATE TABLE integrity_head (
    id         smallint    PRIMARY KEY CHECK (id = 1),
    chain_pos  bigint      NOT NULL,
    chain_hash bytea       NOT NULL,
    events     bigint      NOT NULL                -- rows sealed so far (sum of integrity_batches.rows)
);
INSERT INTO integrity_head VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000', 0);

-- Lawful erasure keeps the erased row's leaf so its batch root still verifies; the erasure's own
-- audit event (sealed in the same transaction) lists the leaf, so a tombstone cannot be forged alone.
CREATE TABLE integrity_tombstones (
    event_id         uuid        NOT NULL,
    "timestamp"      timestamptz NOT NULL,
    batch_seq        bigint      NOT NULL,
    leaf             bytea       NOT NULL,
    erasure_event_id uuid        NOT NULL,
    erased_by        text        NOT NULL,
    erased_at        timestamptz NOT NULL,
    PRIMARY KEY (event_id, "timestamp")
);
CREATE INDEX integrity_tombstones_batch_idx ON integrity_tombstones (batch_seq);

-- Ranges of event time removed lawfully from the hot table: 'archive' (the rows now live in the
-- cold tier, where verify reads them) or 'retention' (the rows are gone for good).
CREATE TABLE integrity_removals (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lo          timestamptz NOT NULL,
    hi          timestamptz NOT NULL,              -- exclusive
    reason      text        NOT NULL CHECK (reason IN ('archive', 'retention')),
    rows        bigint      NOT NULL,
    archive_ref text,
    removed_by  text        NOT NULL,
    removed_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (hi > lo)
);

-- Signed checkpoints of the chain head, each naming the previous one (like CloudTrail digests).
CREATE TABLE integrity_checkpoints (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_pos  bigint      NOT NULL,
    chain_hash bytea       NOT NULL,
    events     bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    public_key bytea       NOT NULL,
    payload    text        NOT NULL,               -- the exact signed bytes (canonical JSON)
    signature  bytea       NOT NULL
);

-- Appends one link; the caller's transaction holds the head lock until it commits, so links
-- are appended in commit order. The hash is recomputed independently by every verify.
CREATE FUNCTION integrity_append(p_batch bigint, p_kind text, p_rows integer, p_root bytea,
                                 p_lo timestamptz, p_hi timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    head integrity_head%ROWTYPE;
    pos bigint;
    at timestamptz := now();
    link bytea;
BEGIN
    SELECT * INTO head FROM integrity_head WHERE id = 1 FOR UPDATE;
    pos := head.chain_pos + 1;
    link := sha256('\x4157434841494e31'::bytea  -- 'AWCHAIN1'
        || head.chain_hash || int8send(pos) || int8send(p_batch)
        || int4send(octet_length(convert_to(p_kind, 'UTF8'))) || convert_to(p_kind, 'UTF8')
        || int8send(p_rows::bigint) || p_root
        || int8send((extract(epoch FROM p_lo) * 1000000)::bigint)
        || int8send((extract(epoch FROM p_hi) * 1000000)::bigint)
        || int8send((extract(epoch FROM at) * 1000000)::bigint));
    INSERT INTO integrity_batches (chain_pos, batch_seq, kind, rows, root, lo, hi, sealed_at, prev_hash, chain_hash)
    VALUES (pos, p_batch, p_kind, p_rows, p_root, p_lo, p_hi, at, head.chain_hash, link);
    UPDATE integrity_head SET chain_pos = pos, chain_hash = link, events = events + p_rows WHERE id = 1;
    RETURN pos;
END
$fn$;

-- RFC 6962 Merkle tree hash over leaves (already sorted by the caller); used here only to adopt
-- rows that existed before this migration. Python (storage/integrity/merkle.py) is the reference.
CREATE FUNCTION integrity_merkle_root(leaves bytea[]) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    level bytea[] := leaves;
BEGIN
    IF coalesce(cardinality(level), 0) = 0 THEN
        RETURN sha256(''::bytea);
    END IF;
    WHILE cardinality(level) > 1 LOOP
        SELECT array_agg(CASE WHEN level[2 * i] IS NULL THEN level[2 * i - 1]
                              ELSE sha256('\x01'::bytea || level[2 * i - 1] || level[2 * i]) END ORDER BY i)
          INTO level
          FROM generate_series(1, (cardinality(level) + 1) / 2) AS i;
    END LOOP;
    RETURN level[1];
END
$fn$;

-- Adopt the rows that exist now: one 'legacy' batch per day of event time.
DO $adopt$
DECLARE
    day record;
BEGIN
    FOR day IN
        SELECT bucket, min(ts) AS lo, max(ts) AS hi, count(*)::integer AS n,
               integrity_merkle_root(array_agg(leaf ORDER BY leaf)) AS root
        FROM (
            SELECT time_bucket(INTERVAL '1 day', "timestamp") AS bucket, "timestamp" AS ts,
                   sha256('\x00'::bytea || '\x01'::bytea
                   || uuid_send(event_id)
                   || timestamptz_send("timestamp")
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(event_type, 'UTF8'))) || convert_to(event_type, 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(user_id, 'UTF8'))) || convert_to(user_id, 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(outcome, 'UTF8'))) || convert_to(outcome, 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(source, 'UTF8'))) || convert_to(source, 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(host(source_ip) || '/' || masklen(source_ip), 'UTF8'))) || convert_to(host(source_ip) || '/' || masklen(source_ip), 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(source_country, 'UTF8'))) || convert_to(source_country, 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(source_asn, 'UTF8'))) || convert_to(source_asn, 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(user_agent, 'UTF8'))) || convert_to(user_agent, 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(resource_id, 'UTF8'))) || convert_to(resource_id, 'UTF8'), '\x00'::bytea)
                   || coalesce('\x01'::bytea || int4send(octet_length(convert_to(metadata::text, 'UTF8'))) || convert_to(metadata::text, 'UTF8'), '\x00'::bytea)
                   || timestamptz_send(received_at)) AS leaf
            FROM audit_events
        ) AS rows
        GROUP BY bucket
        ORDER BY bucket
    LOOP
        PERFORM integrity_append(nextval('integrity_batch_seq'), 'legacy', day.n, day.root, day.lo, day.hi);
    END LOOP;
END
$adopt$;
