"""The read and admin API: query, export, erasure, keys, users, event types, retention."""

from __future__ import annotations

import csv
import io
import ipaddress
import re
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, request, stream_with_context

from auditwatch.services import Services
from ingest.http import HttpError, current_key, dumps, json_response, request_body, require
from ingest.pipeline import remote_ip
from ingest.validate import EVENT_TYPE, parse_timestamp
from storage import tiers
from storage.auth import Permission, Role
from storage.events import COLUMNS, EventRecord, Outcome
from storage.timescale import catalog, erasure, queries
from storage.timescale.queries import EventQuery

QUERY_PARAMS = frozenset(
    {"start_time", "end_time", "user_id", "event_type", "outcome", "source_ip", "metadata", "limit", "cursor",
     "include_total"}
)
EXPORT_PARAMS = (QUERY_PARAMS - {"limit", "cursor", "include_total"}) | {"format"}
DEFAULT_RETENTION = {"hot_days": 90, "cold_years": 7}
MAX_FILTER_DEPTH = 16  # stored metadata is never deeper (ingest.validate), so a deeper filter cannot match
# C0 controls and DEL, bar tab, CR and LF; PostgreSQL text and jsonb cannot hold NUL at all.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _one(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise HttpError(400, "repeated_parameter", f"`{name}` may be given only once", name)
    if values and len(values[0]) > 4096:
        raise HttpError(400, "parameter_too_long", f"`{name}` is too long", name)
    if values and _CONTROL.search(values[0]):
        raise HttpError(400, "control_characters", f"`{name}` contains control characters", name)
    return values[0] if values else None


def _whole_number(raw: str, name: str, high: int) -> int:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= high:
        raise HttpError(400, "invalid_limit", f"`{name}` must be a whole number from 1 to {high}", name)
    return int(raw)


def _check_filter_tree(node: Any, depth: int = 1) -> None:
    """A metadata filter must be storable as jsonb: bounded depth, no control characters."""
    if depth > MAX_FILTER_DEPTH:
        raise HttpError(400, "too_deep", f"`metadata` is nested deeper than {MAX_FILTER_DEPTH} levels", "metadata")
    children = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in children:
        for text in (key, child):
            if isinstance(text, str) and _CONTROL.search(text):
                raise HttpError(400, "control_characters", "`metadata` contains control characters", "metadata")
        if isinstance(child, dict | list):
            _check_filter_tree(child, depth + 1)


def _check_params(allowed: frozenset[str]) -> None:
    unknown = set(request.args) - allowed
    if unknown:
        name = sorted(unknown)[0]
        shown = name if EVENT_TYPE.fullmatch(name) else "(unprintable)"
        hint = f"allowed: {', '.join(sorted(allowed))}" if allowed else "this route takes no query parameters"
        raise HttpError(400, "unknown_parameter", f"unknown query parameter `{shown}`; {hint}", shown)


