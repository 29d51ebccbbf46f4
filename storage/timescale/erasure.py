"""Lawful erasure: the one path, besides retention and archiving, that removes a stored event.

The erasure, its own audit record and the integrity tombstones commit in one transaction: there
is never an erasure without its ``event_erased`` record, nor a record of an erasure that did not
happen. The tombstones keep each erased row's leaf hash so its batch still verifies, and the
audit record (itself sealed) lists those leaves, so verify can tell erasure from tampering.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from psycopg_pool import ConnectionPool

from storage.events import EventRecord
from storage.timescale import integrity
from storage.timescale.queries import record_of
from storage.timescale.writer import insert_rows_sealed, row_of


def erase_event(pool: ConnectionPool, event_id: uuid.UUID,
                audit: Callable[[list[EventRecord]], EventRecord]) -> list[EventRecord]:
    """Delete every stored row with this event_id and store ``audit(erased)`` with it.

    Returns what was erased; nothing is written when there was nothing to erase.
    """
    with pool.connection() as conn:
        removed = integrity.delete_for_erasure(conn, event_id)
        erased = [record_of(e.row) for e in removed]
        if erased:
            record = audit(erased)
            leaves = [e.leaf.hex() for e in removed if e.batch_seq is not None]
            record = dataclasses.replace(record, metadata={**record.metadata, "integrity": {"erased_leaves": leaves}})
            insert_rows_sealed(conn, [row_of(record)])
            integrity.record_tombstones(conn, removed, erasure_event_id=record.event_id, erased_by=record.user_id,
                                        erased_at=record.timestamp)
            times = [e.timestamp for e in erased]
            conn.execute("INSERT INTO rollup_invalidations (low, high) VALUES (%s, %s)", (min(times), max(times)))
    return erased
