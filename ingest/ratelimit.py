"""R6 across processes: per-sender (API key) budgets per minute live in PostgreSQL.

Each process leases small slices of a sender's budget, so most requests need no round
trip to the database. The sum of all leases never exceeds the limit, so the limit holds
across any number of servers; the price is that a slice leased by one process and not
used there within the minute is not available to another (at most ``lease - 1`` events
per sender, process and minute). Small limits lease nothing ahead and are exact.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from psycopg_pool import ConnectionPool

from storage.timescale import catalog


class RateLimiter:
    def __init__(self, pool: ConnectionPool, limit: int, *, lease: int | None = None) -> None:
        self._pool = pool
        self.limit = limit
        self.lease = lease if lease is not None else (limit // 50 if limit >= 100 else 0)
        self._window: datetime | None = None
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last_prune = 0.0

    def take(self, wanted: dict[str, int], window: datetime) -> dict[str, int]:
        """How many of ``wanted[sender]`` events each sender may send in ``window`` (a minute start)."""
        granted: dict[str, int] = {}
        reserved: dict[str, int] = {}
        ask: dict[str, int] = {}
        with self._lock:
            if window != self._window:
                self._window, self._held = window, {}
            for user, n in wanted.items():
                have = self._held.get(user, 0)
                if have >= n:
                    self._held[user] = have - n
                    granted[user] = n
                else:
                    # Take what we hold out of the shared pot now, so no other thread can spend it too.
                    self._held[user] = 0
                    reserved[user] = have
                    ask[user] = n - have + self.lease
        if ask:
            got = catalog.consume_rate(self._pool, ask, window, self.limit)
            with self._lock:
                for user, extra in got.items():
                    total = reserved[user] + extra
                    use = min(wanted[user], total)
                    granted[user] = use
                    if window == self._window:
                        self._held[user] = self._held.get(user, 0) + total - use
            self._prune(window)
        return granted

    def _prune(self, window: datetime) -> None:
        if time.monotonic() - self._last_prune > 60:
            self._last_prune = time.monotonic()
            catalog.prune_rate(self._pool, window - timedelta(minutes=2))
