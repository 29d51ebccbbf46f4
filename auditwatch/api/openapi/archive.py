"""OpenAPI paths of the cold tier (merged into auditwatch.api.openapi.document.DOCUMENT)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_AUTH_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR}
_HOLD = {"type": "object", "properties": {
    "hold_id": {"type": "integer"}, "case_id": {"type": "string", "nullable": True},
    "user_id": {"type": "string", "nullable": True},
    "start_time": {"type": "string", "format": "date-time", "nullable": True},
    "end_time": {"type": "string", "format": "date-time", "nullable": True},
    "reason": {"type": "string"}, "created_by": {"type": "string"}, "created_at": {"type": "string"},
    "released_at": {"type": "string", "nullable": True}, "released_by": {"type": "string", "nullable": True},
    "release_reason": {"type": "string", "nullable": True}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


PATHS: dict[str, Any] = {
    "/api/v1/archive": {
        "get": {"summary": "The cold tier: files, rows and bytes archived, chunks awaiting archive, policy",
                "x-permission": "view", "responses": {"200": _ok("archive status"), **_AUTH_ERRORS}},
    },
    "/api/v1/legal-holds": {
        "get": {"summary": "Legal holds (active; all with include_released=true)", "x-permission": "legal_hold",
                "parameters": [{"name": "include_released", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {"200": _ok("holds", {"type": "object", "properties": {
                    "holds": {"type": "array", "items": _HOLD}}}), **_AUTH_ERRORS}},
        "post": {"summary": "Place a legal hold (audited): matching events are neither archived away nor deleted",
                 "description": "Criteria are ANDed; give at least one of a time range, user_id or case_id "
                                "(events whose metadata.case_id equals it).",
                 "x-permission": "legal_hold",
                 "requestBody": _body({"type": "object", "required": ["reason"], "additionalProperties": False,
                                       "properties": {"case_id": {"type": "string"}, "user_id": {"type": "string"},
                                                      "start_time": {"type": "string", "format": "date-time"},
                                                      "end_time": {"type": "string", "format": "date-time"},
                                                      "reason": {"type": "string"}}}),
                 "responses": {"201": _ok("placed", _HOLD), **_AUTH_ERRORS}},
    },
    "/api/v1/legal-holds/{hold_id}/release": {
        "post": {"summary": "Release a legal hold (audited)", "x-permission": "legal_hold",
                 "parameters": [{"name": "hold_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                 "requestBody": _body({"type": "object", "required": ["reason"], "additionalProperties": False,
                                       "properties": {"reason": {"type": "string"}}}),
                 "responses": {"200": _ok("released", _HOLD), "404": _ERROR, "409": _ERROR, **_AUTH_ERRORS}},
    },
}
