"""Lawful erasure: the one path, besides retention and archiving, that removes a stored event.

The erasure and its own audit record commit in one transaction: there is never an
erasure without its ``event_erased`` record, nor a record of an erasure that did not happen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.events import COLUMNS, EventRecord
from storage.timescale.queries import record_of
from storage.timescale.writer import insert_rows, row_of

_DELETE = sql.SQL("DELETE FROM audit_events WHERE event_id = %s RETURNING {cols}").format(
    cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
)


def erase_event(pool: ConnectionPool, event_id: uuid.UUID,
                audit: Callable[[list[EventRecord]], EventRecord]) -> list[EventRecord]:
    """Delete every stored row with this event_id and store ``audit(erased)`` with it.

    Returns what was erased; nothing is written when there was nothing to erase.
    """
    with pool.connection() as conn:
        erased = [record_of(r) for r in conn.execute(_DELETE, (event_id,)).fetchall()]
        if erased:
            with conn.cursor() as cur:
                insert_rows(cur, [row_of(audit(erased))])
            times = [e.timestamp for e in erased]
            conn.execute("INSERT INTO rollup_invalidations (low, high) VALUES (%s, %s)", (min(times), max(times)))
    return erased
