"""Lawful removal of whole time ranges from the hot table (archiving, retention).

Each removal is recorded in the same transaction that drops the chunk, so verify can tell a range
that left lawfully (and where its rows went) from rows deleted behind the writer's back.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

_REMOVAL = ("INSERT INTO integrity_removals (lo, hi, reason, rows, archive_ref, removed_by) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id")


def record_removal(conn: psycopg.Connection, lo: datetime, hi: datetime, *, reason: str, rows: int,
                   removed_by: str, archive_ref: str | None = None) -> int:
    """Record that events with lo <= timestamp < hi left the hot table lawfully; call it in the SAME
    transaction that drops the chunk. ``reason`` 'archive': the rows are in the cold tier (verify reads
    them there); 'retention': they are gone for good (their batches are reported as expired)."""
    if reason not in {"archive", "retention"}:
        raise ValueError("reason must be 'archive' or 'retention'")
    return conn.execute(_REMOVAL, (lo, hi, reason, rows, archive_ref, removed_by)).fetchone()[0]
