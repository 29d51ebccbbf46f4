"""OpenAPI paths of data subjects and PHI (merged into auditwatch.api.openapi.document.DOCUMENT)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_AUTH_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR}
_REQUEST_ID = {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_TIME = {"type": "string", "format": "date-time"}
_REQUEST = {"type": "object", "properties": {
    "request_id": {"type": "string", "format": "uuid"}, "subject": {"type": "string"},
    "lawful_basis": {"type": "string"}, "requested_by": {"type": "string"},
    "state": {"type": "string", "enum": ["requested", "approved", "executing", "executed"]},
    "steps": {"type": "array", "items": {"type": "object", "properties": {
        "step": {"type": "string"}, "actor": {"type": "string"}, "at": _TIME,
        "note": {"type": "string", "nullable": True}}}}}}
_CERTIFICATE = {"type": "object", "description": "certificate and its Ed25519 signature (over the canonical JSON "
                "of `certificate`); check it with `auditwatch gdpr verify-certificate FILE --public-key PUB`",
                "properties": {"certificate": {"type": "object"}, "signature": {"type": "object", "properties": {
                    "algorithm": {"type": "string"}, "public_key": {"type": "string"},
                    "signature": {"type": "string"}}}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    return schema


PATHS: dict[str, Any] = {
    "/api/v1/gdpr/access": {
        "post": {"summary": "Data subject access export (GDPR Art. 15): every event about or by the subject, both "
                            "tiers, with counts and the integrity proof (audited)",
                 "description": "An event is the subject's when its user_id or resource_id is the subject's id, or "
                                "its metadata holds the id as a whole value. The CLI writes the same JSON with a "
                                "PDF cover letter (`auditwatch gdpr access`).",
                 "x-permission": "data_subjects",
                 "requestBody": _body(_closed({"subject": {"type": "string", "maxLength": 256},
                                               "start_time": _TIME, "end_time": _TIME}, ["subject"])),
                 "responses": {"200": _ok("the export", {"type": "object", "properties": {
                     "subject": {"type": "string"}, "counts": {"type": "object"},
                     "events": {"type": "array", "items": {"type": "object"}},
                     "integrity": {"type": "object", "nullable": True}}}), **_AUTH_ERRORS}},
    },
    "/api/v1/gdpr/erasures": {
        "get": {"summary": "Erasure requests, newest first, with their steps", "x-permission": "data_subjects",
                "parameters": [{"name": "subject", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _ok("requests", {"type": "object", "properties": {
                    "requests": {"type": "array", "items": _REQUEST}}}), **_AUTH_ERRORS}},
        "post": {"summary": "Request the erasure of a data subject's events (GDPR Art. 17; audited); another admin "
                            "must approve it", "x-permission": "data_subjects",
                 "requestBody": _body(_closed({"subject": {"type": "string", "maxLength": 256},
                                               "lawful_basis": {"type": "string", "maxLength": 2000},
                                               "note": {"type": "string", "maxLength": 2000}},
                                              ["subject", "lawful_basis"])),
                 "responses": {"201": _ok("requested", _REQUEST), **_AUTH_ERRORS}},
    },
    "/api/v1/gdpr/erasures/{request_id}": {
        "get": {"summary": "One erasure request and its steps", "x-permission": "data_subjects",
                "parameters": [_REQUEST_ID],
                "responses": {"200": _ok("the request", _REQUEST), "404": _ERROR, **_AUTH_ERRORS}},
    },
    "/api/v1/gdpr/erasures/{request_id}/approve": {
        "post": {"summary": "Approve an erasure request (four eyes: not by its requester; audited)",
                 "x-permission": "data_subjects", "parameters": [_REQUEST_ID],
                 "requestBody": _body(_closed({"note": {"type": "string", "maxLength": 2000}}, []), required=False),
                 "responses": {"200": _ok("approved", _REQUEST), "404": _ERROR,
                               "409": _ERROR, **_AUTH_ERRORS}},
    },
    "/api/v1/gdpr/erasures/{request_id}/execute": {
        "post": {"summary": "Execute an approved erasure across both tiers (legal holds respected) and issue its "
                            "signed certificate (audited; resumes an interrupted run)",
                 "x-permission": "data_subjects", "parameters": [_REQUEST_ID],
                 "responses": {"200": _ok("executed", {"type": "object", "properties": {
                     "request": _REQUEST, "certificate": _CERTIFICATE}}), "404": _ERROR, "409": _ERROR,
                     "503": _ERROR, **_AUTH_ERRORS}},
    },
    "/api/v1/gdpr/erasures/{request_id}/certificate": {
        "get": {"summary": "The signed erasure certificate of an executed request", "x-permission": "data_subjects",
                "parameters": [_REQUEST_ID],
                "responses": {"200": _ok("the certificate", _CERTIFICATE), "404": _ERROR, "409": _ERROR,
                              **_AUTH_ERRORS}},
    },
    "/api/v1/phi/reveal": {
        "post": {"summary": "Reveal the value behind a PHI token (R11; audited, found or not)",
                 "x-permission": "phi_reveal",
                 "requestBody": _body(_closed({"token": {"type": "string", "pattern": "^phi_[a-p]{32}$"},
                                               "reason": {"type": "string", "maxLength": 2000}},
                                              ["token", "reason"])),
                 "responses": {"200": _ok("the value", {"type": "object", "properties": {
                     "token": {"type": "string"}, "value": {}}}), "404": _ERROR, "409": _ERROR, **_AUTH_ERRORS}},
    },
}
