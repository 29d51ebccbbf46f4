"""Sealing: every write appends its batch to the integrity chain, and the chain's head is signed.

A writer's rows go through the staging table and one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
whose RETURNING computes each row's leaf hash from the values as stored (or, on the COPY fast path,
``prepare_batch`` computes them from the server's own normalisation); the Merkle root of the new rows
is appended to the chain at the very end of the transaction (the head-row lock is held only from
there to commit). Checkpoints sign the head periodically, chained to each other.

The pure hashing and signing are in ``storage.integrity``; ``verify.py`` recomputes all of it.
Nothing here reads the archive, so the writer (and everything that writes through it) stays below
the cold tier.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.events import COLUMNS, EventRecord
from storage.integrity import chain, checkpoints
from storage.integrity.checkpoints import Checkpoint

log = logging.getLogger(__name__)

# -- the leaf hash in SQL (storage.integrity.chain.canonical is the reference) -------------------------


def _text(expr: sql.Composable) -> sql.Composable:
    return sql.SQL("coalesce('\\x01'::bytea || int4send(octet_length(convert_to({e}, 'UTF8'))) "
                   "|| convert_to({e}, 'UTF8'), '\\x00'::bytea)").format(e=expr)


def _micros(expr: sql.Composable) -> sql.Composable:
    # The binary send form: int8 microseconds since 2000-01-01 UTC, independent of TimeZone/DateStyle.
    return sql.SQL("timestamptz_send({})").format(expr)


def leaf_sql(qualifier: str | None = None) -> sql.Composable:
    """sha256(0x00 || canonical row) over the columns of ``qualifier`` (a table or alias), built only
    from built-in functions, so an attacker who redefines a stored function cannot fool verify."""
    def col(name: str) -> sql.Composable:
        return sql.Identifier(qualifier, name) if qualifier else sql.Identifier(name)

    texts = []
    for name in chain.TEXT_FIELDS:
        if name == "source_ip":
            texts.append(_text(sql.SQL("(host({c}) || '/' || masklen({c}))").format(c=col(name))))
        elif name == "metadata":
            texts.append(_text(sql.SQL("{}::text").format(col(name))))
        else:
            texts.append(_text(col(name)))
    return sql.SQL("sha256('\\x00'::bytea || '\\x01'::bytea || uuid_send({eid}) || {ts} || {texts} || {rat})").format(
        eid=col("event_id"), ts=_micros(col("timestamp")), texts=sql.SQL(" || ").join(texts),
        rat=_micros(col("received_at")))


# -- batches, in the writer's transaction ---------------------------------------------------------------

COLUMN_LIST = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
_NEXT_BATCH = "SELECT nextval('integrity_batch_seq')"
_INSERT_SEALED = sql.SQL(
    "INSERT INTO audit_events ({cols}, batch_seq) SELECT {cols}, %s FROM {staging} "
    'ON CONFLICT DO NOTHING RETURNING event_id, "timestamp", {leaf}'
)
_APPEND = "SELECT integrity_append(%s, 'batch', %s, %s, %s, %s)"
# What PostgreSQL makes of the two values that do not round-trip as sent (jsonb normalises numbers, key
# order and spacing; inet prints addresses its own way), parsed by the same input functions as the COPY.
_NORMALISE = ("SELECT nextval('integrity_batch_seq'), "
              "ARRAY(SELECT m::jsonb::text FROM unnest(%b::text[]) WITH ORDINALITY AS t(m, o) ORDER BY o), "
              "ARRAY(SELECT host(a::inet) || '/' || masklen(a::inet) FROM unnest(%b::text[]) WITH ORDINALITY "
              "AS t(a, o) ORDER BY o)")


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
    leaf_of = chain.leaf_of
    return batch, [
        leaf_of(r.event_id, r.timestamp, (r.event_type, r.user_id, str(r.outcome), r.source, ip, r.source_country,
                                          r.source_asn, r.user_agent, r.resource_id, meta), r.received_at)
        for r, meta, ip in zip(records, metadata, hosts, strict=True)]


def seal_prepared(cursor: psycopg.Cursor, batch: int, records: Sequence[EventRecord], leaves: list[bytes]) -> None:
    """Append the batch written with ``prepare_batch``'s leaves to the chain (takes the head lock)."""
    times = [r.timestamp for r in records]
    cursor.execute(_APPEND, (batch, len(leaves), chain.merkle_root(leaves), min(times), max(times)))


def insert_sealed(cursor: psycopg.Cursor, staging: sql.Identifier) -> set[tuple[uuid.UUID, datetime]]:
    """Move the staged rows into audit_events as one sealed batch; returns the keys inserted.

    Runs inside the caller's transaction and ends by taking the chain's head lock: commit promptly.
    Rows refused as duplicates are already sealed in the batch that first stored them.
    """
    batch = next_batch(cursor)
    cursor.execute(_INSERT_SEALED.format(cols=COLUMN_LIST, staging=staging, leaf=leaf_sql()), (batch,))
    returned = cursor.fetchall()
    if returned:
        times = [r[1] for r in returned]
        cursor.execute(_APPEND, (batch, len(returned), chain.merkle_root(r[2] for r in returned),
                                 min(times), max(times)))
    return {(r[0], r[1]) for r in returned}


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


def write_checkpoint(pool: ConnectionPool, key: Ed25519PrivateKey, *, now: datetime,
                     force: bool = False) -> Checkpoint | None:
    """Sign the current head, chained to the previous checkpoint; None when nothing was sealed since."""
    with pool.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CHECKPOINT_LOCK,))
        pos, head_hash, events = head(conn)
        row = conn.execute(_CP_LATEST).fetchone()
        previous = _checkpoint(row) if row else None
        if previous is not None and previous.chain_pos == pos and not force:
            return None
        cp = checkpoints.sign(key, chain_pos=pos, chain_hash=bytes(head_hash), events=events,
                              created_at=now, previous=previous)
        conn.execute(_CP_INSERT, (cp.chain_pos, cp.chain_hash, cp.events, cp.created_at, cp.public_key,
                                  cp.payload, cp.signature))
    return cp


def checkpoint_job(pool: ConnectionPool, *, key: Ed25519PrivateKey, now: datetime | None = None) -> None:
    """Scheduled: sign the chain head if anything was sealed since the last checkpoint."""
    cp = write_checkpoint(pool, key, now=now or datetime.now(UTC))
    if cp is not None:
        log.info("signed integrity checkpoint at chain position %d (%d events)", cp.chain_pos, cp.events)
