"""Anomalies API: list what the detectors found (with filters), and record analysts' verdicts.

A false-positive verdict is scoped (this entity, this detector, or both, for N days); the scoring
job honours it from its next run, and the verdict itself is audited as a ``config_change`` event.
Suppression is bounded (issue 14 #9): at most ``MAX_FEEDBACK_DAYS``, never without an expiry; a whole
detector only by an admin; and never about the filer themselves (the scoring job holds to that too).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from flask import Blueprint, request

from auditwatch.api import caller, params
from auditwatch.services import Services
from ingest.http import HttpError, current_key, json_response, require
from ingest.validate import EVENT_TYPE, parse_timestamp
from storage.auth import ApiKey, Permission
from storage.timescale import anomalies as store

LIST_PARAMS = frozenset({"start_time", "end_time", "detector", "entity_type", "entity_value", "min_score",
                         "severity", "detected_after", "limit", "cursor"})
FEEDBACK_FIELDS = frozenset({"anomaly_id", "scope", "detector", "entity_type", "entity_value", "verdict", "days",
                             "reason"})
SCOPES = ("entity_detector", "entity", "detector")
MAX_FEEDBACK_DAYS = 90  # migration 0013 holds false positives to this in the database too


def _encode(window_start: datetime, anomaly_id: str) -> str:
    raw = orjson.dumps([window_start.isoformat(), anomaly_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        if len(cursor) > 256:
            raise ValueError("too long")
        stamp, anomaly_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, str(uuid.UUID(anomaly_id))
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
        raise HttpError(400, "invalid_cursor", "the cursor is not one this server issued; pass back exactly the "
                        "`next` value of the previous page", "cursor") from None


def _uuid(raw: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise HttpError(400, "invalid_uuid", f"`{name}` is not a valid UUID", name) from None


def anomaly_json(row: dict[str, Any]) -> dict[str, Any]:
    """The API shape of one anomaly (explanation as an object, times in ISO 8601)."""
    explanation = row["explanation"]
    return {
        "anomaly_id": row["anomaly_id"], "detector": row["detector"], "detector_version": row["detector_version"],
        "entity_type": row["entity_type"], "entity_value": row["entity_value"],
        "window_start": row["window_start"].isoformat(), "window_end": row["window_end"].isoformat(),
        "peak_at": row["peak_at"].isoformat(), "windows": row["windows"],
        "score": row["score"], "severity": row["severity"],
        "explanation": orjson.loads(explanation) if isinstance(explanation, str) else explanation,
        "sample_event_ids": list(row["sample_event_ids"] or []), "detected_at": row["detected_at"].isoformat(),
    }


def _feedback_json(f: store.Feedback) -> dict[str, Any]:
    return {"feedback_id": f.feedback_id, "anomaly_id": str(f.anomaly_id) if f.anomaly_id else None,
            "detector": f.detector, "entity_type": f.entity_type, "entity_value": f.entity_value,
            "verdict": f.verdict, "until": f.until.isoformat() if f.until else None, "reason": f.reason,
            "created_by": f.created_by, "created_at": f.created_at.isoformat()}


def _check_suppression(key: ApiKey, detector: str | None, entity_type: str | None, entity_value: str | None) -> None:
    """Who may suppress what: a whole detector takes an admin, and nobody suppresses findings about themselves."""
    if entity_type is None and not key.can(Permission.MANAGE_ALERT_RULES):
        raise HttpError(403, "admin_required", f"suppressing detector `{detector}` for every entity switches "
                        "detection off; only an admin may. Scope the false positive to the entity instead "
                        "(`scope: entity_detector` with `entity_type` and `entity_value`)", "scope")
    if entity_type in ("user", "user_ip") and entity_value is not None and (
            entity_value == key.principal or entity_value.split("|", 1)[0] == key.principal):
        raise HttpError(403, "self_suppression", "a false positive about yourself must be filed by someone else, "
                        "so nobody can switch detection off for their own actions", "entity_value")


def _parse_list(max_limit: int) -> store.AnomalyQuery:
    times = {}
    for name in ("start_time", "end_time", "detected_after"):
        raw = params.one(name)
        times[name] = parse_timestamp(raw, name) if raw is not None else None
    if times["start_time"] and times["end_time"] and times["start_time"] >= times["end_time"]:
        raise HttpError(400, "invalid_range", "`start_time` must be before `end_time`", "start_time")
    detectors = tuple(request.args.getlist("detector"))
    for value in detectors:
        if not EVENT_TYPE.fullmatch(value):
            raise HttpError(400, "invalid_detector", "`detector` must be a detector name such as "
                            "failed_login_burst", "detector")
    severities = tuple(request.args.getlist("severity"))
    if any(s not in store.SEVERITIES for s in severities):
        raise HttpError(400, "invalid_severity", f"`severity` must be one of {', '.join(store.SEVERITIES)}",
                        "severity")
    entity_type = params.one("entity_type")
    if entity_type is not None and entity_type not in store.ENTITY_TYPES:
        raise HttpError(400, "invalid_entity_type", f"`entity_type` must be one of {', '.join(store.ENTITY_TYPES)}",
                        "entity_type")
    min_score = None
    raw_score = params.one("min_score")
    if raw_score is not None:
        try:
            min_score = float(raw_score)
        except ValueError:
            min_score = -1.0
        if not 0.0 <= min_score <= 1.0:
            raise HttpError(400, "invalid_min_score", "`min_score` must be a number from 0 to 1", "min_score")
    raw_limit = params.one("limit")
    cursor = params.one("cursor")
    return store.AnomalyQuery(
        start=times["start_time"], end=times["end_time"], detected_after=times["detected_after"],
        detectors=detectors, severities=severities, entity_type=entity_type, entity_value=params.one("entity_value"),
        min_score=min_score, limit=params.whole_number(raw_limit, "limit", max_limit) if raw_limit else 100,
        before=_decode(cursor) if cursor else None)


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("anomalies", __name__)
    settings = services.settings

    @bp.get("/api/v1/anomalies")
    @require(Permission.VIEW)
    def list_anomalies():
        params.check_params(LIST_PARAMS)
        query = _parse_list(settings.max_query_limit)
        frame = store.anomalies_frame(services.reads, query)
        rows = [anomaly_json(r) for r in frame.iter_rows(named=True)]
        last = frame.row(-1, named=True) if frame.height == query.limit else None
        return json_response({"anomalies": rows,
                              "next": _encode(last["window_start"], last["anomaly_id"]) if last else None})

    @bp.get("/api/v1/anomalies/feedback")
    @require(Permission.VIEW)
    def list_feedback():
        params.check_params(frozenset({"limit"}))
        limit = params.whole_number(params.one("limit") or "100", "limit", 1000)
        return json_response({"feedback": [_feedback_json(f) for f in store.list_feedback(services.pool,
                                                                                         limit=limit)]})

    @bp.post("/api/v1/anomalies/feedback")
    @require(Permission.TRIAGE_ANOMALIES)
    def add_feedback():
        body = params.body(FEEDBACK_FIELDS)
        verdict = body.get("verdict", "false_positive")
        if verdict not in ("false_positive", "true_positive"):
            raise HttpError(400, "invalid_field", "`verdict` must be false_positive or true_positive", "verdict")
        scope = body.get("scope", "entity_detector")
        if scope not in SCOPES:
            raise HttpError(400, "invalid_field", f"`scope` must be one of {', '.join(SCOPES)}", "scope")
        days = body.get("days", 30)
        if days is None and verdict == "true_positive":
            pass  # a confirmed finding suppresses nothing: it may stand without an expiry
        elif not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_FEEDBACK_DAYS:
            raise HttpError(400, "invalid_field", f"`days` must be a whole number from 1 to {MAX_FEEDBACK_DAYS}: a "
                            "false positive suppresses detection for a bounded time; file it again to extend it",
                            "days")
        reason = params.string(body, "reason", required=False, max_len=2000) or ""
        anomaly_id = None
        if body.get("anomaly_id") is not None:
            anomaly_id = _uuid(body["anomaly_id"], "anomaly_id")
            found = store.get_anomaly(services.pool, anomaly_id)
            if found is None:
                raise HttpError(404, "not_found", "no stored anomaly has this id", "anomaly_id")
            detector, entity_type, entity_value = found.detector, found.entity_type, found.entity_value
        else:
            detector = params.string(body, "detector", required=False, max_len=64)
            entity_type = params.string(body, "entity_type", required=False, max_len=32)
            entity_value = params.string(body, "entity_value", required=False, max_len=512)
            if entity_type is not None and entity_type not in store.ENTITY_TYPES:
                raise HttpError(400, "invalid_field", f"`entity_type` must be one of {', '.join(store.ENTITY_TYPES)}",
                                "entity_type")
            if (entity_type is None) != (entity_value is None):
                raise HttpError(400, "invalid_field", "give `entity_type` and `entity_value` together", "entity_value")
        if scope == "entity":
            detector = None
        elif scope == "detector":
            entity_type = entity_value = None
        if detector is None and entity_type is None:
            raise HttpError(400, "missing_scope", "say what the verdict covers: an `anomaly_id`, or a `detector` "
                            "and/or an `entity_type` with `entity_value`", "scope")
        key = current_key()
        principal = key.principal
        if verdict == "false_positive":
            _check_suppression(key, detector, entity_type, entity_value)
        until = datetime.now(UTC) + timedelta(days=days) if days is not None else None
        record = caller.auditor(services)  # the feedback and its record commit together
        feedback = store.add_feedback(services.pool, anomaly_id=anomaly_id, detector=detector,
                                      entity_type=entity_type, entity_value=entity_value, verdict=verdict,
                                      until=until, reason=reason, created_by=principal,
                                      audit=lambda f: record("config_change", {
                                          "change": "anomaly_feedback", **{k: v for k, v in _feedback_json(f).items()
                                                                           if k not in ("created_by", "created_at")}},
                                          f"anomaly_feedback:{f.feedback_id}"))
        return json_response(_feedback_json(feedback), 201)

    return bp
