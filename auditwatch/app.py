"""The Flask application factory: ``create_app(settings)``."""

from __future__ import annotations

import logging

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from alerts import actions as alert_actions
from auditwatch import health, integrity, logs
from auditwatch.api import admin as admin_api
from auditwatch.api import alerts as alerts_api
from auditwatch.api import anomalies as anomalies_api
from auditwatch.api import archive as archive_api
from auditwatch.api import events as events_api
from auditwatch.api import gdpr as gdpr_api
from auditwatch.api import ingest as ingest_admin_api
from auditwatch.api.openapi import document as openapi
from auditwatch.report_actions import ReportActions
from auditwatch.services import Services
from auditwatch.settings import Settings
from ingest import api as ingest_api
from ingest import otlp
from ingest.errors import IngestError
from ingest.http import error_response, json_response
from storage.errors import DatabaseUnavailable, InvalidCursor, ReplicaDown, SigningKeyError

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, services: Services | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    init_app(app, settings, services)
    return app


def _key_from_request() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("X-API-Key")


def _mount_dashboard(app: Flask, settings: Settings, services: Services) -> None:
    """The Dash dashboard on this server at /dashboard/, signed in with the same API keys and roles."""
    import dashboard
    from dashboard.auth import secret_key

    dashboard.mount(app, pool=services.pool, read_pool=services.reads,
                    replica_status=services.replica_status if services.replicated else None,
                    authenticate=services.authenticate, audit=services.audit,
                    secret_key=secret_key(settings.dashboard_secret_key,
                                          settings.resolved_data_dir() / "dashboard-secret-key"),
                    session_hours=settings.dashboard_session_hours, max_export_rows=settings.max_export_rows,
                    alert_actions=alert_actions, key_cache_seconds=settings.key_cache_seconds,
                    audit_record=services.audit_record, report_actions=_report_actions(settings, services))


def _report_actions(settings: Settings, services: Services) -> ReportActions:
    """The Reports page's actions: files under the reports directory, checkpoints checked with the public keys."""
    try:
        trusted = integrity.verification_keys(settings)
    except SigningKeyError:  # no public key here yet: reports still say their period is not covered by one
        trusted = frozenset()
    return ReportActions(services.pool, out_root=settings.reports_dir or settings.resolved_data_dir() / "reports",
                         trusted_keys=trusted, archive=services.archive)


def init_app(app: Flask, settings: Settings, services: Services | None = None) -> None:
    """Attach the pool and pipeline; nothing connects at import time."""
    services = services or Services.open(settings)
    app.extensions["auditwatch"] = services
    logs.init_app(app, access=settings.access_log)  # request ids in and out, access log, request histogram

    @app.before_request
    def authenticate():
        g.principal = None
        key = _key_from_request()
        if key:
            g.principal = services.authenticate(key)
            if g.principal is None:
                return json_response({"code": "invalid_key", "field": None,
                                      "message": "the API key is unknown, malformed or revoked"}, 401)
        return None

    app.register_blueprint(ingest_api.create_blueprint(services.pipeline, max_batch=settings.max_batch))
    app.register_blueprint(events_api.create_blueprint(services))
    app.register_blueprint(admin_api.create_blueprint(services))
    app.register_blueprint(openapi.create_blueprint())
    app.register_blueprint(archive_api.create_blueprint(services))
    app.register_blueprint(anomalies_api.create_blueprint(services))
    app.register_blueprint(ingest_admin_api.create_blueprint(services))
    app.register_blueprint(otlp.create_blueprint(services.pipeline, max_records=settings.otlp_max_records))
    app.register_blueprint(alerts_api.create_blueprint(services))
    app.register_blueprint(gdpr_api.create_blueprint(services))
    app.register_blueprint(health.create_blueprint(health.Readiness(
        services.pool, services.bus, observed=tuple({id(p): p for p in (services.pool, services.reads,
                                                                           services.exports)}.values()),
        replica=services.replica_status if services.replicated else None)))
    if settings.dashboard:
        _mount_dashboard(app, settings, services)

    @app.get("/healthz")
    def healthz():
        return json_response({"status": "ok"})

    @app.errorhandler(IngestError)
    def ingest_error(exc: IngestError):
        return error_response(exc)

    @app.errorhandler(InvalidCursor)
    def invalid_cursor(exc: InvalidCursor):
        return json_response({"code": "invalid_cursor", "message": str(exc), "field": "cursor"}, 400)

    @app.errorhandler(ReplicaDown)
    def replica_down(exc: ReplicaDown):
        log.error("read replica unavailable: %s", exc)
        return json_response({"code": "replica_unavailable", "message": str(exc), "field": None}, 503,
                             {"Retry-After": str(exc.retry_after)})

    @app.errorhandler(DatabaseUnavailable)
    def unavailable(exc: DatabaseUnavailable):
        log.error("database unavailable: %s", exc)
        return json_response({"code": "unavailable", "message": "the database is unavailable; retry later",
                              "field": None}, 503, {"Retry-After": str(exc.retry_after)})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = {413: "body_too_large", 404: "not_found", 405: "method_not_allowed"}.get(exc.code, "http_error")
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"the request body is over {settings.max_body_bytes} bytes; split it into smaller batches"
        return json_response({"code": code, "message": message, "field": None}, exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Never a bare 500 page: log with the traceback and answer JSON. A 503 tells clients to
        # retry; events of a failed request were not acknowledged.
        log.exception("unexpected error on %s %s", request.method, request.path)
        return json_response({"code": "internal_error", "field": None,
                              "message": "the server failed to handle this request; it was logged, retry later"},
                             503, {"Retry-After": "5"})
