"""The events API: query, fetch, export and erase audit events (hot and archived tiers)."""

from __future__ import annotations

import ipaddress
import itertools
import uuid
from typing import Any

import orjson
from flask import Blueprint, Response, request, stream_with_context
from psycopg_pool import PoolTimeout

from auditwatch.api import caller, params
from auditwatch.services import Services
from ingest.http import HttpError, current_key, json_response, require
from ingest.validate import EVENT_TYPE, parse_timestamp
from storage import export, ocsf, tiers
from storage.auth import Permission
from storage.errors import ErasureHeld
from storage.events import EventRecord, Outcome
from storage.timescale import catalog, erasure, queries
from storage.timescale.archive import ArchiveBusy
from storage.timescale.queries import EventQuery

QUERY_PARAMS = frozenset(
    {"start_time", "end_time", "user_id", "event_type", "outcome", "source_ip", "metadata", "limit", "cursor",
     "include_total"}
)
EXPORT_PARAMS = (QUERY_PARAMS - {"limit", "cursor", "include_total"}) | {"format"}
MAX_FILTER_DEPTH = 16  # stored metadata is never deeper (ingest.validate), so a deeper filter cannot match


def _check_filter_tree(node: Any, depth: int = 1) -> None:
    """A metadata filter must be storable as jsonb: bounded depth, no control characters."""
    if depth > MAX_FILTER_DEPTH:
        raise HttpError(400, "too_deep", f"`metadata` is nested deeper than {MAX_FILTER_DEPTH} levels", "metadata")
    children = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in children:
        for text in (key, child):
            if isinstance(text, str) and params.CONTROL.search(text):
                raise HttpError(400, "control_characters", "`metadata` contains control characters", "metadata")
        if isinstance(child, dict | list):
            _check_filter_tree(child, depth + 1)



def _parse_query(max_limit: int, *, paged: bool = True) -> EventQuery:
    start = params.one("start_time")
    end = params.one("end_time")
    start_time = parse_timestamp(start, "start_time") if start is not None else None
    end_time = parse_timestamp(end, "end_time") if end is not None else None
    if start_time and end_time and start_time >= end_time:
        raise HttpError(400, "invalid_range", "`start_time` must be before `end_time`", "start_time")

    event_types = tuple(request.args.getlist("event_type"))
    for value in event_types:
        if not EVENT_TYPE.fullmatch(value):
            raise HttpError(400, "invalid_event_type", "`event_type` is not a valid event type name", "event_type")

    outcome = params.one("outcome")
    if outcome is not None and outcome not in {o.value for o in Outcome}:
        raise HttpError(400, "invalid_outcome", "`outcome` must be success, failure or unknown", "outcome")

    source_ip = params.one("source_ip")
    if source_ip is not None:
        if "%" in source_ip:  # PostgreSQL's inet has no zone index (fe80::1%eth0)
            raise HttpError(400, "invalid_ip", "`source_ip` must be an address or CIDR block without a zone index",
                            "source_ip")
        try:
            source_ip = str(ipaddress.ip_network(source_ip, strict=False))
        except ValueError:
            raise HttpError(400, "invalid_ip", "`source_ip` must be an IP address or a CIDR block such as "
                            "10.0.0.0/8", "source_ip") from None

    metadata = params.one("metadata")
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

    user_id = params.one("user_id")
    limit = 100
    raw_limit = params.one("limit") if paged else None
    if raw_limit is not None:
        limit = params.whole_number(raw_limit, "limit", max_limit)
    return EventQuery(start_time=start_time, end_time=end_time, user_id=user_id, event_types=event_types,
                      outcome=Outcome(outcome) if outcome else None, source_ip=source_ip,
                      metadata=metadata_filter, limit=limit)


def _event_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise HttpError(400, "invalid_uuid", "the event id is not a valid UUID", "event_id") from None



