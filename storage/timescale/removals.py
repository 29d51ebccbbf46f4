"""Lawful removal of whole time ranges from the hot table (archiving, retention).

Each removal is recorded in the same transaction that drops the chunk (or expires the file), as the
next link of the removal chain (whose head every checkpoint signs), together with its sealed
self-audit record, which names the link. So verify can tell a range that left lawfully (and where its
rows went) from rows deleted behind the writer's back, and a removal record typed in by hand, or
appended without its sealed record, excuses nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import psycopg

from storage.events import EventRecord
from storage.timescale import self_audit

# reason -> its self-audit type. 'erasure' links (archived rows erased) are recorded by integrity_erase_archived
# (storage/timescale/erasure.py), their event_erased record naming them in metadata.integrity.removals.
REASONS = {"archive": "events_archived", "retention": "events_expired", "erasure": "event_erased"}

_RECORD = "SELECT removal_id, removal_pos FROM integrity_record_removal(%s, %s, %s, %s, %s, %s, %s, %s)"


def record_removal(conn: psycopg.Connection, lo: datetime, hi: datetime, *, reason: str, rows: int,
                   removed_by: str, record: EventRecord, archive_ref: str | None = None) -> int:
    """Record that events with lo <= timestamp < hi left the hot table lawfully, and store ``record`` (its
    ``events_archived``/``events_expired`` self-audit record) sealed, naming the link; call it in the SAME
    transaction that drops the chunk. ``reason`` 'archive': the rows are in the cold tier (verify reads them
    there); 'retention': they are gone for good (their batches are reported as expired)."""
    if reason not in ("archive", "retention"):
        raise ValueError("reason must be 'archive' or 'retention' (erasures are recorded by storage.timescale.erasure)")
    if record.event_type != REASONS[reason]:
        raise ValueError(f"a {reason} removal is recorded with an {REASONS[reason]} record, not {record.event_type}")
    removal_id, pos = conn.execute(_RECORD, (lo, hi, reason, rows, archive_ref, removed_by,
                                             record.event_id, record.timestamp)).fetchone()
    link = {"chain_pos": pos, "lo": lo.isoformat(), "hi": hi.isoformat(), "reason": reason, "rows": rows}
    self_audit.store(conn, dataclasses.replace(
        record, metadata={**record.metadata, "integrity": {"removal": link}}))
    return removal_id
