"""The platform's own state, read for /metrics and /readyz: outbox backlog, delivery failures, the newest
integrity checkpoint, stored anomaly incidents, the schema version. Small aggregate queries, one round trip
each, cheap enough for every scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import DatabaseUnavailable
from storage.timescale import migrations
from storage.timescale.platform_health import OLDEST_UNSIGNED


@dataclass(frozen=True)
class OutboxBacklog:
    receiver: str
    status: str  # pending | sending
    notifications: int
    oldest_created_at: datetime


@dataclass(frozen=True)
class OpsState:
    backlog: list[OutboxBacklog]
    delivery_failures: dict[str, int]  # receiver -> attempts that failed (retry or given up), ever
    last_checkpoint_at: datetime | None
    oldest_unsigned_at: datetime | None  # the oldest sealed batch no checkpoint signs yet (None: all signed)
    chain_events: int | None  # events sealed into the integrity chain, ever (None: integrity never used)
    anomalies: dict[tuple[str, str], int]  # (detector, severity) -> stored incidents


_BACKLOG = ("SELECT receiver, status, count(*), min(created_at) FROM alert_notifications "
            "WHERE status IN ('pending', 'sending') GROUP BY receiver, status")
_FAILURES = ("SELECT n.receiver, count(*) FROM alert_notification_attempts a "
             "JOIN alert_notifications n USING (notification_id) WHERE a.outcome IN ('retry', 'failed') "
             "GROUP BY n.receiver")
_CHECKPOINT = "SELECT max(created_at) FROM integrity_checkpoints"
_CHAIN = "SELECT events FROM integrity_head WHERE id = 1"
_ANOMALIES = "SELECT detector, severity, count(*) FROM anomalies GROUP BY detector, severity"


def read(pool: ConnectionPool) -> OpsState:
    """Everything at once, in one read-only transaction."""
    with pool.connection() as conn, conn.transaction():
        backlog = [OutboxBacklog(*row) for row in conn.execute(_BACKLOG).fetchall()]
        failures = {receiver: n for receiver, n in conn.execute(_FAILURES).fetchall()}
        last = conn.execute(_CHECKPOINT).fetchone()[0]
        unsigned = conn.execute(OLDEST_UNSIGNED).fetchone()[0]
        chain = conn.execute(_CHAIN).fetchone()
        anomalies = {(d, s): n for d, s, n in conn.execute(_ANOMALIES).fetchall()}
    return OpsState(backlog, failures, last, unsigned, chain[0] if chain else None, anomalies)


@dataclass(frozen=True)
class Readiness:
    ok: bool
    schema_version: int | None
    expected_version: int
    problem: str | None = None


def readiness(pool: ConnectionPool, *, timeout: float = 2.0) -> Readiness:
    """Can this process serve: the database answers, and its schema is the one this code was built for."""
    expected = max((m.version for m in migrations.available()), default=0)
    try:
        with pool.connection(timeout=timeout) as conn:
            version = migrations.current_version(conn)
            conn.rollback()
    except (psycopg.Error, OSError, PoolTimeout, DatabaseUnavailable) as exc:
        return Readiness(False, None, expected, f"the database does not answer: {exc.__class__.__name__}: {exc}")
    if version is None:
        return Readiness(False, None, expected, "the database has no schema; run `auditwatch migrate`")
    if version < expected:
        return Readiness(False, version, expected,
                         f"the schema is at version {version}, this code needs {expected}; run `auditwatch migrate`")
    if version > expected:
        return Readiness(False, version, expected,
                         f"the schema is at version {version}, newer than this code ({expected}); upgrade auditwatch")
    return Readiness(True, version, expected)
