"""The admin API: API keys, registered users, event types and retention settings.

Each change is stored together with its audit record, in one transaction (``caller.auditor``)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint

from auditwatch.api import caller, params
from auditwatch.services import Services
from ingest.http import HttpError, current_key, json_response, require
from ingest.validate import EVENT_TYPE
from storage.auth import Permission, Role
from storage.timescale import catalog

DEFAULT_RETENTION = {"hot_days": 90, "cold_years": 7}


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("admin", __name__)

    @bp.get("/api/v1/keys")
    @require(Permission.MANAGE_KEYS)
    def list_keys():
        params.check_params(frozenset())
        return json_response({"keys": [_key_json(k) for k in catalog.list_keys(services.pool)]})

    @bp.post("/api/v1/keys")
    @require(Permission.MANAGE_KEYS)
    def create_key():
        body = params.body(frozenset({"name", "role"}))
        name = params.string(body, "name", max_len=64)
        role = params.string(body, "role", max_len=16)
        if role not in {r.value for r in Role}:
            raise HttpError(400, "invalid_role", "`role` must be viewer, auditor, admin or system", "role")
        if not catalog_name_ok(name):
            raise HttpError(400, "invalid_name", "`name` may hold letters, digits and _ . @ - (at most 64)", "name")
        if catalog.key_exists(services.pool, name):
            raise HttpError(409, "conflict", "a key with this name exists; choose another name", "name")
        key, secret = catalog.create_key(services.pool, name, Role(role), created_by=current_key().principal,
                                         audit=caller.auditor(services))
        return json_response({**_key_json(key), "key": secret}, 201)

    @bp.delete("/api/v1/keys/<name>")
    @require(Permission.MANAGE_KEYS)
    def revoke_key(name: str):
        if not catalog_name_ok(name):
            raise HttpError(400, "invalid_name", "a key name holds letters, digits and _ . @ - (at most 64)", "name")
        key = catalog.revoke_key(services.pool, name, revoked_by=current_key().principal,
                                 audit=caller.auditor(services))
        if key is None:
            raise HttpError(404, "not_found", "no live key has this name or id", "name")
        services.forget_keys()
        return json_response(_key_json(key))

    # -- users and event types -------------------------------------------------------------------------

    @bp.get("/api/v1/users")
    @require(Permission.VIEW)
    def list_users():
        params.check_params(frozenset({"after", "limit"}))
        limit = params.whole_number(params.one("limit") or "1000", "limit", 10_000)
        users = catalog.list_users(services.pool, limit=limit, after=params.one("after"))
        return json_response({"users": [_user_json(u) for u in users]})

    @bp.post("/api/v1/users")
    @require(Permission.MANAGE_CATALOG)
    def register_user():
        body = params.body(frozenset({"user_id", "kind", "display_name", "email", "department"}))
        user = {"user_id": params.string(body, "user_id"), "kind": body.get("kind", "human")}
        if not isinstance(user["kind"], str) or user["kind"] not in {"human", "service"}:
            raise HttpError(400, "invalid_field", "`kind` must be human or service", "kind")
        for name in ("display_name", "email", "department"):
            user[name] = params.string(body, name, required=False)
        if any(ord(c) < 32 or ord(c) == 127 for c in user["user_id"]):
            raise HttpError(400, "control_characters", "`user_id` contains control characters", "user_id")
        new = catalog.register_users(services.pool, [user], registered_by=current_key().principal,
                                     audit=caller.auditor(services))
        return json_response({"user_id": user["user_id"], "created": bool(new)}, 201 if new else 200)

    @bp.get("/api/v1/event-types")
    @require(Permission.VIEW)
    def list_event_types():
        params.check_params(frozenset())
        return json_response({"event_types": [
            {"event_type": t.event_type, "description": t.description, "ocsf_class": t.ocsf_class,
             "builtin": t.builtin, "reserved": t.reserved, "class_uid": t.class_uid, "activity_id": t.activity_id,
             "type_uid": t.type_uid} for t in catalog.event_types(services.pool)]})

    @bp.post("/api/v1/event-types")
    @require(Permission.MANAGE_CATALOG)
    def add_event_type():
        body = params.body(frozenset({"event_type", "description", "ocsf_class"}))
        name = params.string(body, "event_type", max_len=64)
        if not EVENT_TYPE.fullmatch(name):
            raise HttpError(400, "invalid_event_type", "`event_type` must be lower-case letters, digits, `_` or "
                            "`.`, starting with a letter", "event_type")
        description = params.string(body, "description", required=False, max_len=1000) or ""
        ocsf = params.string(body, "ocsf_class", required=False, max_len=128)
        created = catalog.add_event_type(services.pool, name, description, ocsf, current_key().principal,
                                         audit=caller.auditor(services))
        return json_response({"event_type": name, "created": created}, 201 if created else 200)

    # -- retention settings ------------------------------------------------------------------------------

    @bp.get("/api/v1/retention")
    @require(Permission.VIEW)
    def get_retention():
        params.check_params(frozenset())
        return json_response(catalog.get_setting(services.pool, "retention") or DEFAULT_RETENTION)

    @bp.put("/api/v1/retention")
    @require(Permission.CONFIGURE_RETENTION)
    def put_retention():
        body = params.body(frozenset(DEFAULT_RETENTION) | {"cold_years_by_type"})
        value = {**(catalog.get_setting(services.pool, "retention") or DEFAULT_RETENTION)}
        for name, (low, high) in {"hot_days": (1, 3650), "cold_years": (1, 100)}.items():
            if name in body:
                if not isinstance(body[name], int) or isinstance(body[name], bool) or not low <= body[name] <= high:
                    raise HttpError(400, "invalid_field", f"`{name}` must be a whole number from {low} to {high}",
                                    name)
                value[name] = body[name]
        if "cold_years_by_type" in body:  # longer (or shorter) cold retention for some event types
            by_type = body["cold_years_by_type"]
            if not isinstance(by_type, dict) or len(by_type) > 1000 or not all(
                    isinstance(k, str) and EVENT_TYPE.fullmatch(k) and isinstance(v, int) and not isinstance(v, bool)
                    and 1 <= v <= 100 for k, v in by_type.items()):
                raise HttpError(400, "invalid_field", "`cold_years_by_type` must map event types to whole numbers "
                                "of years from 1 to 100, e.g. {\"config_change\": 10}", "cold_years_by_type")
            value["cold_years_by_type"] = by_type
        catalog.put_setting(services.pool, "retention", value, current_key().principal,
                            audit=caller.auditor(services), audit_form=_retention_audit_form)
        return json_response(value)

    return bp


def _retention_audit_form(value: dict[str, Any]) -> dict[str, Any]:
    """Per-type years as a list in the audit record: R9 would mask a type named like ``session_start``."""
    by_type = value.get("cold_years_by_type")
    if not isinstance(by_type, dict):
        return value
    return {**value, "cold_years_by_type": [{"event_type": t, "cold_years": y} for t, y in sorted(by_type.items())]}


KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def catalog_name_ok(name: str) -> bool:
    return KEY_NAME.fullmatch(name) is not None


def _key_json(key) -> dict[str, Any]:
    return {"key_id": str(key.key_id), "name": key.name, "role": str(key.role),
            "created_at": key.created_at.isoformat(),
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None}


def _user_json(user) -> dict[str, Any]:
    return {"user_id": user.user_id, "display_name": user.display_name, "email": user.email,
            "department": user.department, "kind": user.kind, "created_at": user.created_at.isoformat()}
