"""The alerting API: alerts and their history, notification attempts, rules (admins), silences, acknowledgement."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, request

from alerts import actions
from alerts.errors import InvalidSilence, RuleError, UnknownAlert
from alerts.rule_files import load_rules
from alerts.rule_yaml import format_duration
from alerts.rules import PACKAGED_RULES, RULE_ID, parse_rule
from auditwatch.alerting import rules_dir
from auditwatch.api import caller, params
from auditwatch.services import Services
from ingest.http import HttpError, current_key, json_response, require
from ingest.validate import parse_timestamp
from storage.auth import Permission
from storage.timescale import alerts as store
from storage.timescale import outbox

FINGERPRINT = re.compile(r"[0-9a-f]{20}")
MAX_ACK = timedelta(days=30)


def _fingerprint(raw: str) -> str:
    if not FINGERPRINT.fullmatch(raw):
        raise HttpError(400, "invalid_fingerprint", "a fingerprint is 20 lower-case hex characters (see GET "
                        "/api/v1/alerts)", "fingerprint")
    return raw


def _rule_id(raw: str) -> str:
    if not RULE_ID.fullmatch(raw):
        raise HttpError(400, "invalid_rule_id", "a rule id is lower-case letters, digits and _ (at most 64)",
                        "rule_id")
    return raw


def _since() -> datetime | None:
    raw = params.one("since")
    return parse_timestamp(raw, "since") if raw is not None else None


def alert_json(view: actions.AlertView) -> dict[str, Any]:
    return view.to_json()


def rule_json(rule, *, text: bool = False) -> dict[str, Any]:
    out = {"id": rule.id, "title": rule.title, "severity": rule.severity, "kind": rule.kind,
           "labels": dict(rule.labels), "runbook_url": rule.runbook_url, "description": rule.description,
           "for": format_duration(rule.for_), "cooldown": format_duration(rule.cooldown), "enabled": rule.enabled,
           "examples": len(rule.examples), "packaged": os.path.dirname(rule.path) == str(PACKAGED_RULES)}
    if text:
        out["yaml"] = rule.text
    return out


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("alerts_api", __name__)
    settings = services.settings
    pool = services.pool

    def audit(resource_id: str, metadata: dict[str, Any]) -> None:
        caller.audit(services, "config_change", resource_id=resource_id, metadata=metadata)

    def rules() -> dict:
        try:
            return load_rules(PACKAGED_RULES, rules_dir(settings))
        except RuleError as exc:
            raise HttpError(409, "invalid_rules", f"the rules directory holds invalid rules; fix them: {exc}") \
                from None

    # -- alerts ----------------------------------------------------------------------------------------

    @bp.get("/api/v1/alerts")
    @require(Permission.VIEW)
    def list_alerts():
        params.check_params(frozenset({"state", "since", "limit"}))
        states = request.args.getlist("state")
        if any(s not in actions.STATES for s in states):
            raise HttpError(400, "invalid_state", f"`state` must be one of {', '.join(actions.STATES)}", "state")
        limit = params.whole_number(params.one("limit") or "100", "limit", 1000)
        found = actions.list_alerts(pool, states=states or None, since=_since(), limit=limit)
        return json_response({"alerts": [alert_json(a) for a in found]})

    @bp.get("/api/v1/alerts/<fingerprint>")
    @require(Permission.VIEW)
    def get_alert(fingerprint: str):
        params.check_params(frozenset())
        try:
            view = actions.get_alert(pool, _fingerprint(fingerprint))
        except UnknownAlert as exc:
            raise HttpError(404, "not_found", str(exc), "fingerprint") from None
        history = store.history(pool, fingerprint=fingerprint, limit=100)
        return json_response({**alert_json(view), "history": [
            {"at": h.at.isoformat(), "from": h.from_state, "to": h.to_state, "value": h.value, "detail": h.detail}
            for h in history]})

    @bp.post("/api/v1/alerts/<fingerprint>/ack")
    @require(Permission.RESPOND_TO_ALERTS)
    def acknowledge(fingerprint: str):
        body = params.body(frozenset({"comment", "until", "for_minutes"}))
        fingerprint = _fingerprint(fingerprint)
        comment = params.string(body, "comment", required=False, max_len=2000) or ""
        now = datetime.now(UTC)
        until = None
        if body.get("until") is not None and body.get("for_minutes") is not None:
            raise HttpError(400, "invalid_field", "give `until` or `for_minutes`, not both", "until")
        if body.get("until") is not None:
            until = parse_timestamp(body["until"], "until")
        elif body.get("for_minutes") is not None:
            minutes = body["for_minutes"]
            if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 43_200:
                raise HttpError(400, "invalid_field", "`for_minutes` must be a whole number from 1 to 43200",
                                "for_minutes")
            until = now + timedelta(minutes=minutes)
        if until is not None and not now < until <= now + MAX_ACK:
            raise HttpError(400, "invalid_field", "`until` must be in the future and within 30 days", "until")
        try:
            view = actions.acknowledge(pool, fingerprint, by=current_key().principal, comment=comment, until=until,
                                       audit=audit, now=now)
        except UnknownAlert as exc:
            raise HttpError(404, "not_found", str(exc), "fingerprint") from None
        return json_response(alert_json(view))

    @bp.get("/api/v1/alert-history")
    @require(Permission.VIEW)
    def alert_history():
        params.check_params(frozenset({"fingerprint", "since", "limit"}))
        fingerprint = params.one("fingerprint")
        rows = store.history(pool, fingerprint=_fingerprint(fingerprint) if fingerprint else None, since=_since(),
                             limit=params.whole_number(params.one("limit") or "100", "limit", 1000))
        return json_response({"history": [
            {"fingerprint": h.fingerprint, "rule_id": h.rule_id, "at": h.at.isoformat(), "from": h.from_state,
             "to": h.to_state, "value": h.value, "detail": h.detail} for h in rows]})

    @bp.get("/api/v1/alert-notifications")
    @require(Permission.VIEW)
    def alert_notifications():
        params.check_params(frozenset({"fingerprint", "receiver", "status", "limit"}))
        fingerprint = params.one("fingerprint")
        status = params.one("status")
        if status is not None and status not in {"pending", "sending", "delivered", "failed"}:
            raise HttpError(400, "invalid_status", "`status` must be pending, sending, delivered or failed", "status")
        receiver = params.one("receiver")
        if receiver is not None and not re.fullmatch(r"[a-z][a-z0-9-]{0,63}", receiver):
            raise HttpError(400, "invalid_receiver", "`receiver` is a receiver name such as pagerduty", "receiver")
        notes = outbox.notifications(pool, fingerprint=_fingerprint(fingerprint) if fingerprint else None,
                                    receiver=receiver, statuses=[status] if status else None,
                                    limit=params.whole_number(params.one("limit") or "100", "limit", 1000))
        tries: dict[int, list] = {}
        for a in outbox.attempts(pool, notification_ids=[n.notification_id for n in notes], limit=10_000):
            tries.setdefault(a.notification_id, []).append(
                {"at": a.at.isoformat(), "outcome": a.outcome, "status_code": a.status_code, "error": a.error,
                 "retry_after": a.retry_after})
        return json_response({"notifications": [
            {"notification_id": n.notification_id, "receiver": n.receiver, "group_key": n.group_key, "kind": n.kind,
             "status": n.status, "attempts": list(reversed(tries.get(n.notification_id, []))),
             "created_at": n.created_at.isoformat(), "next_attempt_at": n.next_attempt_at.isoformat(),
             "delivered_at": n.delivered_at.isoformat() if n.delivered_at else None, "last_error": n.last_error,
             "alerts": [{"fingerprint": a.get("fingerprint"), "status": a.get("status"), "title": a.get("title")}
                        for a in n.payload.get("alerts", [])]} for n in notes]})

    # -- rules (admins) --------------------------------------------------------------------------------

    @bp.get("/api/v1/alert-rules")
    @require(Permission.MANAGE_ALERT_RULES)
    def list_rules():
        params.check_params(frozenset())
        return json_response({"rules": [rule_json(r) for r in rules().values()]})

    @bp.get("/api/v1/alert-rules/<rule_id>")
    @require(Permission.MANAGE_ALERT_RULES)
    def get_rule(rule_id: str):
        params.check_params(frozenset())
        found = rules().get(_rule_id(rule_id))
        if found is None:
            raise HttpError(404, "not_found", f"no alert rule has id {rule_id!r}", "rule_id")
        return json_response(rule_json(found, text=True))

    @bp.put("/api/v1/alert-rules/<rule_id>")
    @require(Permission.MANAGE_ALERT_RULES)
    def put_rule(rule_id: str):
        body = params.body(frozenset({"yaml"}))
        rule_id = _rule_id(rule_id)
        text = body.get("yaml")
        if not isinstance(text, str) or not text.strip():
            raise HttpError(400, "invalid_field", "`yaml` must hold the rule file's text", "yaml")
        try:
            rule = parse_rule(text, f"{rule_id}.yml")
        except RuleError as exc:
            raise HttpError(422, "invalid_rule", str(exc), "yaml") from None
        if rule.id != rule_id:
            raise HttpError(422, "invalid_rule", f"the rule's id {rule.id!r} must equal the URL's {rule_id!r}", "yaml")
        before = rules().get(rule_id)
        directory = rules_dir(settings)
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False, encoding="utf-8") as out:
            out.write(text)
        os.replace(out.name, directory / f"{rule_id}.yml")  # atomic: the evaluator never reads half a file
        audit(rule_id, {"change": "alert_rule_saved", "created": before is None,
                        "before": before.text if before else None, "after": text})
        return json_response(rule_json(rule, text=True), 201 if before is None else 200)

    @bp.delete("/api/v1/alert-rules/<rule_id>")
    @require(Permission.MANAGE_ALERT_RULES)
    def delete_rule(rule_id: str):
        path = rules_dir(settings) / f"{_rule_id(rule_id)}.yml"
        if not path.exists():
            packaged = (PACKAGED_RULES / f"{rule_id}.yml").exists()
            raise HttpError(409 if packaged else 404, "packaged_rule" if packaged else "not_found",
                            "packaged rules cannot be deleted; PUT a copy with `enabled: false` to turn one off"
                            if packaged else f"no user rule has id {rule_id!r}", "rule_id")
        text = path.read_text(encoding="utf-8")
        path.unlink()
        audit(rule_id, {"change": "alert_rule_deleted", "before": text})
        return json_response({"deleted": rule_id})

    # -- silences --------------------------------------------------------------------------------------

    @bp.get("/api/v1/alert-silences")
    @require(Permission.VIEW)
    def list_silences():
        params.check_params(frozenset({"active", "limit"}))
        active = (params.one("active") or "false").lower()
        if active not in {"true", "false"}:
            raise HttpError(400, "invalid_parameter", "`active` must be true or false", "active")
        now = datetime.now(UTC)
        found = actions.list_silences(pool, active_at=now if active == "true" else None,
                                      limit=params.whole_number(params.one("limit") or "100", "limit", 1000))
        return json_response({"silences": [actions.silence_json(s, now) for s in found]})

    @bp.post("/api/v1/alert-silences")
    @require(Permission.RESPOND_TO_ALERTS)
    def create_silence():
        body = params.body(frozenset({"matchers", "starts_at", "ends_at", "comment"}))
        matchers = body.get("matchers")
        if not isinstance(matchers, dict) or not matchers:
            raise HttpError(400, "invalid_field", "`matchers` must be a non-empty object of label → value, e.g. "
                            "{\"rule_id\": \"failed_login_burst\"}", "matchers")
        comment = params.string(body, "comment", max_len=2000)
        starts_at = parse_timestamp(body["starts_at"], "starts_at") if body.get("starts_at") is not None else \
            datetime.now(UTC)
        if body.get("ends_at") is None:
            raise HttpError(400, "invalid_field", "`ends_at` is required (a silence always ends)", "ends_at")
        ends_at = parse_timestamp(body["ends_at"], "ends_at")
        try:
            silence_id = actions.create_silence(pool, matchers=matchers, starts_at=starts_at, ends_at=ends_at,
                                                created_by=current_key().principal, comment=comment, audit=audit)
        except InvalidSilence as exc:
            raise HttpError(400, "invalid_silence", str(exc), "matchers") from None
        return json_response({"silence_id": silence_id}, 201)

    @bp.delete("/api/v1/alert-silences/<silence_id>")
    @require(Permission.RESPOND_TO_ALERTS)
    def expire_silence(silence_id: str):
        if not (silence_id.isascii() and silence_id.isdigit()) or len(silence_id) > 18:
            raise HttpError(400, "invalid_silence_id", "a silence id is a whole number", "silence_id")
        try:
            silence = actions.expire_silence(pool, int(silence_id), by=current_key().principal, audit=audit)
        except InvalidSilence as exc:
            raise HttpError(404, "not_found", str(exc), "silence_id") from None
        return json_response(actions.silence_json(silence, datetime.now(UTC)))

    return bp
