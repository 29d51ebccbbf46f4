"""Serving the app with gunicorn (threads per worker; one pool and committer per worker)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from auditwatch import logs, metrics
from auditwatch.settings import Settings

if TYPE_CHECKING:
    from ingest.pipeline import IngestPipeline


class _GunicornLogs(glogging.Logger):
    """gunicorn's own lines (listening, workers booting or timed out) through the process's handler
    (``logs.configure``), so that with ``log_format = json`` every line of the server is one JSON object."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True


class AuditwatchServer(BaseApplication):
    def __init__(self, settings: Settings, *, log_level: str = "info") -> None:
        self._settings = settings
        self._log_level = log_level
        super().__init__()

    def load_config(self) -> None:
        s = self._settings
        for name, value in {
            "bind": f"{s.host}:{s.port}",
            "workers": s.workers,
            "threads": s.threads,
            "worker_class": "gthread",
            "timeout": 60,
            "graceful_timeout": 30,
            "keepalive": 15,
            "backlog": 2048,
            "loglevel": self._log_level,
            "accesslog": None,
            "logger_class": _GunicornLogs,
            "limit_request_line": 8190,
            "proc_name": "auditwatch",
            # Several servers (tests, benchmarks, `up`) may run side by side: no shared control socket.
            "control_socket_disable": True,
            # Multiprocess metrics: a dead worker's live gauges (pool use) must not count any more.
            "child_exit": _child_exit,
        }.items():
            self.cfg.set(name, value)

    def load(self):
        # Runs in each worker after fork, so every worker opens its own pool.
        from auditwatch.app import create_app

        app = create_app(self._settings)
        settle(app.extensions["auditwatch"].pipeline)
        if self._settings.dashboard:
            import dashboard

            dashboard.warm_up(app)
        return app


YOUNG_COLLECTION_AFTER = 10_000  # net allocations of container objects (Python's default: 700)


def settle(pipeline: IngestPipeline | None = None) -> None:
    """Ready a long-running ingest process once it is built: gunicorn workers, the syslog listener, the writer.

    First ``pipeline.preload()``: load what the first events would load (the geo database).

    Then take the start-up heap out of the garbage collector's full passes. The modules, the app and the geo
    database are well over 100,000 objects that live as long as the process; every full collection walked them all
    (85-90 ms each in-process), and a batch of events allocates enough to trigger one every few batches: ~8 µs of
    CPU per ingested event. Frozen, they are never walked again (nor freed: they are not garbage). And a batch
    allocates thousands of objects that live until it is stored: the youngest generation is collected after 10,000
    net allocations instead of 700, so a batch's objects are not walked again and again on their way to the oldest
    generation (~1.5 µs per event; at most 10,000 more objects wait for collection).
    """
    if pipeline is not None:
        pipeline.preload()
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, older, oldest)


def _child_exit(_server, worker) -> None:
    metrics.mark_process_dead(worker.pid)


def metrics_dir(settings: Settings) -> Path:
    """Where the gunicorn workers' metric files go: the setting, or one directory per port under data_dir."""
    if settings.metrics_dir:
        return Path(settings.metrics_dir)
    return settings.resolved_data_dir() / "metrics" / str(settings.port)


def serve(settings: Settings, *, log_level: str = "info") -> None:
    logs.configure(settings.log_format)
    metrics.enable_multiprocess(metrics_dir(settings))  # before the fork: see auditwatch/metrics.py
    AuditwatchServer(settings, log_level=log_level).run()
