"""OpenAPI paths of the ingest administration routes (merged into auditwatch.api.openapi.document.DOCUMENT)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "409": _ERROR, "503": _ERROR}

PATHS: dict[str, Any] = {
    "/api/v1/deadletters": {
        "get": {"summary": "Bus messages that failed 3 times (R10), oldest first", "x-permission": "manage_ingest",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                          "maximum": 1000, "default": 100}},
                               {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0},
                                "description": "a sequence number, from `next`"}],
                "responses": {"200": {"description": "dead letters", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "dead_letters": {"type": "array", "items": {"type": "object", "properties": {
                            "seq": {"type": "integer"}, "time": {"type": "string", "format": "date-time"},
                            "error": {"type": "string"}, "deliveries": {"type": "integer"},
                            "event": {"type": "object", "nullable": True},
                            "raw": {"type": "string", "nullable": True}}}},
                        "next": {"type": "integer", "nullable": True}}}}}}, **_ERRORS}},
    },
    "/api/v1/deadletters/replay": {
        "post": {"summary": "Put dead letters back on the bus (all, or by sequence number); audited",
                 "x-permission": "manage_ingest",
                 "requestBody": {"required": False, "content": {"application/json": {"schema": {
                     "type": "object", "additionalProperties": False,
                     "properties": {"seqs": {"type": "array", "items": {"type": "integer"}}}}}}},
                 "responses": {"200": {"description": "how many were replayed"}, **_ERRORS}},
    },
}
