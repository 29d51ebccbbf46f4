"""Liveness, readiness and /metrics: a Flask blueprint for the API, and a small HTTP server for the worker,
the syslog listener and the bus writer.

/healthz answers while the process runs (liveness: restart me if this fails). /readyz answers 200 only when
the process can do its work: the database answers, its schema is the version this code needs, and the bus
(when one is configured) answers; otherwise 503 with what is wrong (readiness: send me no traffic yet).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from flask import Blueprint, Response
from prometheus_client import REGISTRY
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool

from auditwatch import metrics
from ingest.errors import Unavailable
from storage import metrics as storage_metrics
from storage.timescale import ops_state

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    """The checks of one process; ``check()`` runs them all and says which failed."""

    pool: ConnectionPool
    bus: Any = None  # an ingest.bus.BusClient, when events go through JetStream
    extra: dict[str, Callable[[], str | None]] = field(default_factory=dict)  # name -> problem or None
    observed: tuple[ConnectionPool, ...] = ()  # pools whose saturation /metrics shows (default: ``pool``)
    # The read replica's status (storage.timescale.replica.ReplicaStatus), None without one. Shown, but a
    # replica that is down or behind does not make the process unready: writes never need it, and reads
    # then answer 503 themselves (docs/scaling.md).
    replica: Callable[[], Any] | None = None

    def check(self) -> tuple[bool, dict[str, Any]]:
        db = ops_state.readiness(self.pool)
        checks: dict[str, Any] = {"database": {"ok": db.ok, "schema_version": db.schema_version,
                                               "expected_schema_version": db.expected_version}}
        if db.problem:
            checks["database"]["problem"] = db.problem
        if self.bus is not None:
            checks["bus"] = bus_check(self.bus)
        for name, probe in self.extra.items():
            problem = probe()
            checks[name] = {"ok": problem is None, **({"problem": problem} if problem else {})}
        return all(c["ok"] for c in checks.values()), checks


def bus_check(bus: Any) -> dict[str, Any]:
    """The work-queue stream answers on the configured servers."""

    async def stream(js):
        return await js.stream_info(bus.config.stream)

    try:
        info = bus.call(stream, timeout=2.0)
    except Unavailable as exc:
        return {"ok": False, "problem": str(exc)}
    return {"ok": True, "stream": bus.config.stream, "messages": info.state.messages}


def _ready_body(readiness: Readiness) -> tuple[bytes, int]:
    ok, checks = readiness.check()
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
    status = readiness.replica() if readiness.replica is not None else None
    if status is not None:
        body["read_replica"] = status.to_json()
    return orjson.dumps(body), 200 if ok else 503


POOL_GAUGES_EVERY = 0.25  # seconds between refreshes of a server worker's pool gauges


def create_blueprint(readiness: Readiness) -> Blueprint:
    """/readyz and /metrics on the API (/healthz stays in app.py: liveness needs nothing)."""
    bp = Blueprint("health", __name__)

    @bp.get("/readyz")
    def readyz():
        body, status = _ready_body(readiness)
        return Response(body, status, mimetype="application/json")

    @bp.get("/metrics")
    def prometheus():
        if readiness.replica is not None:
            readiness.replica()  # sets auditwatch_read_replica_lag_seconds for this scrape
        body, content_type = metrics.exposition()
        return Response(body, 200, content_type=content_type)

    observed_at = [float("-inf")]

    @bp.after_app_request
    def observe_pool(response: Response) -> Response:
        # Each gunicorn worker refreshes its own pool gauges as it serves (/metrics sums the live ones), at most
        # every POOL_GAUGES_EVERY: per request, four labelled multiprocess gauges cost ~0.1 ms, a tenth of a
        # single-event POST's CPU, for a value scraped every 15 s.
        now = time.monotonic()
        if now - observed_at[0] >= POOL_GAUGES_EVERY:
            observed_at[0] = now
            storage_metrics.observe_pools(readiness.observed or [readiness.pool])
        return response

    return bp


# -- the worker's, listener's and writer's own small server ------------------------------------------------

class OpsServer:
    """/healthz, /readyz and /metrics on their own port, on a daemon thread beside the process's real work."""

    def __init__(self, host: str, port: int, readiness: Readiness | None,
                 *, before_scrape: Callable[[], None] | None = None) -> None:
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    ops._send(self, 200, b'{"status":"ok"}', "application/json")
                elif path == "/readyz":
                    if readiness is None:
                        ops._send(self, 200, b'{"status":"ok","checks":{}}', "application/json")
                    else:
                        body, status = _ready_body(readiness)
                        ops._send(self, status, body, "application/json")
                elif path == "/metrics":
                    if before_scrape is not None:
                        before_scrape()
                    body, content_type = metrics.exposition()
                    ops._send(self, 200, body, content_type)
                else:
                    ops._send(self, 404, b'{"code":"not_found"}', "application/json")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server signature
                log.debug("ops http: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("health and metrics on http://%s:%d/ (/healthz, /readyz, /metrics)",
                 self._server.server_address[0], self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def serve_ops(host: str, port: int, *, pool: ConnectionPool, bus: Any = None,
              collectors: tuple[Collector, ...] = (),
              extra: dict[str, Callable[[], str | None]] | None = None) -> Callable[[], None]:
    """Start the ops server of a worker, listener or writer (port 0: none), with its collectors registered;
    returns what stops it and unregisters them. ``extra``: more readiness probes (name -> problem or None).

    A port already taken is logged, not fatal: the process's real work matters more than its metrics.
    """
    for collector in collectors:
        REGISTRY.register(collector)
    server = None
    if port:
        try:
            server = OpsServer(host, port, Readiness(pool, bus, extra=dict(extra or {})),
                               before_scrape=lambda: storage_metrics.observe_pools([pool])).start()
        except OSError as exc:
            log.error("cannot serve /healthz, /readyz and /metrics on %s:%d (%s); set another port "
                      "(AUDITWATCH_WORKER_OPS_PORT, _SYSLOG_OPS_PORT, _WRITER_OPS_PORT) or 0 for none",
                      host, port, exc)

    def stop() -> None:
        if server is not None:
            server.stop()
        for collector in collectors:
            REGISTRY.unregister(collector)

    return stop
