"""Lawful erasure: the one path, besides retention and archiving, that removes a stored event.

The caller records the erasure itself as an ``event_erased`` audit event.
"""

from __future__ import annotations

import uuid

from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.events import COLUMNS, EventRecord
from storage.timescale.queries import record_of


def erase_event(pool: ConnectionPool, event_id: uuid.UUID) -> list[EventRecord]:
    """Delete every stored row with this event_id; returns what was erased."""
    statement = sql.SQL("DELETE FROM audit_events WHERE event_id = %s RETURNING {cols}").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
    )
    with pool.connection() as conn:
        rows = conn.execute(statement, (event_id,)).fetchall()
    return [record_of(r) for r in rows]
