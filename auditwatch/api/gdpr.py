"""Data subjects and PHI over HTTP: access exports, the four-eyes erasure workflow, and the audited PHI reveal.

Every route is for admins (``data_subjects``, ``phi_reveal``); every step is audited in the transaction that
takes it (see ``storage.timescale.gdpr``, ``storage.timescale.phi_vault``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, request

from auditwatch import privacy
from auditwatch.api import caller, params
from auditwatch.services import Services
from ingest.errors import IngestError
from ingest.http import HttpError, current_key, json_response, require
from ingest.phi import PhiKeyError
from ingest.validate import parse_timestamp
from storage.auth import Permission
from storage.timescale import gdpr
from storage.timescale.archive import ArchiveBusy


def _request_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise HttpError(400, "invalid_uuid", "the request id is not a valid UUID", "request_id") from None


def _time(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        return parse_timestamp(value, name)
    except (IngestError, TypeError):
        raise HttpError(400, "invalid_timestamp", f"`{name}` must be an ISO 8601 time with a zone, e.g. "
                        "2024-01-31T00:00:00Z", name) from None


def _optional_body(allowed: frozenset[str]) -> dict[str, Any]:
    """A JSON body that may be left out entirely (no body: no fields)."""
    if not request.get_data(cache=True):
        return {}
    return params.body(allowed)


def _step_error(exc: gdpr.ErasureRequestError) -> HttpError:
    if isinstance(exc, gdpr.RequestNotFound):
        return HttpError(404, "not_found", str(exc), "request_id")
    if isinstance(exc, gdpr.SameApprover):
        return HttpError(409, "same_approver", str(exc))
    return HttpError(409, "wrong_state", str(exc))


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("gdpr", __name__)
    settings = services.settings

    @bp.post("/api/v1/gdpr/access")
    @require(Permission.DATA_SUBJECTS)
    def access_export():
        body = params.body(frozenset({"subject", "start_time", "end_time"}))
        subject = params.string(body, "subject")
        start, end = _time(body, "start_time"), _time(body, "end_time")
        if start and end and start >= end:
            raise HttpError(400, "invalid_range", "`start_time` must be before `end_time`", "start_time")
        export = privacy.access_export(services.pool, services.archive, settings, subject or "",
                                       caller.auditor(services), requested_by=current_key().principal,
                                       now=datetime.now(UTC), start=start, end=end)
        return json_response(export.document)

    @bp.post("/api/v1/gdpr/erasures")
    @require(Permission.DATA_SUBJECTS)
    def request_erasure():
        body = params.body(frozenset({"subject", "lawful_basis", "note"}))
        subject = params.string(body, "subject")
        basis = params.string(body, "lawful_basis", max_len=2000)
        note = params.string(body, "note", required=False, max_len=2000)
        req = gdpr.request(services.pool, subject or "", basis or "", caller.auditor(services), note=note)
        return json_response(req.to_json(), 201)

    @bp.get("/api/v1/gdpr/erasures")
    @require(Permission.DATA_SUBJECTS)
    def list_erasures():
        params.check_params(frozenset({"subject"}))
        found = gdpr.list_requests(services.pool, subject=params.one("subject"))
        return json_response({"requests": [r.to_json() for r in found]})

    @bp.get("/api/v1/gdpr/erasures/<request_id>")
    @require(Permission.DATA_SUBJECTS)
    def get_erasure(request_id: str):
        params.check_params(frozenset())
        try:
            return json_response(gdpr.get(services.pool, _request_id(request_id)).to_json())
        except gdpr.ErasureRequestError as exc:
            raise _step_error(exc) from None

    @bp.post("/api/v1/gdpr/erasures/<request_id>/approve")
    @require(Permission.DATA_SUBJECTS)
    def approve_erasure(request_id: str):
        body = _optional_body(frozenset({"note"}))
        note = params.string(body, "note", required=False, max_len=2000)
        try:
            req = gdpr.approve(services.pool, _request_id(request_id), caller.auditor(services), note=note)
        except gdpr.ErasureRequestError as exc:
            raise _step_error(exc) from None
        return json_response(req.to_json())

    @bp.post("/api/v1/gdpr/erasures/<request_id>/execute")
    @require(Permission.DATA_SUBJECTS)
    def execute_erasure(request_id: str):
        _optional_body(frozenset())
        try:
            done = privacy.execute(services.pool, services.archive, settings, _request_id(request_id),
                                   caller.auditor(services), clock=lambda: datetime.now(UTC))
        except gdpr.ErasureRequestError as exc:
            raise _step_error(exc) from None
        except ArchiveBusy as exc:
            raise HttpError(503, "archive_busy", f"{exc} (the request stays executing: execute it again to "
                            "resume)", headers={"Retry-After": "30"}) from None
        return json_response({"request": done.request.to_json(), "certificate": done.signed})

    @bp.get("/api/v1/gdpr/erasures/<request_id>/certificate")
    @require(Permission.DATA_SUBJECTS)
    def erasure_certificate(request_id: str):
        params.check_params(frozenset())
        try:
            req = gdpr.get(services.pool, _request_id(request_id))
        except gdpr.ErasureRequestError as exc:
            raise _step_error(exc) from None
        executed = req.by("executed")
        if executed is None or executed.certificate is None:
            raise HttpError(409, "not_executed", f"erasure request {request_id} is {req.state}; its certificate "
                            "exists once it is executed", "request_id")
        return json_response(executed.certificate)

    @bp.post("/api/v1/phi/reveal")
    @require(Permission.PHI_REVEAL)
    def reveal_phi():
        body = params.body(frozenset({"token", "reason"}))
        token = params.string(body, "token", max_len=64)
        reason = params.string(body, "reason", max_len=2000)
        try:
            value = privacy.reveal(services.pool, privacy.phi_key(settings), token or "", caller.auditor(services),
                                   reason=reason or "")
        except privacy.UnknownToken as exc:
            raise HttpError(404, "not_found", str(exc), "token") from None
        except PhiKeyError as exc:
            raise HttpError(409, "phi_key", str(exc), "token") from None
        return json_response({"token": token, "value": value})

    return bp
