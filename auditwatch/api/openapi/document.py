"""The OpenAPI 3 document for every HTTP route but the dashboard's (a test walks the url_map to keep it so)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from auditwatch.api.openapi import alerts, anomalies, archive, gdpr, otlp
from auditwatch.api.openapi import ingest as ingest_admin
from ingest.http import json_response

_ERROR = {"$ref": "#/components/responses/Error"}
_AUTH_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR}

_EVENT_IN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event_id", "timestamp", "event_type", "user_id"],
    "properties": {
        "event_id": {"type": "string", "format": "uuid"},
        "timestamp": {"type": "string", "format": "date-time", "description": "with a zone; ±5 min of server time"},
        "event_type": {"type": "string", "pattern": "^[a-z][a-z0-9_.]{0,63}$"},
        "user_id": {"type": "string", "maxLength": 256},
        "outcome": {"type": "string", "enum": ["success", "failure", "unknown"]},
        "source": {"type": "string", "maxLength": 128},
        "source_ip": {"type": "string", "description": "IPv4 or IPv6"},
        "user_agent": {"type": "string", "maxLength": 1024},
        "resource_id": {"type": "string", "maxLength": 512},
        "metadata": {"type": "object", "description": "under 10 KB of JSON; sensitive keys are redacted"},
    },
}
_EVENT_OUT = {
    "allOf": [
        {"$ref": "#/components/schemas/EventIn"},
        {"type": "object", "properties": {
            "source_country": {"type": "string", "nullable": True},
            "source_asn": {"type": "string", "nullable": True},
            "received_at": {"type": "string", "format": "date-time"},
            "tier": {"type": "string", "enum": ["hot", "cold"],
                     "description": "where the event was read from (cold: the Parquet archive)"},
        }},
    ]
}


def _query_params(*, paged: bool) -> list[dict[str, Any]]:
    params = [
        {"name": "start_time", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "end_time", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "user_id", "in": "query", "schema": {"type": "string"}},
        {"name": "event_type", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
         "explode": True},
        {"name": "outcome", "in": "query", "schema": {"type": "string", "enum": ["success", "failure", "unknown"]}},
        {"name": "source_ip", "in": "query", "schema": {"type": "string"}, "description": "address or CIDR"},
        {"name": "metadata", "in": "query", "schema": {"type": "string"}, "description": "JSON object; containment"},
    ]
    if paged:
        params += [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                         "default": 100}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            {"name": "include_total", "in": "query", "schema": {"type": "boolean", "default": False}},
        ]
    else:
        params.append({"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv", "ndjson", "ocsf"]}})
    return params


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Auditwatch API", "version": "1.0.0",
             "description": "Audit events in, queries and exports out. Authenticate with `Authorization: Bearer "
                            "<key>`; roles: viewer (view), auditor (view, export), admin (all but backfill), "
                            "system (ingest, backfill)."},
    "security": [{"apiKey": []}],
    "paths": {
        "/api/v1/logs": {
            "post": {"summary": "Store one event", "x-permission": "ingest",
                     "requestBody": _json_body({"$ref": "#/components/schemas/EventIn"}),
                     "responses": {"201": _ok("stored"), "200": _ok("a duplicate of a stored event (R5)"),
                                   "413": _ERROR, "415": _ERROR, "422": _ERROR, "429": _ERROR, **_AUTH_ERRORS}},
            "get": {"summary": "Search events, newest first, with keyset paging", "x-permission": "view",
                    "parameters": _query_params(paged=True),
                    "responses": {"200": _ok("a page", {"type": "object", "properties": {
                        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                        "next": {"type": "string", "nullable": True},
                        "total": {"type": "integer", "description": "matches, counted up to max_count"},
                        "total_exact": {"type": "boolean",
                                        "description": "false when counting stopped at max_count"}}}),
                                  **_AUTH_ERRORS}},
        },
        "/api/v1/logs/batch": {
            "post": {"summary": "Store up to 10,000 events (JSON array or NDJSON)", "x-permission": "ingest",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}}},
                         "application/x-ndjson": {"schema": {"type": "string"}}}},
                     "responses": {"200": _ok("per-event outcome", {"$ref": "#/components/schemas/BatchResult"}),
                                   "413": _ERROR, "415": _ERROR, "429": _ERROR, **_AUTH_ERRORS}},
        },
        "/api/v1/logs/export": {
            "get": {"summary": "Stream matching events as CSV, NDJSON or OCSF 1.1 NDJSON", "x-permission": "export",
                    "parameters": _query_params(paged=False),
                    "responses": {"200": {"description": "a streamed file",
                                          "content": {"text/csv": {}, "application/x-ndjson": {}}}, **_AUTH_ERRORS}},
        },
        "/api/v1/logs/{event_id}": {
            "get": {"summary": "One event", "x-permission": "view", "parameters": [EVENT_ID],
                    "responses": {"200": _ok("the event", {"$ref": "#/components/schemas/Event"}), "404": _ERROR,
                                  **_AUTH_ERRORS}},
            "delete": {"summary": "Lawful erasure of one event (itself audited)", "x-permission": "delete",
                       "parameters": [EVENT_ID],
                       "requestBody": _json_body({"type": "object", "required": ["reason"],
                                                  "additionalProperties": False,
                                                  "properties": {"reason": {"type": "string"}}}),
                       "responses": {"200": _ok("erased"), "404": _ERROR, **_AUTH_ERRORS}},
        },
        "/api/v1/keys": {
            "get": {"summary": "List API keys", "x-permission": "manage_keys",
                    "responses": {"200": _ok("keys"), **_AUTH_ERRORS}},
            "post": {"summary": "Create an API key (the secret is shown once)", "x-permission": "manage_keys",
                     "requestBody": _json_body({"type": "object", "required": ["name", "role"],
                                                "additionalProperties": False, "properties": {
                         "name": {"type": "string"}, "role": {"type": "string",
                                                              "enum": ["viewer", "auditor", "admin", "system"]}}}),
                     "responses": {"201": _ok("created"), "409": _ERROR, **_AUTH_ERRORS}},
        },
        "/api/v1/keys/{name}": {
            "delete": {"summary": "Revoke a key", "x-permission": "manage_keys",
                       "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                       "responses": {"200": _ok("revoked"), "404": _ERROR, **_AUTH_ERRORS}},
        },
        "/api/v1/users": {
            "get": {"summary": "List registered users", "x-permission": "view",
                    "parameters": [{"name": "after", "in": "query", "schema": {"type": "string"}},
                                   {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                    "responses": {"200": _ok("users"), **_AUTH_ERRORS}},
            "post": {"summary": "Register a user (R4)", "x-permission": "manage_catalog",
                     "requestBody": _json_body({"type": "object", "required": ["user_id"],
                                                "additionalProperties": False, "properties": {
                         "user_id": {"type": "string", "maxLength": 256},
                         "kind": {"type": "string", "enum": ["human", "service"], "default": "human"},
                         "display_name": {"type": "string"}, "email": {"type": "string"},
                         "department": {"type": "string"}}}),
                     "responses": {"201": _ok("registered"), "200": _ok("already registered"), **_AUTH_ERRORS}},
        },
        "/api/v1/event-types": {
            "get": {"summary": "The event type catalogue (R3)", "x-permission": "view",
                    "responses": {"200": _ok("event types"), **_AUTH_ERRORS}},
            "post": {"summary": "Add an event type", "x-permission": "manage_catalog",
                     "requestBody": _json_body({"type": "object", "required": ["event_type"],
                                                "additionalProperties": False, "properties": {
                         "event_type": {"type": "string", "pattern": "^[a-z][a-z0-9_.]{0,63}$"},
                         "description": {"type": "string"}, "ocsf_class": {"type": "string"}}}),
                     "responses": {"201": _ok("added"), "200": _ok("already there"), **_AUTH_ERRORS}},
        },
        "/api/v1/retention": {
            "get": {"summary": "Retention settings", "x-permission": "view",
                    "responses": {"200": _ok("retention"), **_AUTH_ERRORS}},
            "put": {"summary": "Change retention settings (audited)", "x-permission": "configure_retention",
                    "requestBody": _json_body({"type": "object", "additionalProperties": False, "properties": {
                        "hot_days": {"type": "integer"}, "cold_years": {"type": "integer"},
                        "cold_years_by_type": {"type": "object", "additionalProperties": {"type": "integer"},
                                               "description": "cold retention in years per event type"}}}),
                    "responses": {"200": _ok("stored"), **_AUTH_ERRORS}},
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": {"200": _ok("OpenAPI 3")}},
        },
    },
    "components": {
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "EventIn": _EVENT_IN,
            "Event": _EVENT_OUT,
            "Error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "field": {"type": "string", "nullable": True}}},
            "BatchResult": {"type": "object", "properties": {
                "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "rejected": {"type": "integer"},
                "errors": {"type": "array", "items": {"type": "object", "properties": {
                    "index": {"type": "integer"}, "event_id": {"type": "string", "nullable": True},
                    "code": {"type": "string"}, "field": {"type": "string", "nullable": True},
                    "message": {"type": "string"}}}}}},
        },
        "responses": {"Error": {"description": "an error",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    },
}


DOCUMENT["paths"].update(archive.PATHS)
DOCUMENT["paths"].update(anomalies.PATHS)
DOCUMENT["paths"].update(ingest_admin.PATHS)
DOCUMENT["paths"].update(alerts.PATHS)
DOCUMENT["paths"].update(otlp.PATHS)
DOCUMENT["paths"].update(gdpr.PATHS)


def create_blueprint() -> Blueprint:
    bp = Blueprint("openapi", __name__)

    @bp.get("/api/v1/openapi.json")
    def document():
        return json_response(DOCUMENT)

    return bp
