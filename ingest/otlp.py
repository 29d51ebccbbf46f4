"""OpenTelemetry logs in: ``POST /v1/logs`` (OTLP/HTTP, protobuf or JSON) → audit events.

A log record is an audit event when it says what happened; its attributes map as follows (record
attributes first, then the resource's):

| event field   | taken from                                                                     |
|---------------|--------------------------------------------------------------------------------|
| `event_type`  | `audit.event_type`, else `event.name`, else the record's `event_name`           |
| `user_id`     | `audit.user_id`, `enduser.id`, `user.id`, `user.name`                           |
| `outcome`     | `audit.outcome` (success, failure, unknown)                                     |
| `event_id`    | `audit.event_id`, else a UUIDv5 of the record and its resource (so an exporter's retry is stored once, R5) |
| `timestamp`   | `timeUnixNano`, else `observedTimeUnixNano`                                     |
| `source`      | `audit.source`, else the resource's `service.name`                              |
| `source_ip`   | `audit.source_ip`, `client.address`, `source.address`, `network.peer.address`   |
| `user_agent`  | `user_agent.original`                                                           |
| `resource_id` | `audit.resource_id`                                                             |
| `metadata`    | `audit.metadata` (a map), plus `body`, `severity`, `trace_id`, `span_id`, the other record attributes under `attributes` and the resource's under `resource` |

Records then go through the same pipeline as the REST API (R1-R9). Records that are refused are
reported as a partial success (``rejectedLogRecords`` and ``errorMessage``), as the OTLP spec defines;
when any record was refused by the rate limit (R6), or the bus or database is down, the whole request
is answered 429/503 with ``Retry-After`` so the exporter retries it, and the records already stored are
then duplicates (R5). Authenticate like the REST API: ``OTEL_EXPORTER_OTLP_HEADERS=x-api-key=aw_...``
(or ``Authorization=Bearer%20aw_...``).
"""

from __future__ import annotations

import base64
import binascii
import threading
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Response, request
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from ingest.errors import IngestError
from ingest.http import HttpError, current_key, request_body, require
from ingest.otlp_wire import JSON_OBJECTS_PER_RECORD, TooManyRecords, count_protobuf_records
from ingest.pipeline import IngestPipeline, RequestContext
from storage.auth import Permission

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
NAMESPACE = uuid.UUID("5e0c1a57-1b0e-5f8e-8a47-7f6b0e3c2d19")  # fixed: changing it changes derived ids
USER_KEYS = ("audit.user_id", "enduser.id", "user.id", "user.name")
IP_KEYS = ("audit.source_ip", "client.address", "source.address", "network.peer.address")
_CONSUMED = frozenset({"audit.event_type", "event.name", "audit.outcome", "audit.event_id", "audit.source",
                       "user_agent.original", "audit.resource_id", "audit.metadata", *USER_KEYS, *IP_KEYS})
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 413: 11, 415: 3, 429: 8, 503: 14}


# -- decoding: both encodings to one plain shape ----------------------------------------------------------

def _any_proto(value) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    inner = getattr(value, kind)
    if kind == "array_value":
        return [_any_proto(v) for v in inner.values]
    if kind == "kvlist_value":
        return {kv.key: _any_proto(kv.value) for kv in inner.values}
    if kind == "bytes_value":
        return base64.b64encode(inner).decode()
    return inner