def _parse_query(max_limit: int, *, paged: bool = True) -> EventQuery:
    start = _one("start_time")
    end = _one("end_time")
    start_time = parse_timestamp(start, "start_time") if start is not None else None
    end_time = parse_timestamp(end, "end_time") if end is not None else None
    if start_time and end_time and start_time >= end_time:
        raise HttpError(400, "invalid_range", "`start_time` must be before `end_time`", "start_time")

    event_types = tuple(request.args.getlist("event_type"))
    for value in event_types:
        if not EVENT_TYPE.fullmatch(value):
            raise HttpError(400, "invalid_event_type", "`event_type` is not a valid event type name", "event_type")

    outcome = _one("outcome")
    if outcome is not None and outcome not in {o.value for o in Outcome}:
        raise HttpError(400, "invalid_outcome", "`outcome` must be success, failure or unknown", "outcome")

    source_ip = _one("source_ip")
    if source_ip is not None:
        if "%" in source_ip:  # PostgreSQL's inet has no zone index (fe80::1%eth0)
            raise HttpError(400, "invalid_ip", "`source_ip` must be an address or CIDR block without a zone index",
                            "source_ip")
        try:
            source_ip = str(ipaddress.ip_network(source_ip, strict=False))
        except ValueError:
            raise HttpError(400, "invalid_ip", "`source_ip` must be an IP address or a CIDR block such as "
                            "10.0.0.0/8", "source_ip") from None

    metadata = _one("metadata")
    metadata_filter = None
    if metadata is not None:
        try:
            metadata_filter = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            raise HttpError(400, "invalid_metadata", "`metadata` must be a JSON object, e.g. {\"bucket\":\"hr\"}",
                            "metadata") from None
        if not isinstance(metadata_filter, dict):
            raise HttpError(400, "invalid_metadata", "`metadata` must be a JSON object", "metadata")
        _check_filter_tree(metadata_filter)

    user_id = _one("user_id")
    limit = 100
    raw_limit = _one("limit") if paged else None
    if raw_limit is not None:
        limit = _whole_number(raw_limit, "limit", max_limit)
    return EventQuery(start_time=start_time, end_time=end_time, user_id=user_id, event_types=event_types,
                      outcome=Outcome(outcome) if outcome else None, source_ip=source_ip,
                      metadata=metadata_filter, limit=limit)


def _filters_of(query: EventQuery) -> dict[str, Any]:
    """The query's filters as recorded in the query_executed / export_requested audit event."""
    return {
        k: v for k, v in {
            "start_time": query.start_time.isoformat() if query.start_time else None,
            "end_time": query.end_time.isoformat() if query.end_time else None,
            "user_id": query.user_id,
            "event_type": list(query.event_types) or None,
            "outcome": str(query.outcome) if query.outcome else None,
            "source_ip": query.source_ip,
            "metadata": query.metadata,
        }.items() if v is not None
    }


def _event_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise HttpError(400, "invalid_uuid", "the event id is not a valid UUID", "event_id") from None


