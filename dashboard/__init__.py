"""The Auditwatch dashboard: a Dash app mounted on the API's Flask server at /dashboard/.

``mount`` takes what it needs from the host (pool, key check, audit writer, settings values),
so this package depends on storage/ only, never on the application that wires it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dash import Dash
from flask import Flask
from psycopg_pool import ConnectionPool

from storage.auth import ApiKey

__all__ = ["mount"]


def mount(server: Flask, *, pool: ConnectionPool, authenticate: Callable[[str], ApiKey | None],
          audit: Callable[..., Any], secret_key: str, session_hours: float = 12.0,
          max_export_rows: int = 5_000_000, alert_actions: Any = None,
          key_cache_seconds: float = 5.0, audit_record: Callable[..., Any] | None = None,
          report_actions: Any = None, read_pool: ConnectionPool | None = None,
          replica_status: Callable[[], Any] | None = None) -> Dash:
    """Serve the dashboard from ``server`` at /dashboard/ (sign-in, pages, widgets, export)."""
    from dashboard import auth, export, pages, shell, widget_aio
    from dashboard.context import EXTENSION, DashboardContext
    from dashboard.registry import build

    server.extensions[EXTENSION] = DashboardContext(pool=pool, authenticate=authenticate, audit=audit,
                                                    max_export_rows=max_export_rows, alert_actions=alert_actions,
                                                    key_cache_seconds=key_cache_seconds,
                                                    audit_record=audit_record, report_actions=report_actions,
                                                    read_pool=read_pool, replica_status=replica_status)
    auth.install(server, secret=secret_key, session_hours=session_hours)
    export.install(server)
    app = Dash(
        "dashboard", server=server, url_base_pathname="/dashboard/", use_pages=True, pages_folder="",
        assets_folder=str(Path(__file__).parent / "assets"), suppress_callback_exceptions=True,
        title="Auditwatch", update_title=None, serve_locally=True,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    registry = build()
    app.layout = shell.layout
    shell.register_callbacks(app)
    widget_aio.register_callbacks(app, registry)
    pages.register(app, registry)
    # Dash finishes its setup in a before_request hook on the first request; concurrent first requests on a
    # fresh worker raced inside it ("dictionary changed size during iteration": a 503 on an ingest request
    # in CI). Run it once here, before any request is served.
    with server.test_request_context("/dashboard/"):
        app._setup_server()
    return app
