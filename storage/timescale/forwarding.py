"""The forwarder's outbox: events in integrity-chain order after each destination's cursor.

The stored events are the outbox (audit data is append-only, so nothing is copied): a destination's
cursor is the last chain position it acknowledged, and the next send is the batches after it, in
commit order. The cursor moves only after the receiver took the events (at-least-once), and a
failing destination backs off without holding anything else up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

from storage.events import COLUMNS, EventRecord
from storage.timescale.queries import record_of


@dataclass(frozen=True)
class Cursor:
    destination: str
    chain_pos: int
    forwarded: int
    failures: int
    last_error: str | None
    retry_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class Pending:
    events: list[EventRecord]
    through: int  # the chain position to acknowledge once ``events`` are delivered (the cursor if none)


def cursor(conn: psycopg.Connection, destination: str) -> Cursor:
    """The destination's cursor, created at position 0 (all stored history) on first use."""
    with conn.transaction():
        conn.execute("INSERT INTO forwarder_cursors (destination) VALUES (%s) ON CONFLICT DO NOTHING",
                     (destination,))
        with conn.cursor(row_factory=class_row(Cursor)) as cur:
            return cur.execute("SELECT destination, chain_pos, forwarded, failures, last_error, retry_at, updated_at "
                               "FROM forwarder_cursors WHERE destination = %s", (destination,)).fetchone()


_ROWS = sql.SQL("SELECT {cols} FROM audit_events WHERE batch_seq = ANY(%s) "
                "ORDER BY batch_seq, \"timestamp\", event_id").format(
    cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS))


def pending(conn: psycopg.Connection, destination: str, *, max_events: int) -> Pending:
    """Whole batches after the cursor, up to ``max_events`` (at least one batch, however large)."""
    at = cursor(conn, destination).chain_pos
    batches = conn.execute(
        "SELECT chain_pos, batch_seq, rows, kind FROM integrity_batches WHERE chain_pos > %s ORDER BY chain_pos "
        "LIMIT %s", (at, max(1, max_events))).fetchall()
    chosen, total, through = [], 0, at
    for pos, seq, rows, kind in batches:
        if chosen and total + rows > max_events:
            break
        if kind == "batch":
            chosen.append(seq)
        total += rows
        through = pos
    events = [record_of(r) for r in conn.execute(_ROWS, (chosen,)).fetchall()] if chosen else []
    return Pending(events, through)


def acknowledge(pool: ConnectionPool, destination: str, through: int, sent: int) -> None:
    """The receiver took everything up to ``through``: move the cursor (never backwards) and clear failures."""
    with pool.connection() as conn:
        conn.execute("UPDATE forwarder_cursors SET chain_pos = greatest(chain_pos, %s), forwarded = forwarded + %s, "
                     "failures = 0, last_error = NULL, retry_at = NULL, updated_at = now() WHERE destination = %s",
                     (through, sent, destination))


def failed(pool: ConnectionPool, destination: str, error: str, *, now: datetime, base: timedelta,
           cap: timedelta) -> timedelta:
    """Record a failed attempt; returns the backoff (doubling from ``base`` up to ``cap``) before the next."""
    with pool.connection() as conn, conn.transaction():
        failures = conn.execute("UPDATE forwarder_cursors SET failures = failures + 1, last_error = %s, "
                                "updated_at = now() WHERE destination = %s RETURNING failures",
                                (error[:2000], destination)).fetchone()[0]
        delay = min(cap, base * 2 ** min(failures - 1, 20))
        conn.execute("UPDATE forwarder_cursors SET retry_at = %s WHERE destination = %s", (now + delay, destination))
    return delay


def backlog(conn: psycopg.Connection, destination: str) -> int:
    """Events stored after the cursor (what the destination is behind by)."""
    at = cursor(conn, destination).chain_pos
    return conn.execute("SELECT coalesce(sum(rows), 0) FROM integrity_batches WHERE chain_pos > %s",
                        (at,)).fetchone()[0]
