"""The OpenAPI document stays in step with the Flask routes and their permissions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from storage.auth import Permission, Role

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def document(shared_client) -> dict[str, Any]:
    response = shared_client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


# The Dash UI (its pages, assets and callbacks) is not the HTTP API; tests/dashboard covers it.
UI_PREFIXES = ("/dashboard", "/static/")
PUBLIC = {("/api/v1/openapi.json", "get"), ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get")}


def flask_operations(app) -> dict[tuple[str, str], Any]:
    """{(OpenAPI path, method): view} for every rule of the app but the dashboard's."""
    operations = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(UI_PREFIXES):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                operations[(path, method.lower())] = app.view_functions[rule.endpoint]
    return operations


def documented_operations(document) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, method): op for path, item in document["paths"].items()
            for method, op in item.items() if method in METHODS}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_the_document_looks_like_openapi_3(document):
    assert re.fullmatch(r"3\.\d+\.\d+", document["openapi"])
    assert document["info"]["title"] and document["info"]["version"]
    assert document["paths"]
    assert set(document["components"]["securitySchemes"]) == {"apiKey"}
    assert document["security"] == [{"apiKey": []}]
    for (path, method), operation in documented_operations(document).items():
        assert path.startswith(("/api/v1/", "/v1/logs", "/healthz", "/readyz", "/metrics"))
        assert operation["responses"], (path, method)
        assert all(re.fullmatch(r"[1-5]\d\d|default", code) for code in operation["responses"])
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)


def test_every_reference_resolves(document):
    for ref in refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert part in node, ref
            node = node[part]


def test_paths_and_methods_are_exactly_the_flask_routes(shared_app, document):
    assert set(documented_operations(document)) == set(flask_operations(shared_app))


def test_every_route_in_the_url_map_is_documented(shared_app, document):
    """Walks the whole url_map: a new route anywhere (not only under /api/v1) fails until it is documented."""
    documented = set(documented_operations(document))
    undocumented = sorted(set(flask_operations(shared_app)) - documented)
    assert not undocumented, f"routes missing from the OpenAPI document: {undocumented}"
    expected = {("/v1/logs", "post"), ("/healthz", "get"), ("/api/v1/alerts", "get"), ("/api/v1/anomalies", "get"),
                ("/api/v1/archive", "get"), ("/api/v1/legal-holds", "post"), ("/api/v1/logs", "post")}
    assert expected <= documented
    ui = [r.rule for r in shared_app.url_map.iter_rules() if r.rule.startswith(UI_PREFIXES)]
    assert all(r.startswith(("/dashboard", "/static/")) for r in ui)  # only the UI is exempt


def test_each_operation_names_the_permission_its_view_requires(shared_app, document):
    documented = documented_operations(document)
    for key, view in flask_operations(shared_app).items():
        required = getattr(view, "required_permission", None)
        operation = documented[key]
        if required is None:
            assert key in PUBLIC
            assert "x-permission" not in operation
            assert operation["security"] == []
        else:
            assert operation["x-permission"] == required, key
            assert Permission(operation["x-permission"]) is required


def test_errors_are_documented_with_the_error_shape(document):
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"code", "message", "field"}
    for (path, method), operation in documented_operations(document).items():
        if "x-permission" in operation:
            assert {"401", "403"} <= set(operation["responses"]), (path, method)


def test_documented_body_fields_are_the_accepted_ones(document, shared_client, role_keys):
    """Where a JSON body is closed (additionalProperties: false), the doc lists exactly what the route takes."""
    checked = 0
    for (path, method), operation in documented_operations(document).items():
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
            continue
        url = path.replace("{event_id}", "00000000-0000-0000-0000-000000000000").replace("{name}", "nobody")
        headers = role_keys[Role.ADMIN]
        extra = shared_client.open(url, method=method.upper(), json={"zz_undocumented": 1}, headers=headers)
        assert (extra.status_code, extra.get_json()["code"]) == (400, "unknown_field"), (path, method)
        documented = {name: 0 for name in schema["properties"]}  # wrong values, but known fields
        known = shared_client.open(url, method=method.upper(), json=documented, headers=headers)
        assert known.get_json().get("code") != "unknown_field", (path, method, known.get_json())
        checked += 1
    assert checked >= 5
