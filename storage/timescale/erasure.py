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

_READ = sql.SQL("SELECT {cols}, batch_seq, {leaf} FROM audit_events WHERE event_id = %s")
_ERASE = "SELECT integrity_erase(%s, %s, %s, %s, %s)"


@dataclass(frozen=True)
class Erased:
    row: tuple  # the COLUMNS values as read before the delete
    batch_seq: int | None
    leaf: bytes


def rows_to_erase(conn: psycopg.Connection, event_id: uuid.UUID) -> list[Erased]:
    """Every stored row with this event_id, with the batch and leaf it was sealed under."""
    return [Erased(tuple(r[:len(COLUMNS)]), r[len(COLUMNS)], bytes(r[len(COLUMNS) + 1]))
            for r in conn.execute(_READ.format(cols=COLUMN_LIST, leaf=leaf_sql()), (event_id,)).fetchall()]


def erase_rows(conn: psycopg.Connection, event_id: uuid.UUID, rows: Sequence[Erased], *, erasure_event_id: uuid.UUID,
               erased_by: str, erased_at: datetime) -> int:
    """Delete the rows read by ``rows_to_erase`` and keep their tombstones, through integrity_erase() (the
    application's database role may not DELETE an event itself). The erasure's event_erased record
    ``erasure_event_id`` must be stored in the same transaction: the database checks at commit."""
    return conn.execute(_ERASE, (event_id, [e.leaf for e in rows], erasure_event_id, erased_by,
                                 erased_at)).fetchone()[0]


def erase_event(pool: ConnectionPool, event_id: uuid.UUID,
                audit: Callable[[list[EventRecord]], EventRecord]) -> list[EventRecord]:
    """Delete every stored row with this event_id and store ``audit(erased)`` with it.

    Returns what was erased; nothing is written when there was nothing to erase.
    """
    with pool.connection() as conn:
        removed = rows_to_erase(conn, event_id)
        erased = [record_of(e.row) for e in removed]
        if erased:
            record = audit(erased)
            leaves = [e.leaf.hex() for e in removed]  # those of rows never sealed have no tombstone: harmless
            record = dataclasses.replace(record, metadata={**record.metadata, "integrity": {"erased_leaves": leaves}})
            erase_rows(conn, event_id, removed, erasure_event_id=record.event_id, erased_by=record.user_id,
                       erased_at=record.timestamp)
            insert_rows_sealed(conn, [row_of(record)])
            times = [e.timestamp for e in erased]
            conn.execute("INSERT INTO rollup_invalidations (low, high) VALUES (%s, %s)", (min(times), max(times)))
    return erased
