"""Field-level validation of one incoming event (R1, R2, R7 and the shape of every field).

Catalogue checks (R3 event type, R4 user) need the database and live in the pipeline.
Nothing here echoes a submitted value back except identifiers that passed a strict
pattern, so errors can be logged and returned safely.
"""

from __future__ import annotations

import re
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ingest.errors import EventRejected
from storage.events import Outcome
from storage.platform import is_platform_principal, is_platform_source

REQUIRED = ("event_id", "timestamp", "event_type", "user_id")
OPTIONAL = ("outcome", "source", "source_ip", "user_agent", "resource_id", "metadata")
ALLOWED = frozenset(REQUIRED + OPTIONAL)
SERVER_SET = frozenset({"received_at", "source_country", "source_asn"})

EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")  # safe to echo: says which field to fix
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_METADATA_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The characters an ISO 8601 date-time may hold: datetime.fromisoformat itself lets a NUL or any
# other character through in places (as the date/time separator, before the offset).
_TIMESTAMP_CHARS = re.compile(r"[0-9TWZ:.,+\- ]+")
_OUTCOMES = {o.value: o for o in Outcome}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LIMITS = {"user_id": 256, "source": 128, "user_agent": 1024, "resource_id": 512, "source_ip": 64}
# The metadata key under which the pipeline records who sent an event (``{"sender": principal}``).
INGEST_KEY = "_ingest"


@dataclass(frozen=True)
class ValidationPolicy:
    clock_skew: timedelta = timedelta(minutes=5)  # R2
    max_metadata_bytes: int = 10 * 1024  # R7: metadata must be under this many bytes of JSON
    max_metadata_depth: int = 16
    # Text limits are LIMITS times this: the bus writer re-checks redacted values, which may have grown.
    text_limit_scale: int = 1


@dataclass(slots=True)
class ValidEvent:
    """An event whose fields are well-formed; not yet checked against the catalogue."""

    event_id: uuid.UUID
    timestamp: datetime
    event_type: str
    user_id: str
    outcome: Outcome
    source: str | None
    source_ip: str | None
    user_agent: str | None
    resource_id: str | None
    metadata: dict[str, Any]


def _reject(code: str, field: str | None, message: str) -> EventRejected:
    return EventRejected(code, message, field)


def _text(obj: dict[str, Any], field: str, *, required: bool, scale: int = 1) -> str | None:
    value = obj.get(field)
    if value is None:
        if required:
            raise _reject("missing_field", field, f"`{field}` is required (R1)")
        return None
    if not isinstance(value, str):
        raise _reject("wrong_type", field, f"`{field}` must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise _reject("missing_field", field, f"`{field}` must not be empty (R1)")
    limit = LIMITS.get(field)
    if limit is not None and len(value) > limit * scale:
        raise _reject("too_long", field, f"`{field}` is longer than {limit} characters")
    if _CONTROL.search(value):
        raise _reject("control_characters", field, f"`{field}` contains control characters")
    return value


def parse_timestamp(value: Any, field: str = "timestamp") -> datetime:
    if not isinstance(value, str):
        raise _reject("wrong_type", field, f"`{field}` must be an ISO 8601 string such as 2024-01-15T10:30:00Z")
    if len(value) > 40 or len(value) < 16:
        raise _reject("invalid_timestamp", field, f"`{field}` is not an ISO 8601 date-time with a time zone")
    if not _TIMESTAMP_CHARS.fullmatch(value):
        raise _reject(
            "invalid_timestamp", field, f"`{field}` is not an ISO 8601 date-time such as 2024-01-15T10:30:00Z"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _reject(
            "invalid_timestamp", field, f"`{field}` is not an ISO 8601 date-time such as 2024-01-15T10:30:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise _reject(
            "invalid_timestamp", field, f"`{field}` has no time zone: add `Z` or an offset such as +02:00"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise _reject("invalid_timestamp", field, f"`{field}` is out of range once converted to UTC") from None


def _metadata(value: Any, policy: ValidationPolicy) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _reject("wrong_type", "metadata", "`metadata` must be a JSON object")
    if not value:
        return value
    if INGEST_KEY in value:
        raise _reject("reserved_metadata", "metadata",
                      f"`metadata.{INGEST_KEY}` is set by the server (it records the sending key); leave it out")
    # Depth first: it bounds the recursion below and orjson's own (which raises past 255 levels).
    _check_tree(value, 1, policy.max_metadata_depth)
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        raise _reject(
            "wrong_type", "metadata", "`metadata` holds a value JSON cannot carry (such as an integer over 64 bits)"
        ) from None
    if size >= policy.max_metadata_bytes:
        raise _reject(
            "metadata_too_large",
            "metadata",
            f"`metadata` is {size} bytes of JSON; it must be under {policy.max_metadata_bytes} bytes (R7)",
        )
    return value


def _check_tree(node: Any, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise _reject("too_deep", "metadata", f"`metadata` is nested deeper than {max_depth} levels")
    if isinstance(node, dict):
        for key, child in node.items():
            if _METADATA_CONTROL.search(key):
                raise _reject("control_characters", "metadata", "a `metadata` key contains control characters")
            if isinstance(child, dict | list):
                _check_tree(child, depth + 1, max_depth)
            elif isinstance(child, str) and _METADATA_CONTROL.search(child):
                raise _reject("control_characters", "metadata", "a `metadata` value contains control characters")
    else:
        for child in node:
            if isinstance(child, dict | list):
                _check_tree(child, depth + 1, max_depth)
            elif isinstance(child, str) and _METADATA_CONTROL.search(child):
                raise _reject("control_characters", "metadata", "a `metadata` value contains control characters")


def normal_ip(value: str) -> str | None:
    """The canonical text of an IPv4 or IPv6 address (as PostgreSQL prints it), or None.

    inet_pton is strict (no leading zeros, no zone index, no spaces) and runs in C: this is
    on the hot path of every event.
    """
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value))
    except OSError:
        pass
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, value))
    except OSError:
        return None


