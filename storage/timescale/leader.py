"""Leader election between worker processes with a PostgreSQL session advisory lock.

APScheduler 3's job stores do not coordinate processes, so every worker schedules every job; a
job that must run once runs only where ``is_leader()`` is true. The lock lives on a dedicated
connection: when the leader process dies its connection closes, PostgreSQL releases the lock,
and the next worker to ask becomes leader.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import psycopg

from storage.errors import DatabaseUnavailable
from storage.timescale.db import connect

log = logging.getLogger(__name__)

ANALYTICS_LOCK = 0x414E_414C_5954  # 'ANALYT'


@dataclass(frozen=True)
class Holder:
    application_name: str
    backend_pid: int


class AdvisoryLeader:
    """Holds (or keeps trying to take) one session advisory lock on its own connection."""

    def __init__(self, url: str, *, key: int = ANALYTICS_LOCK, name: str = "auditwatch-worker") -> None:
        self.url = url
        self.key = key
        self.name = name
        self._conn: psycopg.Connection | None = None
        self._held = False
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        """True while this process holds the lock; tries to take it when it does not."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.url, autocommit=True, application_name=self.name[:63])
                    self._held = False
                if self._held:
                    self._conn.execute("SELECT 1")  # the lock is only ours while the session lives
                    return True
                self._held = bool(self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0])
                if self._held:
                    log.info("%s is now the analytics leader", self.name)
                return self._held
            except (psycopg.Error, DatabaseUnavailable) as exc:
                log.warning("leader election: lost the database session (%s); not leading until it is back", exc)
                self._drop()
                return False

    def release(self) -> None:
        """Give the lock up (on shutdown) so another worker takes over at once."""
        with self._lock:
            if self._conn is not None and not self._conn.closed and self._held:
                try:
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                except psycopg.Error as exc:
                    log.warning("could not release the leader lock cleanly (%s); closing the session", exc)
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._held = False


def holder(conn: psycopg.Connection, key: int = ANALYTICS_LOCK) -> Holder | None:
    """Who holds the lock now (its application_name and backend pid), or None."""
    row = conn.execute(
        "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
        (key,),
    ).fetchone()
    return Holder(row[0], row[1]) if row else None
