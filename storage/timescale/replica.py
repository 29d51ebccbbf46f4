"""A streaming read replica: how far behind the primary it is, seen from both ends.

On the replica, ``pg_last_xact_replay_timestamp()`` is the commit time of the last transaction it replayed,
so ``now() - that`` is its lag while WAL is still arriving; once everything received has been replayed the
replica is caught up (lag 0) however long ago the primary last wrote. On the primary,
``pg_stat_replication`` lists the standbys streaming from it, with PostgreSQL's own lag measurements
(readable in full by superusers and members of ``pg_monitor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import DatabaseUnavailable

LAG_SQL = """
SELECT pg_is_in_recovery(),
       pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(),
       pg_last_xact_replay_timestamp(),
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8,
       now()
"""

STANDBYS_SQL = """
SELECT application_name, state, sync_state,
       EXTRACT(EPOCH FROM replay_lag)::float8,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
FROM pg_stat_replication
ORDER BY application_name
"""


@dataclass(frozen=True)
class ReplicaStatus:
    """The replica as its own server reports it."""

    ok: bool  # it answered and is a standby in recovery
    lag_seconds: float | None = None  # 0 when caught up; None when unknown (it never replayed a transaction)
    last_replayed_at: datetime | None = None  # commit time of the last replayed transaction
    problem: str | None = None

    def to_json(self) -> dict:
        body: dict = {"ok": self.ok, "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
                      "last_replayed_at": self.last_replayed_at.isoformat() if self.last_replayed_at else None}
        if self.problem:
            body["problem"] = self.problem
        return body


@dataclass(frozen=True)
class Standby:
    """One standby streaming from the primary (a row of ``pg_stat_replication``)."""

    name: str
    state: str | None
    sync_state: str | None
    replay_lag_seconds: float | None  # None without pg_monitor, or when idle
    replay_lag_bytes: int | None


def status(pool: ConnectionPool) -> ReplicaStatus:
    """Ask the replica (through its pool) how far behind it is; never raises for an unreachable one."""
    try:
        with pool.connection(timeout=2.0) as conn:
            in_recovery, caught_up, replayed_at, behind, _now = conn.execute(LAG_SQL).fetchone()
            conn.rollback()
    except (DatabaseUnavailable, PoolTimeout, psycopg.Error) as exc:
        return ReplicaStatus(False, problem=str(exc).strip().splitlines()[0][:300] or type(exc).__name__)
    if not in_recovery:
        return ReplicaStatus(False, problem="the read database is not a standby (pg_is_in_recovery() is false): "
                                            "AUDITWATCH_READ_DATABASE_URL must point at a streaming replica")
    lag = 0.0 if caught_up else (max(0.0, behind) if behind is not None else None)
    return ReplicaStatus(True, lag_seconds=lag, last_replayed_at=replayed_at)


def standbys(conn: psycopg.Connection) -> list[Standby]:
    """The standbys streaming from this (primary) server."""
    rows = conn.execute(STANDBYS_SQL).fetchall()
    return [Standby(name, state, sync, lag, lag_bytes) for name, state, sync, lag, lag_bytes in rows]
