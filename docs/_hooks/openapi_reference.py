"""MkDocs hook: the HTTP API reference page (reference/api.md), rendered from the OpenAPI document that the
server serves at /api/v1/openapi.json, so the reference cannot drift from the routes (a test keeps the document
equal to them). Runs offline: the document is a Python structure, imported, not fetched."""

from __future__ import annotations

import json
from typing import Any

from mkdocs.structure.files import File, Files

PAGE = "reference/api.md"
METHODS = ("get", "post", "put", "patch", "delete")


def _schema_text(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    kind = schema.get("type", "")
    if kind == "array":
        return f"array of {_schema_text(schema.get('items')) or 'values'}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    return f"`{kind}`" if kind else ""


def _cell(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _operation(path: str, method: str, op: dict[str, Any], shared: list[dict[str, Any]]) -> list[str]:
    out = [f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        out += [op["summary"], ""]
    if op.get("description"):
        out += [op["description"], ""]
    security = op.get("security")
    if security == []:
        out += ["No API key needed.", ""]
    elif op.get("x-permission"):
        out += [f"Permission: `{op['x-permission']}`.", ""]
    params = shared + op.get("parameters", [])
    if params:
        out += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            if "$ref" in p:
                out.append(f"| {p['$ref'].rsplit('/', 1)[-1]} | | | | |")
                continue
            out.append(f"| `{p['name']}` | {p.get('in', '')} | {_schema_text(p.get('schema'))} | "
                       f"{'yes' if p.get('required') else ''} | {_cell(p.get('description'))} |")
        out.append("")
    body = op.get("requestBody")
    if body:
        types = ", ".join(f"`{t}`" for t in body.get("content", {}))
        out += [f"Request body: {types}{' (required)' if body.get('required') else ''}.", ""]
    responses = op.get("responses", {})
    if responses:
        out += ["| status | meaning |", "|---|---|"]
        for status, response in responses.items():
            text = response.get("description") if isinstance(response, dict) else ""
            if isinstance(response, dict) and "$ref" in response:
                text = response["$ref"].rsplit("/", 1)[-1]
            out.append(f"| {status} | {_cell(text)} |")
        out.append("")
    return out


def _resource(path: str) -> str:
    """The section a path belongs to: its resource under /api/v1/, OTLP, or the unauthenticated ops routes."""
    if path.startswith("/api/v1/"):
        return path.removeprefix("/api/v1/").split("/", 1)[0]
    if path.startswith("/v1/"):
        return "OpenTelemetry (OTLP)"
    return "health and metrics"


def render(document: dict[str, Any]) -> str:
    """Markdown for every path and method of the document, grouped by tag (else by resource), in document order."""
    info = document.get("info", {})
    lines = ["# HTTP API reference", "",
             f"Generated from the OpenAPI {document.get('openapi', '3')} document of {info.get('title', 'Auditwatch')} "
             f"{info.get('version', '')}, which a running server serves at `/api/v1/openapi.json`. Authenticate with "
             "`Authorization: Bearer <key>`; errors are JSON `{\"code\", \"message\", \"field\"}`.",
             "", _cell(info.get("description")), ""]
    sections: dict[str, list[str]] = {}
    for path, item in document.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method in item:
                op = item[method]
                tag = (op.get("tags") or [_resource(path)])[0]
                sections.setdefault(tag, []).extend(_operation(path, method, op, shared))
    for tag, body in sections.items():
        lines += [f"## {tag}", "", *body]
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
        for name, schema in schemas.items():
            lines += [f"### {name}", "", "```json", json.dumps(schema, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: Any) -> Files:
    from auditwatch.api.openapi.document import DOCUMENT

    files.append(File.generated(config, PAGE, content=render(DOCUMENT)))
    return files
