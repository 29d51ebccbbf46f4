"""A connection pool that fails fast while the database is down and recovers on its own when it returns.

A plain psycopg pool, during an outage, makes every caller wait its whole timeout (30 s) for a
connection that cannot come, and after a restart hands out connections that died with the old server.
``GuardedPool`` adds three things:

- a circuit: the first failure that a direct probe confirms (a broken connection, or no connection
  within a short slice) marks the database down, and from then on every ``connection()`` raises
  ``DatabaseDown`` at once (the API answers 503 with ``Retry-After: 1``);
- a background probe that connects every ``probe_interval`` seconds while down, and closes the circuit
  and sweeps stale connections out of the pool as soon as one succeeds;
- ``check``: each connection is tested before it is handed out, so one that died with a restart is
  replaced instead of failing the request (an idle connection whose socket has nothing to read passes
  without a round trip: a server that ended it has sent its error and closed the socket), and
  reconnection attempts are retried at least every ``reconnect_delay`` seconds instead of psycopg_pool's
  exponential backoff (1, 2, 4, 8 ... s), so the pool refills within a second of the database's return.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout
from psycopg_pool.pool import AddConnection

from storage.errors import DatabaseDown, ReplicaDown

log = logging.getLogger(__name__)

SLICE = 0.25  # seconds a caller waits for a connection before asking whether the database is there at all


def _quiet(conn: psycopg.Connection) -> bool:
    """An idle connection with nothing waiting on its socket: alive, as far as a round trip could tell.

    A server that ends a connection (a restart, a crash, ``pg_terminate_backend``, an idle timeout) sends
    its error and closes the socket, so the socket reads as ready; only then is the round trip worth its
    cost (two per API request otherwise). A host that vanishes without a word is not caught here, and a
    round trip would not catch it either: it waits for TCP's timeout.
    """
    if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
        return False
    try:  # poll, not select: a process with many files open (gunicorn, the bus) has descriptors over 1024
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


class GuardedPool(ConnectionPool):
    def __init__(self, conninfo: str, *, probe_interval: float = 0.2, reconnect_delay: float = 0.5,
                 probe_timeout: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 replica: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("check", self._check)
        super().__init__(conninfo, **kwargs)
        self._probe_interval = probe_interval
        self._reconnect_delay = reconnect_delay
        self._probe_timeout = probe_timeout
        self._clock = clock
        self._state = threading.Lock()
        self._down_since: float | None = None
        self._down_reason = ""
        self._prober: threading.Thread | None = None
        self._last_answer: float | None = None
        self._last_sweep = float("-inf")
        self.outages = 0  # how many times the circuit opened (for tests and metrics)
        self.replica = replica  # a read replica's pool: its outage says so, and never stops writes

    # -- the circuit -------------------------------------------------------------------------------

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def _unavailable(self) -> DatabaseDown:
        seconds = self._clock() - self._down_since if self._down_since is not None else 0.0
        if self.replica:
            return ReplicaDown(f"the read replica has not answered for {seconds:.1f} s ({self._down_reason}); "
                               "nothing was read, retry shortly. Writes still go to the primary. Check the "
                               "replica server, or unset AUDITWATCH_READ_DATABASE_URL to read from the primary.")
        return DatabaseDown(f"the database has not answered for {seconds:.1f} s ({self._down_reason}); "
                            "nothing was stored or read, retry shortly. Check the database server, or "
                            "`auditwatch db status` for the embedded one.")

    def probe(self) -> bool:
        """Whether a brand-new connection can run a query now (never through the pool's connections)."""
        try:
            with psycopg.connect(self.conninfo, connect_timeout=max(2, int(self._probe_timeout)),
                                 autocommit=True, **self._probe_kwargs()) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        self._last_answer = self._clock()
        return True

    def _answered_lately(self) -> bool:
        """A probe succeeded within the last second: a slow pool is then load, not an outage."""
        return self._last_answer is not None and self._clock() - self._last_answer < 1.0

    def _probe_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs or {})
        kwargs.pop("autocommit", None)
        return kwargs

    def trip(self, reason: BaseException | str) -> None:
        """Mark the database down (idempotent) and start probing for its return."""
        with self._state:
            if self._down_since is not None:
                return
            self._down_since = self._clock()
            self._down_reason = str(reason).strip().splitlines()[0][:200] if str(reason).strip() else "no answer"
            self.outages += 1
            log.error("database down for pool %r: %s", self.name, self._down_reason)
            self._prober = threading.Thread(target=self._probe_until_up, name=f"{self.name}-probe", daemon=True)
            self._prober.start()

    def _probe_until_up(self) -> None:
        while not self.closed:
            if self.probe():
                self._sweep()  # drop the connections that died with the old server, start new ones
                with self._state:
                    down_for = self._clock() - (self._down_since or self._clock())
                    self._down_since = None
                    self._prober = None
                log.warning("database back for pool %r after %.1f s", self.name, down_for)
                return
            time.sleep(self._probe_interval)

    def _confirm_down(self, exc: BaseException) -> None:
        """One failure may be one dead connection: trip only when a fresh connection fails too."""
        if self.down or not self.probe():
            self.trip(exc)
            raise self._unavailable() from exc

    # -- connections -----------------------------------------------------------------------------

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        if self.down:
            raise self._unavailable()
        conn = self._acquire(self.timeout if timeout is None else timeout)
        try:
            try:
                with conn:  # commit, or roll back on an error, as the plain pool does
                    yield conn
            finally:
                self.putconn(conn)  # a broken connection is discarded and replaced
        except psycopg.OperationalError as exc:
            if conn.broken or conn.closed:
                self._confirm_down(exc)
            raise

    def _acquire(self, timeout: float) -> psycopg.Connection:
        """A checked connection, waiting in short slices so an outage is noticed within one."""
        deadline = self._clock() + timeout
        while True:
            if self.down:
                raise self._unavailable()
            remaining = deadline - self._clock()
            try:
                return self.getconn(timeout=max(0.001, min(SLICE, remaining)))
            except PoolTimeout as exc:
                if self._clock() >= deadline:
                    self._confirm_down(exc)  # the database is there: the pool is merely busy
                    raise
                if not self._busy() and not self._answered_lately():
                    self._confirm_down(exc)

    def _check(self, conn: psycopg.Connection) -> None:
        """The pool's ``check``: a connection that died (a restart) fails it and is replaced; then its idle
        siblings, which most likely died with it, are swept at once instead of one failed check each."""
        if _quiet(conn):
            return
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            now = self._clock()
            with self._state:
                sweep = now - self._last_sweep > 1.0
                if sweep:
                    self._last_sweep = now
            if sweep:
                threading.Thread(target=self._sweep, name=f"{self.name}-sweep", daemon=True).start()
            raise

    def _sweep(self) -> None:
        try:
            self.check()
        except Exception as exc:  # noqa: BLE001 - each connection is still checked before use
            log.warning("pool %r: sweeping stale connections failed: %s", self.name, exc)

    def _busy(self) -> bool:
        """Every connection is lent out: waiting is expected, not a sign of an outage."""
        stats = self.get_stats()
        return stats.get("pool_available", 0) == 0 and stats.get("pool_size", 0) >= (self.max_size or 0)

    # -- reconnection --------------------------------------------------------------------------------

    def schedule_task(self, task: Any, delay: float) -> None:
        # psycopg_pool doubles the delay between reconnection attempts (up to minutes); after a long outage
        # the pool would stay empty for that long once the server is back.
        if isinstance(task, AddConnection):
            delay = min(delay, self._reconnect_delay)
        super().schedule_task(task, delay)
