"""Lawful erasure: the one path, besides retention and archiving, that removes a stored event.

The erasure, its own audit record and the integrity tombstones commit in one transaction: there
is never an erasure without its ``event_erased`` record, nor a record of an erasure that did not
happen. The tombstones keep each erased row's leaf hash so its batch still verifies, and the
audit record (itself sealed) lists those leaves, so verify can tell erasure from tampering.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.events import COLUMNS, EventRecord
from storage.timescale.queries import record_of
from storage.timescale.sealing import COLUMN_LIST, leaf_sql
from storage.timescale.writer import insert_rows_sealed, row_of

_ERASE = sql.SQL("DELETE FROM audit_events WHERE event_id = %s RETURNING {cols}, batch_seq, {leaf}")
_LEGACY_BATCH = ("SELECT batch_seq FROM integrity_batches WHERE kind = 'legacy' AND lo <= %s AND hi >= %s "
                 "ORDER BY chain_pos LIMIT 1")
_TOMBSTONE = ("INSERT INTO integrity_tombstones (event_id, \"timestamp\", batch_seq, leaf, erasure_event_id, "
              "erased_by, erased_at) VALUES (%s, %s, %s, %s, %s, %s, %s)")


@dataclass(frozen=True)
class Erased:
    row: tuple  # the COLUMNS values as deleted
    batch_seq: int | None
    leaf: bytes


def delete_for_erasure(conn: psycopg.Connection, event_id: uuid.UUID) -> list[Erased]:
    """Delete every row with this event_id, returning each with the batch and leaf it was sealed under."""
    out = []
    for r in conn.execute(_ERASE.format(cols=COLUMN_LIST, leaf=leaf_sql()), (event_id,)).fetchall():
        seq = r[len(COLUMNS)]
        if seq is None:  # a row adopted by migration 0005 belongs to its day's legacy batch
            found = conn.execute(_LEGACY_BATCH, (r[1], r[1])).fetchone()
            seq = found[0] if found else None
        out.append(Erased(tuple(r[:len(COLUMNS)]), seq, bytes(r[len(COLUMNS) + 1])))
    return out


def record_tombstones(conn: psycopg.Connection, erased: Sequence[Erased], *, erasure_event_id: uuid.UUID,
                      erased_by: str, erased_at: datetime) -> None:
    """Keep each erased row's leaf so its batch still verifies; same transaction as the delete."""
    for e in erased:
        if e.batch_seq is None:
            continue  # the row was never sealed: nothing to keep verifiable
        conn.execute(_TOMBSTONE, (e.row[0], e.row[1], e.batch_seq, e.leaf, erasure_event_id, erased_by, erased_at))


def erase_event(pool: ConnectionPool, event_id: uuid.UUID,
                audit: Callable[[list[EventRecord]], EventRecord]) -> list[EventRecord]:
    """Delete every stored row with this event_id and store ``audit(erased)`` with it.

    Returns what was erased; nothing is written when there was nothing to erase.
    """
    with pool.connection() as conn:
        removed = delete_for_erasure(conn, event_id)
        erased = [record_of(e.row) for e in removed]
        if erased:
            record = audit(erased)
            leaves = [e.leaf.hex() for e in removed if e.batch_seq is not None]
            record = dataclasses.replace(record, metadata={**record.metadata, "integrity": {"erased_leaves": leaves}})
            insert_rows_sealed(conn, [row_of(record)])
            record_tombstones(conn, removed, erasure_event_id=record.event_id, erased_by=record.user_id,
                              erased_at=record.timestamp)
            times = [e.timestamp for e in erased]
            conn.execute("INSERT INTO rollup_invalidations (low, high) VALUES (%s, %s)", (min(times), max(times)))
    return erased
