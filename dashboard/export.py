"""Export of the searched events for roles that may export (auditors, admins); audited like the API's."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request, stream_with_context

from dashboard import search_filters
from dashboard.auth import user
from dashboard.context import current
from dashboard.errors import DashboardError
from storage import export
from storage.timescale import queries


def install(server: Flask) -> None:
    # POST only, from the search page's form with the session's CSRF token (checked by the auth guard):
    # a link from another site cannot start an export.
    server.add_url_rule("/dashboard/export", "dashboard_export", _export, methods=["POST"])


def _error(status: int, message: str) -> Response:
    return Response(json.dumps({"code": "export_refused", "message": message}), status, mimetype="application/json")


def _export() -> Response:
    who = user()
    if not who.can_export:
        return _error(403, f"the {who.role} role may not export events; ask for an auditor key")
    fmt = request.form.get("format", "csv")
    if fmt not in ("csv", "ndjson"):
        return _error(400, "format must be csv or ndjson")
    values: dict[str, Any] = {k: request.form.get(k) or None for k in ("start_time", "end_time", "user_id",
                                                                         "outcome", "source_ip", "metadata")}
    values["event_type"] = request.form.getlist("event_type")
    try:
        query = search_filters.parse(values, start=None, end=None)
    except DashboardError as exc:
        return _error(400, str(exc))
    context = current()
    context.audit("export_requested", who.principal, source_ip=request.remote_addr,
                  user_agent=request.user_agent.string or None,
                  metadata={"via": "dashboard", "format": fmt, "filters": search_filters.as_params(query)})
    rows = queries.stream(context.reads, query, max_rows=context.max_export_rows)
    return Response(stream_with_context(export.lines(rows, fmt)), mimetype=export.MIMETYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="audit-events.{fmt}"'})

