"""The notification outbox: notifications leased to dispatchers, and the log of their delivery attempts.

Functions that must share a transaction take a connection; the rest take the pool.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.timescale.db import where


@dataclass(frozen=True)
class Notification:
    notification_id: int
    receiver: str
    group_key: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    lease_until: datetime | None
    delivered_at: datetime | None
    last_error: str | None


_NOTIFICATION_COLUMNS = [f.name for f in fields(Notification)]
_SELECT_NOTIFICATIONS = sql.SQL("SELECT {} FROM alert_notifications").format(
    sql.SQL(", ").join(map(sql.Identifier, _NOTIFICATION_COLUMNS)))


def enqueue(conn: psycopg.Connection, *, receiver: str, group_key: str, kind: str, payload: dict[str, Any],
            now: datetime) -> int:
    return conn.execute("INSERT INTO alert_notifications (receiver, group_key, kind, payload, created_at, "
                        "next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING notification_id",
                        (receiver, group_key, kind, Jsonb(payload), now, now)).fetchone()[0]


@dataclass(frozen=True)
class Claim:
    notification: Notification
    reclaimed: bool  # an earlier dispatcher's lease ran out: that attempt's outcome is unknown


def claim_due(pool: ConnectionPool, *, now: datetime, lease_seconds: float, limit: int = 50) -> list[Claim]:
    """Lease due notifications, at most the oldest undelivered one per (receiver, group), so order holds.

    A row still 'sending' with an expired lease was claimed by a dispatcher that died mid-delivery:
    it is due again (its receiver may already have it; ``reclaimed`` says so).
    """
    statement = sql.SQL(
        "WITH heads AS (SELECT DISTINCT ON (receiver, group_key) notification_id, status, next_attempt_at, "
        "lease_until FROM alert_notifications WHERE status IN ('pending', 'sending') "
        "ORDER BY receiver, group_key, notification_id), "
        "due AS (SELECT n.notification_id, n.status AS previous FROM alert_notifications n "
        "JOIN heads h USING (notification_id) "
        "WHERE (h.status = 'pending' AND h.next_attempt_at <= %(now)s) OR (h.status = 'sending' AND "
        "h.lease_until <= %(now)s) ORDER BY n.notification_id LIMIT %(limit)s FOR UPDATE OF n SKIP LOCKED) "
        "UPDATE alert_notifications SET status = 'sending', lease_until = %(lease)s, attempts = attempts + 1 "
        "FROM due WHERE alert_notifications.notification_id = due.notification_id RETURNING {}, due.previous"
    ).format(sql.SQL(", ").join(sql.SQL("alert_notifications.{}").format(sql.Identifier(c))
                                for c in _NOTIFICATION_COLUMNS))
    with pool.connection() as conn, conn.transaction():
        rows = conn.execute(statement, {"now": now, "limit": limit,
                                        "lease": now + timedelta(seconds=lease_seconds)}).fetchall()
    claims = [Claim(Notification(*row[:-1]), row[-1] == "sending") for row in rows]
    return sorted(claims, key=lambda c: c.notification.notification_id)


def record_attempt(pool: ConnectionPool, notification_id: int, *, at: datetime, outcome: str,
                   status_code: int | None = None, error: str | None = None, retry_after: float | None = None,
                   next_attempt_at: datetime | None = None) -> None:
    """Log one delivery attempt and move the notification on: delivered, retried later, or failed."""
    status = {"delivered": "delivered", "confirmed": "delivered", "retry": "pending", "failed": "failed"}[outcome]
    with pool.connection() as conn, conn.transaction():
        conn.execute("INSERT INTO alert_notification_attempts (notification_id, at, outcome, status_code, error, "
                     "retry_after) VALUES (%s, %s, %s, %s, %s, %s)",
                     (notification_id, at, outcome, status_code, error, retry_after))
        conn.execute("UPDATE alert_notifications SET status = %s, lease_until = NULL, last_error = %s, "
                     "next_attempt_at = coalesce(%s, next_attempt_at), "
                     "delivered_at = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_at END "
                     "WHERE notification_id = %s",
                     (status, error, next_attempt_at, status, at, notification_id))


def notifications(pool: ConnectionPool, *, fingerprint: str | None = None, receiver: str | None = None,
                  statuses: Collection[str] | None = None, limit: int = 100) -> list[Notification]:
    w = (where().compare(sql.SQL("payload->'alerts'"), "@>",
                         Jsonb([{"fingerprint": fingerprint}]) if fingerprint is not None else None)
         .eq("receiver", receiver).any("status", statuses))
    with pool.connection() as conn, conn.cursor(row_factory=class_row(Notification)) as cur:
        return cur.execute(_SELECT_NOTIFICATIONS + w.sql() + sql.SQL(" ORDER BY notification_id DESC LIMIT %s"),
                           [*w.params, limit]).fetchall()


@dataclass(frozen=True)
class Attempt:
    id: int
    notification_id: int
    at: datetime
    outcome: str
    status_code: int | None
    error: str | None
    retry_after: float | None
    receiver: str
    kind: str


def attempts(pool: ConnectionPool, *, notification_ids: Iterable[int] | None = None,
             limit: int = 200) -> list[Attempt]:
    statement = sql.SQL("SELECT a.id, a.notification_id, a.at, a.outcome, a.status_code, a.error, a.retry_after, "
                        "n.receiver, n.kind FROM alert_notification_attempts a JOIN alert_notifications n "
                        "USING (notification_id)")
    params: list[Any] = []
    if notification_ids is not None:
        statement += sql.SQL(" WHERE a.notification_id = ANY(%s::bigint[])")
        params.append(list(notification_ids))
    params.append(limit)
    with pool.connection() as conn, conn.cursor(row_factory=class_row(Attempt)) as cur:
        return cur.execute(statement + sql.SQL(" ORDER BY a.id DESC LIMIT %s"), params).fetchall()
