"""What the dashboard needs from the host application, passed in by ``mount`` (it never imports auditwatch)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import flask
from psycopg_pool import ConnectionPool

from storage.auth import ApiKey
from storage.events import EventRecord
from storage.timescale import self_audit

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
    # audit_record(event_type, principal, *, metadata=, resource_id=, ...) -> the record, not yet written: for
    # changes stored with their record in one transaction. None: ``self_audit.record`` with R9's default keys.
    audit_record: Callable[..., Any] | None = None
    # The host's report actions (catalogue, start, status: ``auditwatch.report_actions``), handed in so the
    # dashboard never imports reports/ itself; None where reports are not offered.
    report_actions: Any = None
    # Where widgets, search, export and the ops page read: a streaming replica's pool when the host has one
    # (docs/scaling.md); None reads from ``pool``. Sign-in, saved dashboards and alert actions stay on ``pool``.
    read_pool: ConnectionPool | None = None
    # The replica's lag (storage.timescale.replica.ReplicaStatus) for the ops page; None without a replica.
    replica_status: Callable[[], Any] | None = None
    _keys: dict[uuid.UUID, tuple[ApiKey | None, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def reads(self) -> ConnectionPool:
        return self.read_pool or self.pool

    def record(self, event_type: str, principal: str, **fields: Any) -> EventRecord:
        """The audit record of a dashboard user's action, built by the one self-audit builder."""
        if self.audit_record is not None:
            return self.audit_record(event_type, principal, **fields)
        return self_audit.record(event_type, principal, now=datetime.now(UTC), **fields)

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
