"""Request parsing shared by the API's resources: one-valued query parameters and JSON bodies.

Errors are ``HttpError``s from ``ingest.http``, the HTTP kit both ingest and this API answer with.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import request

from ingest.http import HttpError, request_body
from ingest.validate import EVENT_TYPE

# C0 controls and DEL, bar tab, CR and LF; PostgreSQL text and jsonb cannot hold NUL at all.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def one(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise HttpError(400, "repeated_parameter", f"`{name}` may be given only once", name)
    if values and len(values[0]) > 4096:
        raise HttpError(400, "parameter_too_long", f"`{name}` is too long", name)
    if values and CONTROL.search(values[0]):
        raise HttpError(400, "control_characters", f"`{name}` contains control characters", name)
    return values[0] if values else None


def whole_number(raw: str, name: str, high: int) -> int:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= high:
        raise HttpError(400, "invalid_limit", f"`{name}` must be a whole number from 1 to {high}", name)
    return int(raw)



def check_params(allowed: frozenset[str]) -> None:
    unknown = set(request.args) - allowed
    if unknown:
        name = sorted(unknown)[0]
        shown = name if EVENT_TYPE.fullmatch(name) else "(unprintable)"
        hint = f"allowed: {', '.join(sorted(allowed))}" if allowed else "this route takes no query parameters"
        raise HttpError(400, "unknown_parameter", f"unknown query parameter `{shown}`; {hint}", shown)



def body(allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object, holding no fields but ``allowed``."""
    if (request.mimetype or "").lower() != "application/json":
        raise HttpError(415, "unsupported_media_type", "send a JSON object with `Content-Type: application/json`")
    try:
        parsed = orjson.loads(request_body())
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise HttpError(400, "wrong_type", "the body must be a JSON object")
    unknown = set(parsed) - allowed
    if unknown:
        name = sorted(unknown)[0]
        shown = name if EVENT_TYPE.fullmatch(name) else "(unprintable)"
        raise HttpError(400, "unknown_field", f"unknown field `{shown}`; allowed: {', '.join(sorted(allowed))}",
                        shown)
    return parsed


def string(fields: dict[str, Any], name: str, *, required: bool = True, max_len: int = 256) -> str | None:
    value = fields.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise HttpError(400, "invalid_field", f"`{name}` must be a non-empty string of at most {max_len} characters",
                        name)
    if CONTROL.search(value):
        raise HttpError(400, "control_characters", f"`{name}` contains control characters", name)
    return value
