"""The cold tier over HTTP: archive status and legal holds (placing and releasing them is audited)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint

from auditwatch.api import caller, params
from auditwatch.services import Services
from ingest.errors import IngestError
from ingest.http import HttpError, current_key, json_response, require
from ingest.validate import parse_timestamp
from storage.auth import Permission
from storage.errors import HoldNotFound, LegalHoldError
from storage.timescale import archive, legal_hold, retention
from storage.timescale.self_audit import Auditor

HOLD_FIELDS = frozenset({"case_id", "user_id", "start_time", "end_time", "reason"})


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("archive", __name__)

    def auditor() -> Auditor:
        return caller.auditor(services)

    @bp.get("/api/v1/archive")
    @require(Permission.VIEW)
    def archive_status():
        params.check_params(frozenset())
        s = archive.summary(services.pool)
        with services.pool.connection() as conn:
            policy = retention.load_policy(conn)
        waiting = archive.eligible(services.pool, now=datetime.now(UTC), hot_days=policy.hot_days)
        return json_response({
            "files_by_state": s.files_by_state, "live_files": s.live_files, "live_rows": s.live_rows,
            "live_bytes": s.live_bytes, "oldest_day": s.oldest_day.isoformat() if s.oldest_day else None,
            "newest_day": s.newest_day.isoformat() if s.newest_day else None,
            "last_completed_at": s.last_completed_at.isoformat() if s.last_completed_at else None,
            "active_holds": s.active_holds, "chunks_awaiting_archive": len(waiting),
            "policy": {"hot_days": policy.hot_days, "cold_years": policy.cold_years,
                       "cold_years_by_type": dict(policy.cold_years_by_type)},
        })

    @bp.get("/api/v1/legal-holds")
    @require(Permission.LEGAL_HOLD)
    def list_holds():
        params.check_params(frozenset({"include_released"}))
        flag = (params.one("include_released") or "false").lower()
        if flag not in {"true", "false", "1", "0"}:
            raise HttpError(400, "invalid_parameter", "`include_released` must be true or false", "include_released")
        holds = legal_hold.list_holds(services.pool, include_released=flag in {"true", "1"})
        return json_response({"holds": [h.to_json() for h in holds]})

    @bp.post("/api/v1/legal-holds")
    @require(Permission.LEGAL_HOLD)
    def place_hold():
        body = params.body(HOLD_FIELDS)
        reason = params.string(body, "reason", max_len=2000)
        case_id = params.string(body, "case_id", required=False)
        user_id = params.string(body, "user_id", required=False)
        times = {}
        for name in ("start_time", "end_time"):
            value = body.get(name)
            try:
                if value is not None and not isinstance(value, str):
                    raise TypeError(value)
                times[name] = parse_timestamp(value, name) if value is not None else None
            except (IngestError, TypeError):
                raise HttpError(400, "invalid_timestamp", f"`{name}` must be an ISO 8601 time with a zone, "
                                "e.g. 2024-01-31T00:00:00Z", name) from None
        try:
            hold = legal_hold.place(services.pool, reason=reason, created_by=current_key().principal,
                                    audit=auditor(), case_id=case_id, user_id=user_id, **times)
        except LegalHoldError as exc:
            raise HttpError(400, "invalid_hold", str(exc)) from None
        return json_response(hold.to_json(), 201)

    @bp.post("/api/v1/legal-holds/<hold_id>/release")
    @require(Permission.LEGAL_HOLD)
    def release_hold(hold_id: str):
        reason = params.string(params.body(frozenset({"reason"})), "reason", max_len=2000)
        if not (hold_id.isascii() and hold_id.isdigit()) or len(hold_id) > 18:
            raise HttpError(400, "invalid_hold_id", "a hold id is a whole number; see GET /api/v1/legal-holds",
                            "hold_id")
        try:
            hold = legal_hold.release(services.pool, int(hold_id), released_by=current_key().principal,
                                      reason=reason, audit=auditor())
        except HoldNotFound as exc:
            raise HttpError(404, "not_found", str(exc), "hold_id") from None
        except LegalHoldError as exc:
            raise HttpError(409, "conflict", str(exc), "hold_id") from None
        return json_response(hold.to_json())

    return bp
