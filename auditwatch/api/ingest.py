"""Ingest administration over HTTP: the bus's dead letters, listed and replayed."""

from __future__ import annotations

import orjson
from flask import Blueprint, request

from auditwatch.services import Services
from ingest.bus import DeadLetters
from ingest.http import HttpError, current_key, json_response, request_body, require
from storage.auth import Permission

MAX_LIST = 1000


def _whole(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise HttpError(400, "invalid_parameter", f"`{name}` must be a whole number from {low} to {high}", name)
    return int(raw)


def _replay_body() -> list[int] | None:
    """``{}`` (replay all) or ``{"seqs": [1, 2]}``; anything else is refused before the bus is asked."""
    raw = request_body()
    if not raw.strip():
        return None
    if (request.mimetype or "").lower() != "application/json":
        raise HttpError(415, "unsupported_media_type", "send `Content-Type: application/json`")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, "wrong_type", "the body is a JSON object: {} or {\"seqs\": [...]}")
    unknown = set(body) - {"seqs"}
    if unknown:
        raise HttpError(400, "unknown_field", "unknown field; the body takes only `seqs`", "seqs")
    seqs = body.get("seqs")
    if seqs is None:
        return None
    if (not isinstance(seqs, list) or len(seqs) > 100_000
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in seqs)):
        raise HttpError(400, "wrong_type", "`seqs` is a list of dead-letter sequence numbers (positive integers)",
                        "seqs")
    return seqs


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("api_ingest", __name__)

    def dead_letters() -> DeadLetters:
        if services.bus is None:
            raise HttpError(409, "no_bus", "this server writes events directly; dead letters exist only with a "
                            "bus (set `bus_url` to a NATS JetStream server)")
        return DeadLetters(services.bus)

    @bp.get("/api/v1/deadletters")
    @require(Permission.MANAGE_INGEST)
    def list_dead_letters():
        unknown = set(request.args) - {"limit", "after"}
        if unknown:
            raise HttpError(400, "unknown_parameter", "unknown query parameter; allowed: after, limit", "limit")
        limit = _whole("limit", 100, 1, MAX_LIST)
        after = _whole("after", 0, 0, 2**63 - 1)
        letters = dead_letters().list(limit=limit, after=after)
        return json_response({"dead_letters": [d.to_json() for d in letters],
                              "next": letters[-1].seq if len(letters) == limit else None})

    @bp.post("/api/v1/deadletters/replay")
    @require(Permission.MANAGE_INGEST)
    def replay_dead_letters():
        seqs = _replay_body()
        replayed = dead_letters().replay(seqs)
        services.audit("config_change", current_key().principal, resource_id="deadletters",
                       metadata={"change": "deadletters_replayed", "replayed": replayed,
                                 "seqs": seqs[:100] if seqs else "all"})
        return json_response({"replayed": replayed})

    return bp