def parse_ip(value: str, field: str = "source_ip") -> str:
    if "%" in value:
        raise _reject("invalid_ip", field, f"`{field}` must be an IP address without a zone index")
    normal = normal_ip(value)
    if normal is None:
        raise _reject("invalid_ip", field, f"`{field}` is not an IPv4 or IPv6 address")
    return normal


def validate_event(obj: Any, *, now: datetime, policy: ValidationPolicy, backfill: bool) -> ValidEvent:
    """Check one decoded JSON value; raises EventRejected naming the first field at fault.

    ``backfill`` lifts R2's window into the past (history is allowed); the future stays closed.
    """
    if not isinstance(obj, dict):
        raise _reject("wrong_type", None, "each event must be a JSON object")
    unknown = obj.keys() - ALLOWED
    if unknown:
        field = sorted(unknown)[0]
        shown = field if _FIELD_NAME.fullmatch(field) else "(unprintable)"
        if field in SERVER_SET:
            raise _reject("unknown_field", field, f"`{field}` is set by the server; leave it out")
        raise _reject(
            "unknown_field", shown, f"unknown field `{shown}`; allowed fields: {', '.join(sorted(ALLOWED))}"
        )

    raw_id = obj.get("event_id")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise _reject("missing_field", "event_id", "`event_id` is required (R1)")
    if not isinstance(raw_id, str) or len(raw_id) > 45:
        raise _reject("invalid_uuid", "event_id", "`event_id` must be a UUID string")
    try:
        event_id = uuid.UUID(raw_id)
    except ValueError:
        raise _reject("invalid_uuid", "event_id", "`event_id` is not a valid UUID") from None

    raw_timestamp = obj.get("timestamp")
    if raw_timestamp is None or (isinstance(raw_timestamp, str) and not raw_timestamp.strip()):
        raise _reject("missing_field", "timestamp", "`timestamp` is required (R1)")
    timestamp = parse_timestamp(obj["timestamp"])
    if timestamp > now + policy.clock_skew:
        raise _reject(
            "timestamp_out_of_window",
            "timestamp",
            f"`timestamp` is more than {int(policy.clock_skew.total_seconds())} s in the future (R2); "
            "check the sender's clock",
        )
    if not backfill and timestamp < now - policy.clock_skew:
        raise _reject(
            "timestamp_out_of_window",
            "timestamp",
            f"`timestamp` is more than {int(policy.clock_skew.total_seconds())} s in the past (R2); "
            "historic events need a key with the system role (backfill) or `auditwatch ingest`",
        )
    if timestamp < _EPOCH:
        raise _reject("timestamp_out_of_window", "timestamp", "`timestamp` is before 1970")

    scale = policy.text_limit_scale
    event_type = _text(obj, "event_type", required=True)
    if not EVENT_TYPE.fullmatch(event_type):
        raise _reject(
            "invalid_event_type", "event_type",
            "`event_type` must be lower-case letters, digits, `_` or `.`, starting with a letter, at most 64",
        )
    user_id = _text(obj, "user_id", required=True, scale=scale)
    if is_platform_principal(user_id):
        raise _reject(
            "reserved_principal", "user_id",
            "`user_id` has the form of the platform's own principals (`apikey:…`, `cli:…`), which "
            "only Auditwatch writes; send the application's own user id",
        )
    source = _text(obj, "source", required=False, scale=scale)
    if is_platform_source(source):
        raise _reject(
            "reserved_source", "source",
            "`source` `auditwatch` (and `auditwatch-…`) marks the platform's own records; name your application",
        )

    raw_outcome = obj.get("outcome")
    if raw_outcome is None:
        outcome = Outcome.UNKNOWN
    elif isinstance(raw_outcome, str) and raw_outcome in _OUTCOMES:
        outcome = _OUTCOMES[raw_outcome]
    else:
        raise _reject("invalid_outcome", "outcome", "`outcome` must be one of success, failure, unknown")

    source_ip = _text(obj, "source_ip", required=False)
    if source_ip is not None:
        source_ip = parse_ip(source_ip)

    return ValidEvent(
        event_id=event_id,
        timestamp=timestamp,
        event_type=event_type,
        user_id=user_id,
        outcome=outcome,
        source=source,
        source_ip=source_ip,
        user_agent=_text(obj, "user_agent", required=False, scale=scale),
        resource_id=_text(obj, "resource_id", required=False, scale=scale),
        metadata=_metadata(obj.get("metadata"), policy),
    )