def _any_json(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError("an AnyValue must be an object")
    for key in ("stringValue", "string_value", "boolValue", "bool_value", "doubleValue", "double_value",
                "bytesValue", "bytes_value"):
        if key in value:
            return value[key]
    for key in ("intValue", "int_value"):
        if key in value:
            return int(value[key])
    for key in ("arrayValue", "array_value"):
        if key in value:
            return [_any_json(v) for v in (value[key] or {}).get("values", [])]
    for key in ("kvlistValue", "kvlist_value"):
        if key in value:
            return _attrs_json((value[key] or {}).get("values", []))
    return None


def _attrs_json(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        raise ValueError("attributes must be a list of {key, value}")
    out = {}
    for kv in items:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise ValueError("each attribute is {key, value}")
        out[kv["key"]] = _any_json(kv.get("value", {}))
    return out


def _get(obj: dict[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    return obj.get(camel, obj.get(snake, default))


def _hex_id(value: Any) -> str | None:
    """Trace and span ids: hex in OTLP/JSON; empty means unset."""
    if not value or not isinstance(value, str):
        return None
    try:
        binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        return None
    return value.lower()


def records_from_protobuf(raw: bytes, *, max_records: int = 10_000) -> list[dict[str, Any]]:
    count_protobuf_records(raw, max_records)
    message = logs_service_pb2.ExportLogsServiceRequest.FromString(raw)
    out = []
    for rl in message.resource_logs:
        resource = {kv.key: _any_proto(kv.value) for kv in rl.resource.attributes}
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append({
                    "resource": resource, "scope": sl.scope.name or None,
                    "time": r.time_unix_nano, "observed": r.observed_time_unix_nano,
                    "severity_number": r.severity_number or None, "severity_text": r.severity_text or None,
                    "body": _any_proto(r.body) if r.HasField("body") else None,
                    "attributes": {kv.key: _any_proto(kv.value) for kv in r.attributes},
                    "trace_id": r.trace_id.hex() or None, "span_id": r.span_id.hex() or None,
                    "event_name": r.event_name or None,
                })
    return out


def records_from_json(raw: bytes, *, max_records: int = 10_000) -> list[dict[str, Any]]:
    if raw.count(b"{") > max_records * JSON_OBJECTS_PER_RECORD:
        raise TooManyRecords(f"more JSON objects than {max_records} log records can hold")
    body = orjson.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the body must be an ExportLogsServiceRequest object")
    count = sum(len(_get(sl, "logRecords", "log_records", []) or [])
                for rl in _get(body, "resourceLogs", "resource_logs", []) or [] if isinstance(rl, dict)
                for sl in _get(rl, "scopeLogs", "scope_logs", []) or [] if isinstance(sl, dict))
    if count > max_records:
        raise TooManyRecords(f"more than {max_records} log records")
    out = []
    for rl in _get(body, "resourceLogs", "resource_logs", []) or []:
        resource = _attrs_json((rl.get("resource") or {}).get("attributes", []))
        for sl in _get(rl, "scopeLogs", "scope_logs", []) or []:
            scope = (sl.get("scope") or {}).get("name") or None
            for r in _get(sl, "logRecords", "log_records", []) or []:
                if not isinstance(r, dict):
                    raise ValueError("each log record must be an object")
                severity = _get(r, "severityNumber", "severity_number")
                out.append({
                    "resource": resource, "scope": scope,
                    "time": _nanos(_get(r, "timeUnixNano", "time_unix_nano", 0)),
                    "observed": _nanos(_get(r, "observedTimeUnixNano", "observed_time_unix_nano", 0)),
                    "severity_number": int(severity) if isinstance(severity, int | str) and str(severity).isdigit()
                    else None,
                    "severity_text": _get(r, "severityText", "severity_text"),
                    "body": _any_json(r["body"]) if isinstance(r.get("body"), dict) else None,
                    "attributes": _attrs_json(r.get("attributes", [])),
                    "trace_id": _hex_id(_get(r, "traceId", "trace_id")),
                    "span_id": _hex_id(_get(r, "spanId", "span_id")),
                    "event_name": _get(r, "eventName", "event_name"),
                })
    return out


# -- mapping -------------------------------------------------------------------------------------------

def _first(keys: tuple[str, ...], *maps: dict[str, Any]) -> Any:
    for mapping in maps:
        for key in keys:
            value = mapping.get(key)
            if value not in (None, ""):
                return value
    return None


def _nanos(value: Any) -> int:
    """A JSON uint64 (a string or a number) as an int; -1 when it is not one (the record is then refused)."""
    if not value:
        return 0
    text = str(value)
    if len(text) > 20 or not text.isdigit():
        return -1
    return int(text)


_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1e9


def _time(nanos: int) -> str | None | IngestError:
    """ISO time of a Unix-nanosecond stamp; None when unset; the reason when no date can hold it."""
    if not nanos:
        return None
    if nanos < 0 or nanos >= _LATEST:
        return IngestError("invalid_timestamp", "the log record's time is not a Unix time in nanoseconds that "
                           "a date can hold", "timestamp")
    return datetime.fromtimestamp(nanos / 1e9, UTC).isoformat()


def to_event(record: dict[str, Any]) -> dict[str, Any] | IngestError:
    """The audit event for one log record, or the reason it is not one (reported as rejected)."""
    attrs, resource = record["attributes"], record["resource"]
    event_type = _first(("audit.event_type", "event.name"), attrs) or record.get("event_name")
    if not event_type:
        return IngestError("not_an_audit_record", "the log record has no `audit.event_type` (or `event.name`) "
                           "attribute, so it is not an audit event", "audit.event_type")
    timestamp = _time(record["time"]) or _time(record["observed"])
    if isinstance(timestamp, IngestError):
        return timestamp
    if timestamp is None:
        return IngestError("missing_field", "the log record has neither timeUnixNano nor observedTimeUnixNano",
                           "timestamp")
    event_id = _first(("audit.event_id",), attrs)
    if event_id is None:
        canonical = orjson.dumps({k: record[k] for k in ("resource", "scope", "time", "observed", "body",
                                                          "attributes", "trace_id", "span_id", "event_name")},
                                 option=orjson.OPT_SORT_KEYS, default=str)
        event_id = str(uuid.uuid5(NAMESPACE, canonical.decode()))
    metadata: dict[str, Any] = {}
    extra = attrs.get("audit.metadata")
    if isinstance(extra, dict):
        metadata.update(extra)
    for key, value in (("body", record["body"]), ("severity", record["severity_text"]),
                       ("severity_number", record["severity_number"]), ("trace_id", record["trace_id"]),
                       ("span_id", record["span_id"]), ("scope", record["scope"])):
        if value not in (None, "", {}, []):
            metadata[key] = value
    others = {k: v for k, v in attrs.items() if k not in _CONSUMED}
    if others:
        metadata["attributes"] = others
    if resource:
        metadata["resource"] = resource
    event = {
        "event_id": event_id, "timestamp": timestamp, "event_type": event_type,
        "user_id": _first(USER_KEYS, attrs, resource), "outcome": _first(("audit.outcome",), attrs),
        "source": _first(("audit.source",), attrs) or resource.get("service.name"),
        "source_ip": _first(IP_KEYS, attrs), "user_agent": _first(("user_agent.original",), attrs),
        "resource_id": _first(("audit.resource_id",), attrs), "metadata": metadata,
    }
    return {k: v for k, v in event.items() if v is not None}


# -- HTTP ------------------------------------------------------------------------------------------------

def _decompressed(raw: bytes, limit: int) -> bytes:
    encoding = (request.headers.get("Content-Encoding") or "identity").lower()
    if encoding == "identity":
        return raw
    if encoding not in {"gzip", "deflate"}:
        raise HttpError(415, "unsupported_encoding", "Content-Encoding must be gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise HttpError(400, "malformed_body", f"the body is not valid {encoding} data") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise HttpError(413, "body_too_large", f"the decompressed body is over {limit} bytes; export smaller batches")
    return out


def _respond(body: bytes | dict[str, Any], status: int, protobuf: bool, headers: dict[str, str] | None = None):
    if protobuf:
        return Response(body, status=status, mimetype=PROTOBUF, headers=headers)
    return Response(orjson.dumps(body), status=status, mimetype=JSON, headers=headers)


def _error(exc: IngestError, protobuf: bool) -> Response:
    status = exc.status
    headers = dict(getattr(exc, "headers", {}) or {})
    if getattr(exc, "retry_after", None) is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if protobuf:
        message = status_pb2.Status(code=_GRPC_CODES.get(status, 2), message=exc.message)
        return _respond(message.SerializeToString(), status, True, headers)
    return _respond({"code": _GRPC_CODES.get(status, 2), "message": exc.message, "error": exc.code}, status, False,
                    headers)


def create_blueprint(pipeline: IngestPipeline, *, max_records: int = 10_000, max_decoding: int = 2) -> Blueprint:
    bp = Blueprint("otlp", __name__)
    decoding = threading.BoundedSemaphore(max_decoding)

    def is_protobuf() -> bool:
        return (request.mimetype or "").lower() == PROTOBUF

    @bp.errorhandler(IngestError)
    def otlp_error(exc: IngestError):
        return _error(exc, is_protobuf())

    @bp.post("/v1/logs")
    @require(Permission.INGEST)
    def export_logs():
        media = (request.mimetype or "").lower()
        if media not in {PROTOBUF, JSON}:
            raise HttpError(415, "unsupported_media_type", f"send OTLP as `{PROTOBUF}` or `{JSON}`")
        body = request_body()
        # Inflating and decoding amplify memory (a 40 KB gzip bomb is 32 MB inflated, then parsed): at most
        # ``max_decoding`` large or compressed bodies per worker at once (bench/hostile_memory.py measures it).
        large = len(body) > 64 * 1024 or (request.headers.get("Content-Encoding") or "identity").lower() != "identity"
        if large and not decoding.acquire(timeout=10):
            raise HttpError(503, "busy", "too many large OTLP requests are being decoded; retry shortly",
                            headers={"Retry-After": "2"})
        try:
            raw = _decompressed(body, request.max_content_length or 32 * 1024 * 1024)
            del body
            try:
                records = (records_from_protobuf(raw, max_records=max_records) if media == PROTOBUF
                           else records_from_json(raw, max_records=max_records))
            except TooManyRecords:
                raise HttpError(413, "too_many_records", f"at most {max_records} log records per request; lower "
                                "the exporter's batch size (OTEL_BLRP_MAX_EXPORT_BATCH_SIZE)") from None
            except (DecodeError, ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
                raise HttpError(400, "malformed_otlp", f"the body is not an OTLP ExportLogsServiceRequest: "
                                f"{str(exc)[:200]}") from None
            del raw
        finally:
            if large:
                decoding.release()
        key = current_key()
        items = [to_event(r) for r in records]
        result = pipeline.ingest(items, RequestContext(
            principal=key.principal, backfill=key.can(Permission.BACKFILL), remote_addr=request.remote_addr,
            user_agent=request.user_agent.string or None)) if items else None
        rejected = [r for r in result.results if r.error is not None] if result else []
        if result is not None and result.retry_after is not None:
            raise HttpError(429, "rate_limited", "some records are over the per-user rate limit (R6); retry the "
                            "request later (stored records will be duplicates)",
                            headers={"Retry-After": str(result.retry_after)})
        response = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            response.partial_success.rejected_log_records = len(rejected)
            shown = "; ".join(f"record {r.index}: {r.error.code}: {r.error.message}" for r in rejected[:5])
            more = f"; and {len(rejected) - 5} more" if len(rejected) > 5 else ""
            response.partial_success.error_message = shown + more
        if is_protobuf():
            return _respond(response.SerializeToString(), 200, True)
        body: dict[str, Any] = {}
        if rejected:
            body["partialSuccess"] = {"rejectedLogRecords": str(len(rejected)),
                                      "errorMessage": response.partial_success.error_message}
        return _respond(body, 200, False)

    return bp
