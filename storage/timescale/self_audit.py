"""Audit records of the platform's own storage actions (holds, archiving, retention).

Each is written in the same transaction as the action it records, so there is never an action
without its record, nor a record of an action that did not happen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

from storage.events import EventRecord, Outcome
from storage.timescale.writer import insert_rows_sealed, row_of

# (event_type, metadata, resource_id) -> the record to store
Auditor = Callable[[str, dict[str, Any], str | None], EventRecord]


def auditor(actor: str, clock: Callable[[], datetime], *, source: str = "auditwatch") -> Auditor:
    """Records attributed to ``actor`` (e.g. ``cli:alice`` or ``worker``), stamped by ``clock``."""

    def record(event_type: str, metadata: dict[str, Any], resource_id: str | None) -> EventRecord:
        now = clock()
        return EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type=event_type, user_id=actor,
                           received_at=now, outcome=Outcome.SUCCESS, source=source, resource_id=resource_id,
                           metadata=metadata)

    return record


def store(conn: psycopg.Connection, record: EventRecord) -> None:
    """Insert the record within the caller's transaction, sealed in the integrity chain."""
    insert_rows_sealed(conn, [row_of(record)])
