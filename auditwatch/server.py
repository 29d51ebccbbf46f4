"""Serving the app with gunicorn (threads per worker; one pool and committer per worker)."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from auditwatch.settings import Settings


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
            "limit_request_line": 8190,
            "proc_name": "auditwatch",
            # Several servers (tests, benchmarks, `up`) may run side by side: no shared control socket.
            "control_socket_disable": True,
        }.items():
            self.cfg.set(name, value)

    def load(self):
        # Runs in each worker after fork, so every worker opens its own pool.
        from auditwatch.app import create_app

        return create_app(self._settings)


def serve(settings: Settings, *, log_level: str = "info") -> None:
    AuditwatchServer(settings, log_level=log_level).run()