def _body(allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object, holding no fields but ``allowed``."""
    if (request.mimetype or "").lower() != "application/json":
        raise HttpError(415, "unsupported_media_type", "send a JSON object with `Content-Type: application/json`")
    try:
        body = orjson.loads(request_body())
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, "wrong_type", "the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        name = sorted(unknown)[0]
        shown = name if EVENT_TYPE.fullmatch(name) else "(unprintable)"
        raise HttpError(400, "unknown_field", f"unknown field `{shown}`; allowed: {', '.join(sorted(allowed))}",
                        shown)
    return body


def _string(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 256) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise HttpError(400, "invalid_field", f"`{name}` must be a non-empty string of at most {max_len} characters",
                        name)
    if _CONTROL.search(value):
        raise HttpError(400, "control_characters", f"`{name}` contains control characters", name)
    return value


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("api", __name__)
    settings = services.settings

    def audit(event_type: str, **kwargs: Any) -> None:
        services.audit(event_type, current_key().principal, source_ip=remote_ip(request.remote_addr),
                       user_agent=request.user_agent.string or None, **kwargs)

    # -- events ------------------------------------------------------------------------------------

    @bp.get("/api/v1/logs")
    @require(Permission.VIEW)
    def list_events():
        _check_params(QUERY_PARAMS)
        query = _parse_query(settings.max_query_limit)
        cursor = _one("cursor")
        after = queries.decode_cursor(cursor, query) if cursor else None
        include_total = (_one("include_total") or "false").lower()
        if include_total not in {"true", "false", "1", "0"}:
            raise HttpError(400, "invalid_parameter", "`include_total` must be true or false", "include_total")
        # Hot and archived (cold) events, merged newest first; each says which tier it came from.
        page = tiers.search(services.pool, services.archive, query, after=after,
                            with_total=include_total in {"true", "1"})
        audit("query_executed", metadata={"route": "list_events", "filters": _filters_of(query),
                                          "returned": len(page.events)})
        body: dict[str, Any] = {
            "events": [{**e.to_json(), "tier": tier} for e, tier in zip(page.events, page.tiers, strict=True)],
            "next": queries.encode_cursor(page.next, query) if page.next else None,
        }
        if page.total is not None:
            body["total"] = page.total
        return json_response(body)

    @bp.get("/api/v1/logs/<event_id>")
    @require(Permission.VIEW)
    def get_event(event_id: str):
        _check_params(frozenset())
        found = queries.get(services.pool, _event_id(event_id))
        audit("query_executed", metadata={"route": "get_event", "event_id": event_id, "found": found is not None})
        if found is None:
            raise HttpError(404, "not_found", "no stored event has this id", "event_id")
        return json_response(found.to_json())

    @bp.get("/api/v1/logs/export")
    @require(Permission.EXPORT)
    def export_events():
        _check_params(EXPORT_PARAMS)
        fmt = _one("format") or "ndjson"
        if fmt not in {"csv", "ndjson"}:
            raise HttpError(400, "invalid_format", "`format` must be csv or ndjson", "format")
        query = _parse_query(settings.max_query_limit, paged=False)
        audit("export_requested", metadata={"format": fmt, "filters": _filters_of(query)})
        rows = queries.stream(services.pool, query, max_rows=settings.max_export_rows)
        body = _csv_lines(rows) if fmt == "csv" else (dumps(e.to_json()) + b"\n" for e in rows)
        mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return Response(stream_with_context(body), mimetype=mimetype, headers={
            "Content-Disposition": f'attachment; filename="audit-events.{fmt}"'})

    @bp.delete("/api/v1/logs/<event_id>")
    @require(Permission.DELETE)
    def erase(event_id: str):
        target = _event_id(event_id)
        reason = _string(_body(frozenset({"reason"})), "reason", max_len=2000)

        def record(erased: list[EventRecord]) -> EventRecord:
            return services.audit_record(
                "event_erased", current_key().principal, source_ip=remote_ip(request.remote_addr),
                user_agent=request.user_agent.string or None, resource_id=str(target), metadata={
                    "reason": reason,
                    "erased": [{"timestamp": e.timestamp.isoformat(), "event_type": e.event_type} for e in erased],
                })

        erased = erasure.erase_event(services.pool, target, record)
        if not erased:
            raise HttpError(404, "not_found", "no stored event has this id", "event_id")
        return json_response({"erased": len(erased), "event_id": str(target)})

    # -- keys ------------------------------------------------------------------------------------------

    @bp.get("/api/v1/keys")
    @require(Permission.MANAGE_KEYS)
    def list_keys():
        _check_params(frozenset())
        return json_response({"keys": [_key_json(k) for k in catalog.list_keys(services.pool)]})

    @bp.post("/api/v1/keys")
    @require(Permission.MANAGE_KEYS)
    def create_key():
        body = _body(frozenset({"name", "role"}))
        name = _string(body, "name", max_len=64)
        role = _string(body, "role", max_len=16)
        if role not in {r.value for r in Role}:
            raise HttpError(400, "invalid_role", "`role` must be viewer, auditor, admin or system", "role")
        if not catalog_name_ok(name):
            raise HttpError(400, "invalid_name", "`name` may hold letters, digits and _ . @ - (at most 64)", "name")
        if catalog.key_exists(services.pool, name):
            raise HttpError(409, "conflict", "a key with this name exists; choose another name", "name")
        key, secret = catalog.create_key(services.pool, name, Role(role), created_by=current_key().principal)
        audit("api_key_created", resource_id=str(key.key_id), metadata={"name": name, "role": role})
        return json_response({**_key_json(key), "key": secret}, 201)

    @bp.delete("/api/v1/keys/<name>")
    @require(Permission.MANAGE_KEYS)
    def revoke_key(name: str):
        if not catalog_name_ok(name):
            raise HttpError(400, "invalid_name", "a key name holds letters, digits and _ . @ - (at most 64)", "name")
        key = catalog.revoke_key(services.pool, name, revoked_by=current_key().principal)
        if key is None:
            raise HttpError(404, "not_found", "no live key has this name or id", "name")
        services.forget_keys()
        audit("api_key_revoked", resource_id=str(key.key_id), metadata={"name": key.name})
        return json_response(_key_json(key))

    # -- users and event types -------------------------------------------------------------------------

    @bp.get("/api/v1/users")
    @require(Permission.VIEW)
    def list_users():
        _check_params(frozenset({"after", "limit"}))
        limit = _whole_number(_one("limit") or "1000", "limit", 10_000)
        users = catalog.list_users(services.pool, limit=limit, after=_one("after"))
        return json_response({"users": [_user_json(u) for u in users]})

    @bp.post("/api/v1/users")
    @require(Permission.MANAGE_CATALOG)
    def register_user():
        body = _body(frozenset({"user_id", "kind", "display_name", "email", "department"}))
        user = {"user_id": _string(body, "user_id"), "kind": body.get("kind", "human")}
        if not isinstance(user["kind"], str) or user["kind"] not in {"human", "service"}:
            raise HttpError(400, "invalid_field", "`kind` must be human or service", "kind")
        for name in ("display_name", "email", "department"):
            user[name] = _string(body, name, required=False)
        if any(ord(c) < 32 or ord(c) == 127 for c in user["user_id"]):
            raise HttpError(400, "control_characters", "`user_id` contains control characters", "user_id")
        new = catalog.register_users(services.pool, [user], registered_by=current_key().principal)
        if new:
            audit("config_change", resource_id=user["user_id"], metadata={"change": "user_registered"})
        return json_response({"user_id": user["user_id"], "created": bool(new)}, 201 if new else 200)

    @bp.get("/api/v1/event-types")
    @require(Permission.VIEW)
    def list_event_types():
        _check_params(frozenset())
        return json_response({"event_types": [
            {"event_type": t.event_type, "description": t.description, "ocsf_class": t.ocsf_class,
             "builtin": t.builtin, "reserved": t.reserved} for t in catalog.event_types(services.pool)]})

    @bp.post("/api/v1/event-types")
    @require(Permission.MANAGE_CATALOG)
    def add_event_type():
        body = _body(frozenset({"event_type", "description", "ocsf_class"}))
        name = _string(body, "event_type", max_len=64)
        if not EVENT_TYPE.fullmatch(name):
            raise HttpError(400, "invalid_event_type", "`event_type` must be lower-case letters, digits, `_` or "
                            "`.`, starting with a letter", "event_type")
        description = _string(body, "description", required=False, max_len=1000) or ""
        ocsf = _string(body, "ocsf_class", required=False, max_len=128)
        created = catalog.add_event_type(services.pool, name, description, ocsf, current_key().principal)
        if created:
            audit("config_change", resource_id=name, metadata={"change": "event_type_added"})
        return json_response({"event_type": name, "created": created}, 201 if created else 200)

    # -- retention settings ------------------------------------------------------------------------------

    @bp.get("/api/v1/retention")
    @require(Permission.VIEW)
    def get_retention():
        _check_params(frozenset())
        return json_response(catalog.get_setting(services.pool, "retention") or DEFAULT_RETENTION)

    @bp.put("/api/v1/retention")
    @require(Permission.CONFIGURE_RETENTION)
    def put_retention():
        body = _body(frozenset(DEFAULT_RETENTION) | {"cold_years_by_type"})
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
        previous = catalog.put_setting(services.pool, "retention", value, current_key().principal)
        audit("config_change", resource_id="retention", metadata={"before": previous, "after": value})
        return json_response(value)

    return bp


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


def _csv_lines(rows: Iterator[EventRecord]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for event in rows:
        data = event.to_json()
        data["metadata"] = dumps(event.metadata).decode()
        writer.writerow([_csv_safe(data[c]) for c in COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formula injection in exported cells."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
