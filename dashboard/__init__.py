"""The Auditwatch dashboard: a Dash app mounted on the API's Flask server at /dashboard/.

``mount`` takes what it needs from the host (pool, key check, audit writer, settings values),
so this package depends on storage/ only, never on the application that wires it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dash import Dash
from flask import Flask
from psycopg_pool import ConnectionPool

from storage.auth import ApiKey

__all__ = ["mount", "warm_up"]

log = logging.getLogger("auditwatch.dashboard")


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


def warm_up(server: Flask) -> threading.Thread:
    """Draw the overview's widgets once, in the background, in a server process that has just started.

    The first overview a fresh gunicorn worker served waited 100-230 ms per widget against 10-45 ms once warm
    (2 M events: code paths run for the first time in the process, the database's first reads of the
    rollups), so the first analyst after a start or a restart waited seconds (3.8 s at 10 M events against
    1.4 s warm). Nothing is shown or recorded: these reads are the server's own, not a user's; errors (the
    database still starting) are logged and change nothing.
    """
    from dashboard import config, timerange
    from dashboard.context import EXTENSION
    from dashboard.pages.overview import overview_document
    from dashboard.registry import build
    from dashboard.render import RenderContext

    context = server.extensions[EXTENSION]

    def run() -> None:
        started = time.perf_counter()
        try:
            registry = build()
            now = datetime.now(UTC)
            for widget in config.validate(registry, overview_document())["widgets"]:
                start, end = timerange.resolve({"preset": "24h"}, now=now,
                                               override=widget["params"].get("range") or None)
                registry.get(widget["type"]).render(
                    RenderContext(pool=context.reads, aio_id=widget["id"], start=start, end=end, now=now),
                    widget["params"])
        except Exception as exc:  # noqa: BLE001 - a warm-up never stops a server
            log.info("dashboard warm-up stopped early (%s: %s); the first view will be slower", type(exc).__name__, exc)
            return
        log.debug("dashboard warmed up in %.0f ms", (time.perf_counter() - started) * 1000)

    thread = threading.Thread(target=run, name="dashboard-warm-up", daemon=True)
    thread.start()
    return thread
