"""What the dashboard needs from the host application, passed in by ``mount`` (it never imports auditwatch)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
from psycopg_pool import ConnectionPool

from storage.auth import ApiKey

EXTENSION = "auditwatch.dashboard"


@dataclass(frozen=True)
class DashboardContext:
    pool: ConnectionPool
    authenticate: Callable[[str], ApiKey | None]
    audit: Callable[..., Any]  # audit(event_type, principal, *, metadata=, resource_id=, source_ip=, user_agent=)
    max_export_rows: int = 5_000_000
    # The alerts package's actions (list_alerts, acknowledge, create_silence: ``alerts.actions``), handed in
    # by the host so the dashboard never imports alerts/ itself; None where alerting is not configured.
    alert_actions: Any = None
    key_cache_seconds: float = 5.0
    _keys: dict[uuid.UUID, tuple[ApiKey | None, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def session_key(self, key_id: uuid.UUID, lookup: Callable[[uuid.UUID], ApiKey | None]) -> ApiKey | None:
        """A session's key, looked up at most every ``key_cache_seconds`` (a revocation ends it that soon)."""
        now = time.monotonic()
        cached = self._keys.get(key_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = lookup(key_id)
        with self._lock:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[key_id] = (found, now + self.key_cache_seconds)
        return found


def current() -> DashboardContext:
    """The context of the Flask app serving this request."""
    return flask.current_app.extensions[EXTENSION]
