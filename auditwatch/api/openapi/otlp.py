"""OpenAPI paths outside /api/v1: the OTLP/HTTP logs receiver and the health probe (merged into DOCUMENT)."""

from __future__ import annotations

from typing import Any

_OTLP_ERROR = {"description": "an OTLP error: google.rpc.Status (protobuf) or its JSON form", "content": {
    "application/x-protobuf": {},
    "application/json": {"schema": {"type": "object", "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"}, "error": {"type": "string"}}}}}}

_ANY_VALUE = {"type": "object", "description": "OTLP AnyValue: one of stringValue, intValue, boolValue, ..."}
_KEY_VALUES = {"type": "array", "items": {"type": "object", "properties": {
    "key": {"type": "string"}, "value": _ANY_VALUE}}}
_LOG_RECORD = {"type": "object", "properties": {
    "timeUnixNano": {"type": "string", "description": "decimal nanoseconds since the epoch"},
    "observedTimeUnixNano": {"type": "string"},
    "severityNumber": {"type": "integer"}, "severityText": {"type": "string"},
    "body": _ANY_VALUE, "attributes": _KEY_VALUES,
    "traceId": {"type": "string"}, "spanId": {"type": "string"}}}
_READY = {"type": "object", "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                                          "checks": {"type": "object"}}}
_EXPORT_REQUEST = {"type": "object", "description": "OTLP ExportLogsServiceRequest (JSON encoding)", "properties": {
    "resourceLogs": {"type": "array", "items": {"type": "object", "properties": {
        "resource": {"type": "object", "properties": {"attributes": _KEY_VALUES}},
        "scopeLogs": {"type": "array", "items": {"type": "object", "properties": {
            "scope": {"type": "object"},
            "logRecords": {"type": "array", "items": _LOG_RECORD}}}}}}}}}

PATHS: dict[str, Any] = {
    "/v1/logs": {
        "post": {
            "summary": "OTLP/HTTP logs receiver (protobuf or JSON, optionally gzip/deflate); partial success "
                       "per record",
            "x-permission": "ingest",
            "parameters": [{"name": "Content-Encoding", "in": "header", "required": False,
                            "schema": {"type": "string", "enum": ["gzip", "deflate", "identity"]}}],
            "requestBody": {"required": True, "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": _EXPORT_REQUEST}}},
            "responses": {
                "200": {"description": "ExportLogsServiceResponse; partialSuccess names rejected records",
                        "content": {"application/x-protobuf": {}, "application/json": {"schema": {
                            "type": "object", "properties": {"partialSuccess": {"type": "object", "properties": {
                                "rejectedLogRecords": {"type": "string"}, "errorMessage": {"type": "string"}}}}}}}},
                "400": _OTLP_ERROR, "401": _OTLP_ERROR, "403": _OTLP_ERROR, "413": _OTLP_ERROR,
                "415": _OTLP_ERROR, "429": _OTLP_ERROR, "503": _OTLP_ERROR},
        },
    },
    "/healthz": {
        "get": {"summary": "Liveness probe", "security": [],
                "responses": {"200": {"description": "the server is up", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}}}},
    },
    "/readyz": {
        "get": {"summary": "Readiness probe: the database answers, the schema is current, the bus (if any) is up",
                "security": [],
                "responses": {
                    "200": {"description": "ready", "content": {"application/json": {"schema": _READY}}},
                    "503": {"description": "not ready: the failed check and how to fix it",
                            "content": {"application/json": {"schema": _READY}}}}},
    },
    "/metrics": {
        "get": {"summary": "Prometheus metrics (text exposition format); keep it on a private network",
                "security": [],
                "responses": {"200": {"description": "the metrics of every live worker of this server",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    },
}