def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("events", __name__)
    settings = services.settings

    def audit(event_type: str, **fields: Any) -> None:
        caller.audit(services, event_type, **fields)

    # -- events ------------------------------------------------------------------------------------

    @bp.get("/api/v1/logs")
    @require(Permission.VIEW)
    def list_events():
        params.check_params(QUERY_PARAMS)
        query = _parse_query(settings.max_query_limit)
        cursor = params.one("cursor")
        after = queries.decode_cursor(cursor, query) if cursor else None
        include_total = (params.one("include_total") or "false").lower()
        if include_total not in {"true", "false", "1", "0"}:
            raise HttpError(400, "invalid_parameter", "`include_total` must be true or false", "include_total")
        # Hot and archived (cold) events, merged newest first; each says which tier it came from.
        page = tiers.search(services.reads, services.archive, query, after=after,
                            with_total=include_total in {"true", "1"}, max_count=settings.max_count)
        audit("query_executed", metadata={"route": "list_events", "filters": query.filters(),
                                          "returned": len(page.events)})
        body: dict[str, Any] = {
            "events": [{**e.to_json(), "tier": tier} for e, tier in zip(page.events, page.tiers, strict=True)],
            "next": queries.encode_cursor(page.next, query) if page.next else None,
        }
        if page.total is not None:
            # Counted up to max_count: past it, `total` is a lower bound and `total_exact` says so.
            body["total"] = page.total
            body["total_exact"] = page.total_exact
        return json_response(body)

    @bp.get("/api/v1/logs/<event_id>")
    @require(Permission.VIEW)
    def get_event(event_id: str):
        params.check_params(frozenset())
        found = queries.get(services.reads, _event_id(event_id))
        audit("query_executed", metadata={"route": "get_event", "event_id": event_id, "found": found is not None})
        if found is None:
            raise HttpError(404, "not_found", "no stored event has this id", "event_id")
        return json_response(found.to_json())

    @bp.get("/api/v1/logs/export")
    @require(Permission.EXPORT)
    def export_events():
        params.check_params(EXPORT_PARAMS)
        fmt = params.one("format") or "ndjson"
        if fmt not in export.FORMATS:
            raise HttpError(400, "invalid_format", "`format` must be csv, ndjson or ocsf", "format")
        query = _parse_query(settings.max_query_limit, paged=False)
        audit("export_requested", metadata={"format": fmt, "filters": query.filters()})
        # Its own small pool: exports beyond export_pool_max get 503 after export_wait_seconds, and none
        # of them can hold a connection that ingest needs.
        rows = queries.stream(services.exports, query, max_rows=settings.max_export_rows)
        try:
            first = next(rows, None)  # take the connection now, while a refusal can still be a 503
        except PoolTimeout:
            raise HttpError(503, "exports_busy", f"{settings.export_pool_max} exports are running on this server; "
                            "retry when one has finished", headers={"Retry-After": "10"}) from None
        rows = itertools.chain([first] if first is not None else [], rows)
        types = ocsf.types_from_catalogue(catalog.event_types(services.pool)) if fmt == "ocsf" else None
        return Response(stream_with_context(export.lines(rows, fmt, ocsf_types=types)),
                        mimetype=export.MIMETYPES[fmt],
                        headers={"Content-Disposition": f'attachment; filename="audit-events.{export.EXTENSIONS[fmt]}"'})

    @bp.delete("/api/v1/logs/<event_id>")
    @require(Permission.DELETE)
    def erase(event_id: str):
        target = _event_id(event_id)
        reason = params.string(params.body(frozenset({"reason"})), "reason", max_len=2000)

        def record(erased: list[EventRecord]) -> EventRecord:
            return services.audit_record(
                "event_erased", current_key().principal, **caller.origin(), resource_id=str(target), metadata={
                    "reason": reason,
                    "erased": [{"timestamp": e.timestamp.isoformat(), "event_type": e.event_type} for e in erased],
                })

        try:
            erased = erasure.erase_event(services.pool, target, record, store=services.archive)
        except ErasureHeld as exc:
            raise HttpError(409, "legal_hold", str(exc), "event_id") from None
        except ArchiveBusy as exc:
            raise HttpError(503, "archive_busy", f"{exc} (the event is archived)", headers={"Retry-After": "30"}) \
                from None
        if not erased:
            raise HttpError(404, "not_found", "no stored event has this id", "event_id")
        return json_response({"erased": len(erased), "event_id": str(target)})

    # -- keys ------------------------------------------------------------------------------------------

    return bp
