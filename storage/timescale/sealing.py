"""Sealing: every write seals its batch, a linker appends sealed batches to the chain, the head is signed.

A writer's rows go through the staging table and one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
whose RETURNING computes each row's leaf hash from the values as stored (or, on the COPY fast path,
``prepare_batch`` computes them from the server's own normalisation). The writer's transaction then
inserts the batch's seal (its Merkle root) without any shared lock; after commit, ``link_committed``
appends every sealed-but-unlinked batch to the chain in its own short transaction under the head lock
(migration 0021). Checkpoints link whatever is still unlinked, then sign the head, chained to each other.

The pure hashing and signing are in ``storage.integrity``; ``verify.py`` recomputes all of it.
Nothing here reads the archive, so the writer (and everything that writes through it) stays below
the cold tier.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.errors import IntegrityError
from storage.events import COLUMNS, EventRecord
from storage.integrity import chain, checkpoints
from storage.integrity.checkpoints import Checkpoint

log = logging.getLogger(__name__)

# -- the leaf hash in SQL (storage.integrity.chain.canonical is the reference) -------------------------


# Every function, operator and type is schema-qualified: a function of the same name created in a
# schema searched earlier (or one that matches an unknown literal better, as convert_to(text, text)
# would) must not change what is hashed. verify also pins the search_path of its transaction.
_CAT = sql.SQL(" OPERATOR(pg_catalog.||) ")


def _text(expr: sql.Composable, utf8_session: bool, column: sql.Composable | None = None) -> sql.Composable:
    """One field's bytes: 0x00 for NULL, else 0x01, int4 length, UTF-8 bytes. ``column``: the column a
    computed ``expr`` (jsonb or inet as text) is NULL with, so that the UTF-8 form renders it once."""
    if utf8_session and column is not None:
        # array_send of a one-element text[]: a 20-byte header, then the element's int4 length and its
        # textsend bytes; the length and the bytes of one rendering, with no second jsonb_out/inet print.
        return sql.SQL("CASE WHEN {col} IS NULL THEN '\\x00'::pg_catalog.bytea ELSE '\\x01'::pg_catalog.bytea{c}"
                       "pg_catalog.substr(pg_catalog.array_send(ARRAY[{e}]), 21) END").format(
            e=expr, col=column, c=_CAT)
    if utf8_session:
        # Server and client both UTF8: octet_length of the text is its UTF-8 length and textsend sends its
        # bytes unconverted, the same bytes convert_to gives, without convert_to's per-call encoding-name
        # lookups and checks (about a third of verify's hashing time).
        return sql.SQL("coalesce('\\x01'::pg_catalog.bytea{c}pg_catalog.int4send(pg_catalog.octet_length({e})){c}"
                       "pg_catalog.textsend({e}), '\\x00'::pg_catalog.bytea)").format(e=expr, c=_CAT)
    return sql.SQL("coalesce('\\x01'::pg_catalog.bytea{c}pg_catalog.int4send(pg_catalog.octet_length("
                   "pg_catalog.convert_to({e}, 'UTF8'::pg_catalog.name))){c}"
                   "pg_catalog.convert_to({e}, 'UTF8'::pg_catalog.name), '\\x00'::pg_catalog.bytea)").format(
        e=expr, c=_CAT)


def _micros(expr: sql.Composable) -> sql.Composable:
    # The binary send form: int8 microseconds since 2000-01-01 UTC, independent of TimeZone/DateStyle.
    return sql.SQL("pg_catalog.timestamptz_send({})").format(expr)


# text(inet) prints host/masklen, exactly host(ip) || '/' || masklen(ip) (network_show appends the
# mask length that network_host strips; both print with the family's maximum bits), in one call.
_INET = sql.SQL("pg_catalog.text({})")

# What ``leaf_sql(utf8_session=True)`` needs of the session: check in the transaction that runs it, after
# pinning client_encoding (``UTF8_SESSION_PIN``); anything else must use the portable form.
UTF8_SESSION_PIN = "SELECT pg_catalog.set_config('client_encoding', 'UTF8', true)"
UTF8_SESSION_CHECK = ("SELECT pg_catalog.current_setting('server_encoding') = 'UTF8' "
                      "AND pg_catalog.current_setting('client_encoding') = 'UTF8'")


def leaf_sql(qualifier: str | None = None, *, utf8_session: bool = False) -> sql.Composable:
    """sha256(0x00 || canonical row) over the columns of ``qualifier`` (a table or alias), built only
    from schema-qualified built-ins, so no stored or shadowing function can fool verify.

    ``utf8_session``: the cheaper form, byte-identical but only where ``UTF8_SESSION_CHECK`` holds in the
    running transaction (textsend sends in the client's encoding); the default works in any encoding."""
    def col(name: str) -> sql.Composable:
        return sql.Identifier(qualifier, name) if qualifier else sql.Identifier(name)

    texts = []
    for name in chain.TEXT_FIELDS:
        if name == "source_ip":
            texts.append(_text(_INET.format(col(name)), utf8_session, col(name)))
        elif name == "metadata":
            texts.append(_text(sql.SQL("{}::pg_catalog.text").format(col(name)), utf8_session, col(name)))
        else:
            texts.append(_text(col(name), utf8_session))
    return sql.SQL("pg_catalog.sha256('\\x00'::pg_catalog.bytea{cat}'\\x01'::pg_catalog.bytea{cat}"
                   "pg_catalog.uuid_send({eid}){cat}{ts}{cat}{texts}{cat}{rat})").format(
        eid=col("event_id"), ts=_micros(col("timestamp")), texts=_CAT.join(texts),
        rat=_micros(col("received_at")), cat=_CAT)


# -- batches, in the writer's transaction ---------------------------------------------------------------

COLUMN_LIST = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
_NEXT_BATCH = "SELECT nextval('integrity_batch_seq')"
_INSERT_SEALED = sql.SQL(
    "INSERT INTO audit_events ({cols}, batch_seq) SELECT {cols}, %s FROM {staging} "
    'ON CONFLICT DO NOTHING RETURNING event_id, "timestamp", {leaf}'
)
_APPEND = "SELECT integrity_append(%s, 'batch', %s, %s, %s, %s)"
_SEAL = "SELECT integrity_seal(%s, %s, %s, %s, %s)"
# The link is derived from seals already committed durably: a link lost in a crash is linked again,
# so its commit need not wait for the WAL flush (a later synchronous commit flushes it anyway).
_LINK = "SELECT pg_catalog.set_config('synchronous_commit', 'off', true), integrity_link(false)"
_LINK_WAITING = "SELECT integrity_link(true)"
_UNLINKED = "SELECT EXISTS (SELECT 1 FROM integrity_seals WHERE linked_pos IS NULL)"
# What PostgreSQL makes of the two values that do not round-trip as sent (jsonb normalises numbers, key
# order and spacing; inet prints addresses its own way), parsed by the same input functions as the COPY.
_NORMALISE = ("SELECT pg_catalog.nextval('integrity_batch_seq'), "
              "ARRAY(SELECT m::pg_catalog.jsonb::pg_catalog.text FROM pg_catalog.unnest(%b::pg_catalog.text[]) "
              "WITH ORDINALITY AS t(m, o) ORDER BY o), "
              "ARRAY(SELECT pg_catalog.host(a::pg_catalog.inet) OPERATOR(pg_catalog.||) '/'::pg_catalog.text "
              "OPERATOR(pg_catalog.||) pg_catalog.masklen(a::pg_catalog.inet)::pg_catalog.text "
              "FROM pg_catalog.unnest(%b::pg_catalog.text[]) WITH ORDINALITY AS t(a, o) ORDER BY o)")


def next_batch(cursor: psycopg.Cursor) -> int:
    """A fresh batch_seq for rows about to be written (no lock: the chain position comes at the end)."""
    return cursor.execute(_NEXT_BATCH).fetchone()[0]


def prepare_batch(cursor: psycopg.Cursor, records: Sequence[EventRecord],
                  metadata_json: Sequence[str]) -> tuple[int, list[bytes]]:
    """A batch_seq and the leaf hash of each record as PostgreSQL will store it, for the fast path that
    COPYs straight into the hypertable (COPY's multi-row inserts cost about half what the staging
    table's INSERT ... SELECT does, and hashing in SQL costs more server CPU than in Python).

    Exact: uuid, text and timestamptz (microseconds) are stored as sent; jsonb and inet come back
    from the server's own input and output functions. verify recomputes every leaf in SQL from the
    stored rows, and the tests hold the two computations equal.
    """
    ips = [r.source_ip for r in records]
    # Binary parameters and results: psycopg quotes text arrays with a regex per element otherwise.
    batch, metadata, hosts = cursor.execute(_NORMALISE, (list(metadata_json), ips), binary=True).fetchone()
    if len(metadata) != len(records) or len(hosts) != len(records):
        raise IntegrityError("the server's rendering of the batch's metadata and addresses does not match the batch")
    columns = ([r.event_type for r in records], [r.user_id for r in records], [str(r.outcome) for r in records],
               [r.source for r in records], hosts, [r.source_country for r in records],
               [r.source_asn for r in records], [r.user_agent for r in records], [r.resource_id for r in records],
               metadata)
    return batch, chain.leaves_of([r.event_id for r in records], [r.timestamp for r in records], columns,
                                  [r.received_at for r in records])


def seal_prepared(cursor: psycopg.Cursor, batch: int, records: Sequence[EventRecord], leaves: list[bytes]) -> None:
    """Seal the batch written with ``prepare_batch``'s leaves (no shared lock); ``link_committed`` after
    the commit puts it in the chain."""
    times = [r.timestamp for r in records]
    cursor.execute(_SEAL, (batch, len(leaves), chain.merkle_root(leaves), min(times), max(times)))


def insert_sealed(cursor: psycopg.Cursor, staging: sql.Identifier, *,
                  link_now: bool = True) -> set[tuple[uuid.UUID, datetime]]:
    """Move the staged rows into audit_events as one sealed batch; returns the keys inserted.

    ``link_now`` (rare writes inside a caller's transaction): the batch is linked at once, and the
    transaction holds the chain's head lock until it commits, so commit promptly. Otherwise it is only
    sealed, and the caller runs ``link_committed`` after its commit.
    Rows refused as duplicates are already sealed in the batch that first stored them.
    """
    batch = next_batch(cursor)
    cursor.execute(_INSERT_SEALED.format(cols=COLUMN_LIST, staging=staging, leaf=leaf_sql()), (batch,))
    returned = cursor.fetchall()
    if returned:
        times = [r[1] for r in returned]
        cursor.execute(_APPEND if link_now else _SEAL, (batch, len(returned), chain.merkle_root(
            r[2] for r in returned), min(times), max(times)))
    return {(r[0], r[1]) for r in returned}


def link_committed(conn: psycopg.Connection) -> None:
    """After a sealing commit: link every sealed batch into the chain, in short transactions of its own.

    Never waits on another linker: when one holds the head, this returns, and that one looks again after
    its commit (so a seal committed while it held the head is linked by it, or by the next). The
    checkpoint job links too, waiting, before it signs: no crash between commit and link leaves a batch
    outside what is signed.
    """
    conn.autocommit = True  # each statement its own transaction: one round trip each
    try:
        while conn.execute(_LINK).fetchone()[1] is not None and conn.execute(_UNLINKED).fetchone()[0]:
            pass
    finally:
        conn.autocommit = False


def link_all(conn: psycopg.Connection) -> int:
    """Link every sealed batch now, waiting for the head (within the caller's transaction)."""
    return conn.execute(_LINK_WAITING).fetchone()[0]


# -- checkpoints: the head, signed ------------------------------------------------------------------------

_CHECKPOINT_LOCK = 0x4157_494E_5443_4B50 & 0x7FFF_FFFF_FFFF_FFFF
_CP_FIELDS = ("chain_pos", "chain_hash", "events", "created_at", "public_key", "payload", "signature")
_CP_COLUMNS = sql.SQL(", ").join(sql.Identifier(c) for c in _CP_FIELDS)
_CP_SELECT = sql.SQL("SELECT {} FROM integrity_checkpoints ORDER BY id").format(_CP_COLUMNS)
_CP_LATEST = sql.SQL("SELECT {} FROM integrity_checkpoints ORDER BY id DESC LIMIT 1").format(_CP_COLUMNS)
_CP_INSERT = sql.SQL("INSERT INTO integrity_checkpoints ({}) VALUES ({})").format(
    _CP_COLUMNS, sql.SQL(", ").join(sql.Placeholder() * len(_CP_FIELDS)))
_HEAD = "SELECT chain_pos, chain_hash, events FROM integrity_head WHERE id = 1"


def _checkpoint(row: tuple) -> Checkpoint:
    return Checkpoint(row[0], bytes(row[1]), row[2], row[3], bytes(row[4]), row[5], bytes(row[6]))


def head(conn: psycopg.Connection) -> tuple[int, bytes, int]:
    """The chain head as stored: (chain_pos, chain_hash, cumulative events)."""
    return conn.execute(_HEAD).fetchone()


def stored_checkpoints(conn: psycopg.Connection) -> list[Checkpoint]:
    """Every stored checkpoint, oldest first, within the caller's transaction (verify's snapshot)."""
    return [_checkpoint(r) for r in conn.execute(_CP_SELECT).fetchall()]


def list_checkpoints(pool: ConnectionPool) -> list[Checkpoint]:
    with pool.connection() as conn:
        return stored_checkpoints(conn)


# -- the removal chain (records written by removals.record_removal), signed with the batch head -----------

_REMOVAL_CHAIN = ("SELECT id, chain_pos, lo, hi, reason, rows, archive_ref, removed_by, removed_at, audit_event_id, "
                  "audit_event_at, prev_hash, chain_hash FROM integrity_removals ORDER BY chain_pos NULLS LAST, id")
_REMOVAL_HEAD = "SELECT chain_pos, chain_hash FROM integrity_removal_head WHERE id = 1"


@dataclass(frozen=True)
class Removal:
    """One row of integrity_removals as stored (nothing in it is trusted until verify recomputes it)."""

    id: int
    chain_pos: int | None
    lo: datetime
    hi: datetime
    reason: str
    rows: int
    archive_ref: str | None
    removed_by: str
    removed_at: datetime
    audit_event_id: uuid.UUID | None
    audit_event_at: datetime | None
    prev_hash: bytes | None
    chain_hash: bytes | None


def stored_removals(conn: psycopg.Connection) -> list[Removal]:
    """Every removal record, in chain order (unchained rows last), within the caller's transaction."""
    return [Removal(*r[:11], *(bytes(h) if h is not None else None for h in r[11:]))
            for r in conn.execute(_REMOVAL_CHAIN).fetchall()]


def removal_head(conn: psycopg.Connection) -> tuple[int, bytes]:
    """The removal chain's head as stored: (chain_pos, chain_hash)."""
    pos, digest = conn.execute(_REMOVAL_HEAD).fetchone()
    return pos, bytes(digest)


_SIGNED = "SELECT checkpoints FROM integrity_signed WHERE id = 1"
_COUNT_SIGNED = "UPDATE integrity_signed SET checkpoints = checkpoints + 1 WHERE id = 1"
_LINKS_AFTER = ("SELECT chain_pos, batch_seq, kind, rows, root, lo, hi, sealed_at, prev_hash, chain_hash "
                "FROM integrity_batches WHERE chain_pos >= %s AND chain_pos <= %s ORDER BY chain_pos")


def _refuse(why: str) -> IntegrityError:
    return IntegrityError(f"refusing to sign the chain head: {why}. Run `auditwatch verify` (with checkpoints "
                          "exported off this machine, `--anchors`) to find where history was changed.")


def _check_batches_continue(conn: psycopg.Connection, previous: Checkpoint | None,
                            head_pos: int, head_hash: bytes) -> None:
    """The batch chain from the last signed position to the head: the signed link is still there, and
    every later link recomputes and follows the one before it."""
    start = previous.chain_pos if previous else 0
    if start > head_pos:
        raise _refuse(f"the chain does not continue the last signed checkpoint: it ends at #{head_pos}, "
                      f"before the signed position {start}")
    expected = previous.chain_hash if previous and start else chain.ZERO_HASH
    prev_pos, seen = start, start == 0
    for pos, seq, kind, rows, root, lo, hi, sealed_at, stored_prev, stored_hash in conn.execute(
            _LINKS_AFTER, (max(start, 1), head_pos)).fetchall():  # batches sealed since the head was read wait
        stored_prev, stored_hash = bytes(stored_prev), bytes(stored_hash)
        if not seen:  # the signed link itself
            if pos != start:
                break
            if stored_hash != expected:
                raise _refuse(f"the chain does not continue the last signed checkpoint: batch #{pos} no longer "
                              "has the signed hash (history up to it was rewritten)")
            seen = True
            continue
        if pos != prev_pos + 1 or stored_prev != expected:
            raise _refuse(f"batch #{pos} does not link to batch #{prev_pos}")
        if chain.chain_link(stored_prev, pos, seq, kind, rows, bytes(root), lo, hi, sealed_at) != stored_hash:
            raise _refuse(f"batch #{pos}'s chain hash does not match its fields")
        prev_pos, expected = pos, stored_hash
    if not seen:
        raise _refuse(f"the chain does not continue the last signed checkpoint: batch #{start} is missing")
    if (prev_pos, expected) != (head_pos, head_hash):
        raise _refuse(f"the chain does not continue the last signed checkpoint up to its head (position {head_pos})")


def _check_removals_continue(conn: psycopg.Connection, previous: Checkpoint | None) -> tuple[int, bytes]:
    """The removal chain, from its last signed head to its stored head; returns that head."""
    signed = previous.removals if previous else None
    start, expected = signed if signed else (0, chain.ZERO_HASH)
    prev_pos = 0
    link = chain.ZERO_HASH
    for r in stored_removals(conn):
        if r.chain_pos is None:
            raise _refuse(f"removal record #{r.id} ({r.reason}, {r.lo.isoformat()} .. {r.hi.isoformat()}) is not in "
                          "the removal chain: it was inserted by hand")
        if r.chain_pos != prev_pos + 1 or r.prev_hash != link or r.chain_hash != chain.removal_link(
                link, r.chain_pos, r.lo, r.hi, r.reason, r.rows, r.archive_ref, r.removed_by, r.removed_at,
                r.audit_event_id, r.audit_event_at):
            raise _refuse(f"removal record #{r.id} at removal chain position {r.chain_pos} was altered or "
                          "the one before it deleted")
        prev_pos, link = r.chain_pos, r.chain_hash
        if prev_pos == start and link != expected:
            raise _refuse("the removal chain does not continue the last signed checkpoint")
    if prev_pos < start:
        raise _refuse(f"the removal chain ends at position {prev_pos}, before the signed {start}")
    if (prev_pos, link) != removal_head(conn):
        raise _refuse("the removal chain's head does not match its last record")
    return prev_pos, link


def write_checkpoint(pool: ConnectionPool, key: Ed25519PrivateKey, *, now: datetime, force: bool = False,
                     trusted: frozenset[bytes] = frozenset()) -> Checkpoint | None:
    """Sign the current heads, chained to the previous checkpoint; None when nothing changed since.

    Refuses (``IntegrityError``) to sign a head that does not continue the last signed checkpoint, so a
    rewritten chain never gets a signature: the last checkpoint must be valid (signed by this key or a
    ``trusted`` one), its batch and removal links still in place, and every link since recomputable.
    """
    own = checkpoints.public_bytes(key)
    with pool.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CHECKPOINT_LOCK,))
        link_all(conn)  # nothing sealed before now is left out of what is signed (holds the head to commit)
        pos, head_hash, events = head(conn)
        head_hash = bytes(head_hash)
        row = conn.execute(_CP_LATEST).fetchone()
        previous = _checkpoint(row) if row else None
        signed = conn.execute(_SIGNED).fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM integrity_checkpoints").fetchone()[0]
        if stored != signed:
            raise _refuse(f"{signed} checkpoints were signed but {stored} are stored: checkpoints were deleted")
        if previous is not None:
            why = checkpoints.check(previous, trusted | {own})
            if why:
                raise _refuse(f"the last stored checkpoint is not valid ({why})")
        _check_batches_continue(conn, previous, pos, head_hash)
        removals_at = _check_removals_continue(conn, previous)
        if previous is not None and previous.chain_pos == pos and previous.removals == removals_at and not force:
            return None
        cp = checkpoints.sign(key, chain_pos=pos, chain_hash=head_hash, events=events, created_at=now,
                              previous=previous, removals=removals_at)
        conn.execute(_CP_INSERT, (cp.chain_pos, cp.chain_hash, cp.events, cp.created_at, cp.public_key,
                                  cp.payload, cp.signature))
        conn.execute(_COUNT_SIGNED)
    return cp


def checkpoint_job(pool: ConnectionPool, *, key: Ed25519PrivateKey, now: datetime | None = None,
                   trusted: frozenset[bytes] = frozenset()) -> None:
    """Scheduled: sign the chain head if anything was sealed since the last checkpoint."""
    cp = write_checkpoint(pool, key, now=now or datetime.now(UTC), trusted=trusted)
    if cp is not None:
        log.info("signed integrity checkpoint at chain position %d (%d events)", cp.chain_pos, cp.events)
