"""The syslog listener's store processes (``syslog_processes`` ≥ 2).

One listener process reads every socket, frames lines and counts repeats (the ``Received`` of a line is fixed
there, so a retried batch yields the same event ids); parsing, validation, redaction, enrichment and the write,
almost all of a line's CPU, run in ``syslog_processes`` worker processes, each with its own pool and writer.
The integrity chain takes one lock per commit, as for several ``auditwatch writer`` processes.

Workers ignore SIGINT: Ctrl-C reaches a terminal's whole process group, and the listener, which drains its queue
through them and then shuts them down, must find them alive. SIGTERM keeps its default: the process pool itself
ends the survivors of a broken pool with it. A worker that dies (killed, out of memory, a service manager's SIGTERM
to every process of the unit) is replaced and its batches retried (``SyslogListener._run``): a batch it had
committed before dying is then stored once and counted as duplicates. A worker whose listener was killed exits.

What a worker returns is a ``BatchCounts`` summary, counted by the listener process into the progress line and
the ingest metrics of its ops port (the workers serve none).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import util

from auditwatch import logs
from auditwatch.server import settle
from auditwatch.services import Services
from auditwatch.settings import Settings
from ingest import metrics
from ingest.pipeline import BatchResult
from ingest.syslog.ingestor import SyslogIngestor
from ingest.syslog.listener import Received, StoreFailed
from storage.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

_ingestor: SyslogIngestor | None = None
_busy = threading.Lock()  # held while a batch is stored


class Totals:
    """The listener process's count of what its workers stored: the progress line reads ``totals``, and the
    ingest metrics of its ops port count each batch (the workers serve no metrics)."""

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()

    def add(self, counts: object) -> None:
        if not isinstance(counts, metrics.BatchCounts):
            return
        self.totals["created"] += counts.accepted
        self.totals["duplicate"] += counts.duplicates
        self.totals["rejected"] += sum(counts.rejected.values())
        counts.record("syslog")


def pool(settings: Settings, url: str, zones: dict[str, str]) -> ProcessPoolExecutor:
    """``settings.syslog_processes`` store workers, started fresh (spawn: nothing of the listener's threads,
    sockets or pool is inherited)."""
    executor = ProcessPoolExecutor(settings.syslog_processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start, initargs=(os.getpid(), settings, url, zones))
    for _ in range(settings.syslog_processes):  # start them now, not at the first line (a worker takes ~2 s)
        executor.submit(_ready)
    return executor


def _ready() -> None:
    """Nothing: submitted once per worker so that the pool starts them all at once."""


def _start(listener: int, settings: Settings, url: str, zones: dict[str, str]) -> None:
    global _ingestor
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # First: a listener killed while this worker starts must not leave it behind either.
    threading.Thread(target=_exit_when_orphaned, args=(listener,), name="orphan-watch", daemon=True).start()
    logs.configure(settings.log_format)
    services = _open_services(settings, url)
    util.Finalize(None, services.close, exitpriority=10)  # before the interpreter waits for threads at exit
    _ingestor = SyslogIngestor(services.pipeline, services.pool, zone=settings.syslog_zone, zones=zones,
                               unknown_users=settings.syslog_unknown_users)  # type: ignore[arg-type]
    settle(services.pipeline)


def _open_services(settings: Settings, url: str, *, first_delay: float = 1.0, max_delay: float = 10.0) -> Services:
    """The worker's services, waiting for as long as the database is down.

    A worker starting during an outage (one replacing a worker that died while the database was down) used to
    fail its start, which breaks the pool just as a death does: the listener counted each failed start as one,
    and after ``split_after_failures`` of them gave its batches up as unstorable, lines lost to an outage that
    the listener otherwise rides out by holding them. Waiting here holds them in the same way: the batches wait
    for the worker, the queue fills, and TCP senders are slowed down.
    """
    delay = first_delay
    while True:
        try:
            return Services.open(settings, url=url)
        except DatabaseUnavailable as exc:
            log.error("syslog: this store worker cannot reach the database (%s); trying again in %.0f s, its "
                      "batches wait meanwhile", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)


def _exit_when_orphaned(parent: int, every: float = 1.0) -> None:
    """A listener that was SIGKILLed leaves its workers waiting on a queue it can no longer write to (they hold
    its write end too), each holding database connections: a worker whose parent is gone finishes the batch it
    is storing, then exits."""
    while os.getppid() == parent:
        time.sleep(every)
    with _busy:
        log.error("syslog: the listener process %d is gone; this store worker exits", parent)
        os._exit(0)


def handle(batch: Sequence[Received]) -> metrics.BatchCounts:
    """Store a batch in this worker (the listener's ``handle``)."""
    assert _ingestor is not None, "a store worker runs _start first"
    return _stored(_ingestor, batch)


def fallback(batch: Sequence[Received], reason: BaseException) -> metrics.BatchCounts:
    """Store lines raw, with the reason (the listener's ``fallback``)."""
    assert _ingestor is not None, "a store worker runs _start first"
    return _stored(_ingestor.raw, batch, reason)


def _stored(store: Callable[..., BatchResult], *args: object) -> metrics.BatchCounts:
    """``store(*args)`` while holding ``_busy``, counted; a failure is sent back in a form that pickles."""
    started = time.perf_counter()
    try:
        with _busy:
            result = store(*args)
    except Exception as exc:  # noqa: BLE001 - sent back as StoreFailed, transient or not
        raise StoreFailed.of(exc) from None
    return metrics.BatchCounts.of(result, time.perf_counter() - started)
