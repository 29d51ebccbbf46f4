"""Every (role, route) pair of /api/v1 against the role matrix in storage.auth.

The routes come from the app's url_map, so a route added without a permission, or with one
the matrix does not honour, fails here without anyone writing a new test.
"""

from __future__ import annotations

import re
import uuid

import pytest
from flask import Flask

from storage.auth import ROLE_PERMISSIONS, Permission, Role
from storage.timescale import catalog
from tests.auditwatch.conftest import error_of

PUBLIC = {"/api/v1/openapi.json"}
SAMPLE_ARGS = {"event_id": str(uuid.uuid4()), "name": "no-such-key", "hold_id": "999999", "fingerprint": "0" * 20,
               "rule_id": "no_such_rule", "silence_id": "999999",
               "request_id": str(uuid.uuid4())}


def api_routes(app: Flask) -> list[tuple[str, str, str, Permission]]:
    """(method, rule, concrete url, required permission) for every protected /api/v1 route."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule in PUBLIC:
            continue
        view = app.view_functions[rule.endpoint]
        permission = getattr(view, "required_permission", None)
        assert permission is not None, f"{rule.rule} has no @require(permission)"
        url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLE_ARGS[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, rule.rule, url, permission))
    return routes


def call(client, method: str, url: str, headers: dict[str, str]):
    return client.open(url, method=method, headers=headers)


def test_the_route_table_is_what_the_matrix_is_checked_against(shared_app):
    routes = {(method, rule): permission for method, rule, _, permission in api_routes(shared_app)}
    # Every permission some role holds guards at least one route, except backfill (a flag on ingest).
    assert set(routes.values()) == set(Permission) - {Permission.BACKFILL}
    assert routes[("POST", "/api/v1/logs")] == Permission.INGEST
    assert routes[("DELETE", "/api/v1/logs/<event_id>")] == Permission.DELETE
    assert routes[("GET", "/api/v1/logs/export")] == Permission.EXPORT
    assert routes[("PUT", "/api/v1/retention")] == Permission.CONFIGURE_RETENTION
    assert len(routes) >= 15


def test_every_route_needs_a_key(shared_app, shared_client):
    failures = []
    for method, rule, url, _ in api_routes(shared_app):
        response = call(shared_client, method, url, {})
        if response.status_code != 401:
            failures.append(f"{method} {rule}: {response.status_code}")
            continue
        assert error_of(response)["code"] == "unauthenticated"
    assert failures == []


@pytest.mark.parametrize("role", list(Role))
def test_every_route_honours_the_role_matrix(shared_app, shared_client, role_keys, role):
    failures = []
    for method, rule, url, permission in api_routes(shared_app):
        response = call(shared_client, method, url, role_keys[role])
        allowed = permission in ROLE_PERMISSIONS[role]
        if allowed and response.status_code in (401, 403):
            failures.append(f"{role} {method} {rule}: refused with {response.status_code}, needs {permission}")
        elif not allowed:
            if response.status_code != 403:
                failures.append(f"{role} {method} {rule}: {response.status_code}, expected 403 ({permission})")
            else:
                assert error_of(response)["code"] == "forbidden"
        if response.status_code >= 500:
            failures.append(f"{role} {method} {rule}: {response.status_code}")
    assert failures == []


@pytest.mark.parametrize("role", list(Role))
def test_a_role_sees_its_own_permissions_work(shared_client, role_keys, role):
    """Beyond 'not refused': a permitted read of each kind really answers 200."""
    permissions = ROLE_PERMISSIONS[role]
    for url, permission in [("/api/v1/logs", Permission.VIEW), ("/api/v1/logs/export", Permission.EXPORT),
                            ("/api/v1/keys", Permission.MANAGE_KEYS)]:
        status = shared_client.get(url, headers=role_keys[role]).status_code
        assert status == (200 if permission in permissions else 403), (role, url)


@pytest.mark.parametrize("header", [
    {"Authorization": "Bearer nonsense"},
    {"Authorization": "Bearer aw_"},
    {"Authorization": f"Bearer aw_{uuid.uuid4().hex}_not-the-secret"},
    {"Authorization": f"Bearer aw_{'z' * 32}_secret"},
    {"Authorization": "Bearer " + "a" * 5000},
    {"Authorization": "Bearer aw_\u00e9\u00e9_x"},
    {"X-API-Key": "nonsense"},
    {"X-API-Key": f"aw_{uuid.uuid4().hex}_x"},
], ids=["word", "prefix-only", "unknown-id", "non-hex-id", "huge", "non-ascii", "x-api-key-word",
        "x-api-key-unknown"])
def test_malformed_or_unknown_keys_are_401(shared_client, header):
    response = shared_client.get("/api/v1/logs", headers=header)
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_key"


def test_a_wrong_secret_for_a_real_key_is_401(shared_client, role_keys):
    real = role_keys[Role.ADMIN]["Authorization"]
    tampered = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    response = shared_client.get("/api/v1/logs", headers={"Authorization": tampered})
    assert response.status_code == 401


@pytest.mark.parametrize("header", [{"Authorization": ""}, {"Authorization": "Bearer "},
                                    {"Authorization": "Basic dXNlcjpwYXNz"}, {"X-API-Key": ""}])
def test_no_usable_key_is_401_unauthenticated(shared_client, header):
    response = shared_client.get("/api/v1/logs", headers=header)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"


def test_a_revoked_key_is_401_everywhere(shared_app, shared_client, shared_services):
    _, secret = catalog.create_key(shared_services.pool, "soon-revoked", Role.ADMIN, "tests")
    header = {"Authorization": f"Bearer {secret}"}
    assert shared_client.get("/api/v1/logs", headers=header).status_code == 200
    catalog.revoke_key(shared_services.pool, "soon-revoked", revoked_by="tests")
    shared_services.forget_keys()
    for method, rule, url, _ in api_routes(shared_app):
        response = call(shared_client, method, url, header)
        assert response.status_code == 401, (method, rule)
        assert error_of(response)["code"] == "invalid_key"


@pytest.mark.parametrize("make_header", [
    lambda secret: {"X-API-Key": secret},
    lambda secret: {"Authorization": f"bearer {secret}"},
    lambda secret: {"Authorization": f"BEARER   {secret}  "},
], ids=["x-api-key", "lower-case-scheme", "padded"])
def test_key_header_forms_that_work(shared_client, role_keys, make_header):
    secret = role_keys[Role.VIEWER]["Authorization"].removeprefix("Bearer ")
    response = shared_client.get("/api/v1/logs", headers=make_header(secret))
    assert response.status_code == 200


def test_the_openapi_document_needs_no_key(shared_client):
    assert shared_client.get("/api/v1/openapi.json").status_code == 200
