"""What the dashboard needs from the host application, passed in by ``mount`` (it never imports auditwatch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    alerts_module: str = "alerts.actions"


def current() -> DashboardContext:
    """The context of the Flask app serving this request."""
    return flask.current_app.extensions[EXTENSION]
