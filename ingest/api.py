"""The ingest routes: one event, or a batch as a JSON array or NDJSON."""

from __future__ import annotations

import orjson
from flask import Blueprint, request

from ingest.errors import EventRejected
from ingest.http import HttpError, current_key, json_response, request_body, require
from ingest.pipeline import IngestPipeline, RequestContext
from storage.auth import Permission

JSON = "application/json"
NDJSON = "application/x-ndjson"


def _media_type() -> str:
    return (request.mimetype or "").lower()


def _decode_json(raw: bytes):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def _decode_ndjson(raw: bytes, max_items: int) -> list:
    """One item per non-blank line; a line that does not parse becomes a per-event error."""
    items: list = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        if len(items) >= max_items:
            raise HttpError(413, "batch_too_large", f"a batch holds at most {max_items} events; split it")
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            items.append(EventRejected("malformed_json", f"line {number} is not valid JSON: {exc}"))
    return items


def _context(backfill_allowed: bool) -> RequestContext:
    key = current_key()
    return RequestContext(
        principal=key.principal,
        backfill=backfill_allowed and key.can(Permission.BACKFILL),
        remote_addr=request.remote_addr,
        # Not `if request.user_agent`: a UserAgent is falsy unless a parser recognised the browser.
        user_agent=request.user_agent.string or None,
    )


def create_blueprint(pipeline: IngestPipeline, *, max_batch: int = 10_000) -> Blueprint:
    bp = Blueprint("ingest", __name__)

    @bp.post("/api/v1/logs")
    @require(Permission.INGEST)
    def post_event():
        if _media_type() != JSON:
            raise HttpError(415, "unsupported_media_type", "send one event as `Content-Type: application/json`")
        item = _decode_json(request_body())
        if isinstance(item, list):
            raise HttpError(400, "wrong_type", "this route takes one event object; send arrays to /api/v1/logs/batch")
        result = pipeline.ingest([item], _context(backfill_allowed=True)).results[0]
        if result.error is not None:
            raise result.error
        status = 201 if result.status == "created" else 200
        return json_response({"event_id": result.event_id, "status": result.status}, status)

    @bp.post("/api/v1/logs/batch")
    @require(Permission.INGEST)
    def post_batch():
        media = _media_type()
        raw = request_body()
        if media == NDJSON:
            items = _decode_ndjson(raw, max_batch)
        elif media == JSON:
            items = _decode_json(raw)
            if not isinstance(items, list):
                raise HttpError(400, "wrong_type", "a batch is a JSON array of events (or NDJSON)")
            if len(items) > max_batch:
                raise HttpError(413, "batch_too_large", f"a batch holds at most {max_batch} events; split it")
        else:
            raise HttpError(415, "unsupported_media_type",
                            f"send a batch as `Content-Type: {JSON}` (an array) or `{NDJSON}`")
        if not items:
            raise HttpError(400, "empty_batch", "the batch holds no events")
        result = pipeline.ingest(items, _context(backfill_allowed=True))
        body = result.to_json()
        if result.retry_after is not None and result.accepted == 0 and result.duplicates == 0 and all(
            r.error is not None and r.error.code == "rate_limited" for r in result.results
        ):
            return json_response(body, 429, {"Retry-After": str(result.retry_after)})
        headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
        return json_response(body, 200, headers)

    return bp
