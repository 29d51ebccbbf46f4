"""Audit records of the platform's own actions: the one builder, redacted by R9's rules, and their store.

Every self-audit record (reads, exports, key and config changes, erasures, holds, archiving,
retention), whichever package the action happens in, is built by ``record`` so it carries the same
fields and goes through the same redaction as an ingested event. Records of storage actions are
stored with ``store`` in the same transaction as the action they record, so there is never an
action without its record, nor a record of an action that did not happen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.events import EventRecord, Outcome
from storage.platform import PRINCIPAL_PREFIXES
from storage.redaction import Redactor
from storage.timescale.writer import insert_rows_sealed, row_of

# The platform's own principals, as its audit records name them in ``user_id`` (``storage.platform``: API keys
# ``apikey:<name>``, operators ``cli:<login>``; ingest refuses them from producers). Their activity (setting
# up users, rules and keys; reads; exports) is a population of its own: the user detectors do not score it
# and its rollup series has its own baseline (analytics.jobs).


def platform_actor(column: str = "user_id") -> pl.Expr:
    """True where ``column`` names one of the platform's own principals (a Polars expression)."""
    col = pl.col(column).str.to_lowercase()
    return pl.any_horizontal(col.str.starts_with(p) for p in PRINCIPAL_PREFIXES)


def platform_sql(column: str = "user_id") -> tuple[sql.Composable, list[Any]]:
    """The same test as ``platform_actor`` as SQL (with its parameter)."""
    clause = sql.SQL("(lower({col}) LIKE ANY(%s::text[]))").format(col=sql.Identifier(column))
    return clause, [[p + "%" for p in PRINCIPAL_PREFIXES]]


# (event_type, metadata, resource_id) -> the record to store
Auditor = Callable[[str, dict[str, Any], str | None], EventRecord]
# metadata -> metadata with sensitive values replaced (a Redactor's ``redact``)
Redact = Callable[[dict[str, Any]], dict[str, Any]]

_DEFAULT_REDACT: Redact = Redactor().redact


def record(event_type: str, actor: str, *, now: datetime, metadata: dict[str, Any] | None = None,
           outcome: Outcome = Outcome.SUCCESS, resource_id: str | None = None, source_ip: str | None = None,
           user_agent: str | None = None, source: str = "auditwatch", redact: Redact = _DEFAULT_REDACT) -> EventRecord:
    """The audit record of an action by ``actor`` at ``now``, its metadata redacted (default: R9's keys;
    pass the configured redactor's ``redact`` where settings add keys)."""
    return EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type=event_type, user_id=actor, received_at=now,
                       outcome=outcome, source=source, source_ip=source_ip, resource_id=resource_id,
                       user_agent=user_agent, metadata=redact(metadata or {}))


def auditor(actor: str, clock: Callable[[], datetime], *, source: str = "auditwatch",
            redact: Redact = _DEFAULT_REDACT) -> Auditor:
    """Records attributed to ``actor`` (e.g. ``cli:alice`` or ``worker``), stamped by ``clock``."""

    def build(event_type: str, metadata: dict[str, Any], resource_id: str | None) -> EventRecord:
        return record(event_type, actor, now=clock(), metadata=metadata, resource_id=resource_id, source=source,
                      redact=redact)

    return build


def store(conn: psycopg.Connection, record: EventRecord) -> None:
    """Insert the record within the caller's transaction, sealed in the integrity chain."""
    insert_rows_sealed(conn, [row_of(record)])


@contextmanager
def storing(pool: ConnectionPool, record: EventRecord) -> Iterator[None]:
    """For a change outside the database (e.g. a rule file): store ``record`` first, run the block (the
    change) inside the same transaction, and commit only if it succeeds. A record that cannot be stored
    stops the change; a change that fails leaves no record. If the commit itself fails after the block,
    the caller must undo its change (it sees the exception)."""
    with pool.connection() as conn, conn.transaction():
        store(conn, record)
        yield
