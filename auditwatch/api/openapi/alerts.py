"""OpenAPI paths of the alerting API (merged into auditwatch.api.openapi.document.DOCUMENT)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_AUTH_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


def _body(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _path(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", **schema}}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
_SINCE = _query("since", {"type": "string", "format": "date-time"}, "changed at or after")
FINGERPRINT = _path("fingerprint", "rule id + group-by values, hashed", pattern="^[0-9a-f]{20}$")
RULE_ID = _path("rule_id", "the rule's id (its file name)", pattern="^[a-z][a-z0-9_]{0,63}$")
SILENCE_ID = _path("silence_id", "a silence's id", pattern="^[0-9]+$")

ALERT = {"type": "object", "properties": {
    "fingerprint": {"type": "string"}, "rule_id": {"type": "string"}, "title": {"type": "string"},
    "severity": {"type": "string", "enum": ["info", "warning", "critical"]},
    "state": {"type": "string", "enum": ["pending", "firing", "resolved"]},
    "labels": {"type": "object"}, "group_values": {"type": "object"},
    "started_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"},
    "resolved_at": {"type": "string", "format": "date-time", "nullable": True}, "count": {"type": "integer"},
    "acknowledged_by": {"type": "string", "nullable": True},
    "acknowledged_until": {"type": "string", "format": "date-time", "nullable": True},
    "silenced": {"type": "boolean"}, "runbook_url": {"type": "string", "nullable": True}}}

PATHS: dict[str, Any] = {
    "/api/v1/alerts": {
        "get": {"summary": "Alerts: firing first, then pending, then resolved", "x-permission": "view",
                "parameters": [_query("state", {"type": "array", "items": {"type": "string",
                                                                           "enum": ["pending", "firing", "resolved"]}}),
                               _SINCE, _LIMIT],
                "responses": {"200": _ok("alerts", {"type": "object", "properties": {
                    "alerts": {"type": "array", "items": ALERT}}}), **_AUTH_ERRORS}},
    },
    "/api/v1/alerts/{fingerprint}": {
        "get": {"summary": "One alert with its state history", "x-permission": "view", "parameters": [FINGERPRINT],
                "responses": {"200": _ok("the alert", ALERT), "404": _ERROR, **_AUTH_ERRORS}},
    },
    "/api/v1/alerts/{fingerprint}/ack": {
        "post": {"summary": "Acknowledge until resolved, or until a time (no repeats; PagerDuty is told)",
                 "x-permission": "respond_to_alerts", "parameters": [FINGERPRINT],
                 "requestBody": _body({"comment": {"type": "string", "maxLength": 2000},
                                       "until": {"type": "string", "format": "date-time"},
                                       "for_minutes": {"type": "integer", "minimum": 1, "maximum": 43200}}),
                 "responses": {"200": _ok("the acknowledged alert", ALERT), "404": _ERROR, "415": _ERROR,
                               **_AUTH_ERRORS}},
    },
    "/api/v1/alert-history": {
        "get": {"summary": "State changes of alerts, newest first", "x-permission": "view",
                "parameters": [_query("fingerprint", {"type": "string"}), _SINCE, _LIMIT],
                "responses": {"200": _ok("history"), **_AUTH_ERRORS}},
    },
    "/api/v1/alert-notifications": {
        "get": {"summary": "Notifications (the outbox) with every delivery attempt", "x-permission": "view",
                "parameters": [_query("fingerprint", {"type": "string"}), _query("receiver", {"type": "string"}),
                               _query("status", {"type": "string",
                                                 "enum": ["pending", "sending", "delivered", "failed"]}), _LIMIT],
                "responses": {"200": _ok("notifications"), **_AUTH_ERRORS}},
    },
    "/api/v1/alert-rules": {
        "get": {"summary": "Loaded rules (packaged pack + the user directory)", "x-permission": "manage_alert_rules",
                "responses": {"200": _ok("rules"), "409": _ERROR, **_AUTH_ERRORS}},
    },
    "/api/v1/alert-rules/{rule_id}": {
        "get": {"summary": "One rule with its YAML", "x-permission": "manage_alert_rules", "parameters": [RULE_ID],
                "responses": {"200": _ok("the rule"), "404": _ERROR, **_AUTH_ERRORS}},
        "put": {"summary": "Create or replace a rule in the user directory (validated; audited)",
                "x-permission": "manage_alert_rules", "parameters": [RULE_ID],
                "requestBody": _body({"yaml": {"type": "string", "description": "the rule file's text"}}, ["yaml"]),
                "responses": {"200": _ok("replaced"), "201": _ok("created"), "415": _ERROR, "422": _ERROR,
                              **_AUTH_ERRORS}},
        "delete": {"summary": "Delete a user rule (packaged rules are disabled with `enabled: false`)",
                   "x-permission": "manage_alert_rules", "parameters": [RULE_ID],
                   "responses": {"200": _ok("deleted"), "404": _ERROR, "409": _ERROR, **_AUTH_ERRORS}},
    },
    "/api/v1/alert-silences": {
        "get": {"summary": "Silences, newest first", "x-permission": "view",
                "parameters": [_query("active", {"type": "boolean"}), _LIMIT],
                "responses": {"200": _ok("silences"), **_AUTH_ERRORS}},
        "post": {"summary": "Silence alerts whose labels equal all matchers, for a time, saying why",
                 "x-permission": "respond_to_alerts",
                 "requestBody": _body({"matchers": {"type": "object", "additionalProperties": {"type": "string"}},
                                       "starts_at": {"type": "string", "format": "date-time"},
                                       "ends_at": {"type": "string", "format": "date-time"},
                                       "comment": {"type": "string", "maxLength": 2000}},
                                      ["matchers", "ends_at", "comment"]),
                 "responses": {"201": _ok("created"), "415": _ERROR, **_AUTH_ERRORS}},
    },
    "/api/v1/alert-silences/{silence_id}": {
        "delete": {"summary": "End a silence now (kept for the record)", "x-permission": "respond_to_alerts",
                   "parameters": [SILENCE_ID], "responses": {"200": _ok("expired"), "404": _ERROR, **_AUTH_ERRORS}},
    },
}
