"""OpenAPI paths of the anomalies API (merged into ``auditwatch.api.openapi.document.DOCUMENT``)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_AUTH_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR}


def _q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param = {"name": name, "in": "query", "schema": schema}
    if description:
        param["description"] = description
    return param


ANOMALY = {
    "type": "object",
    "properties": {
        "anomaly_id": {"type": "string", "format": "uuid"},
        "detector": {"type": "string"}, "detector_version": {"type": "string"},
        "entity_type": {"type": "string", "enum": ["user", "source_ip", "user_ip", "series"]},
        "entity_value": {"type": "string"},
        "window_start": {"type": "string", "format": "date-time",
                         "description": "the incident's first window's start (first seen)"},
        "window_end": {"type": "string", "format": "date-time",
                       "description": "the incident's last window's end (last seen); it grows while windows merge in"},
        "peak_at": {"type": "string", "format": "date-time",
                    "description": "start of the peak window, whose score, severity and explanation these are"},
        "windows": {"type": "integer", "minimum": 1, "description": "anomalous windows merged into the incident"},
        "score": {"type": "number", "minimum": 0, "maximum": 1,
                  "description": "the peak window's, calibrated: -log10(tail probability)/10, the same rarity "
                                 "across detectors"},
        "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
        "explanation": {"type": "object", "description": "summary, observed, expected, features, peers"},
        "sample_event_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        "detected_at": {"type": "string", "format": "date-time"},
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/anomalies": {
        "get": {
            "summary": "Anomalies found by the detectors, newest window first, with keyset paging",
            "x-permission": "view",
            "parameters": [
                _q("start_time", {"type": "string", "format": "date-time"}, "window_start at or after"),
                _q("end_time", {"type": "string", "format": "date-time"}, "window_start before"),
                _q("detector", {"type": "string"}, "repeatable"),
                _q("entity_type", {"type": "string", "enum": ["user", "source_ip", "user_ip", "series"]}),
                _q("entity_value", {"type": "string"}),
                _q("min_score", {"type": "number", "minimum": 0, "maximum": 1}),
                _q("severity", {"type": "string", "enum": ["low", "medium", "high", "critical"]}, "repeatable"),
                _q("detected_after", {"type": "string", "format": "date-time"}),
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                _q("cursor", {"type": "string"}),
            ],
            "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"anomalies": {"type": "array", "items": ANOMALY},
                                                 "next": {"type": "string", "nullable": True}}}}}},
                          **_AUTH_ERRORS},
        },
    },
    "/api/v1/anomalies/feedback": {
        "get": {"summary": "Analyst verdicts on anomalies, newest first", "x-permission": "view",
                "parameters": [_q("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
                "responses": {"200": {"description": "feedback"}, **_AUTH_ERRORS}},
        "post": {
            "summary": "Mark an anomaly (or a detector/entity scope) a false or true positive; audited, and "
                       "false positives are suppressed by later scoring until the scope expires",
            "x-permission": "triage_anomalies",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {
                    "anomaly_id": {"type": "string", "format": "uuid"},
                    "scope": {"type": "string", "enum": ["entity_detector", "entity", "detector"],
                              "default": "entity_detector"},
                    "detector": {"type": "string"},
                    "entity_type": {"type": "string", "enum": ["user", "source_ip", "user_ip", "series"]},
                    "entity_value": {"type": "string"},
                    "verdict": {"type": "string", "enum": ["false_positive", "true_positive"],
                                "default": "false_positive"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 90, "nullable": True, "default": 30,
                             "description": "how long a false positive suppresses detection (null only for a "
                                            "true positive)"},
                    "reason": {"type": "string", "maxLength": 2000}}}}}},
            "responses": {"201": {"description": "recorded"}, "404": _ERROR, "415": _ERROR, **_AUTH_ERRORS},
        },
    },
}
