"""Hostile and careless input: every answer is a 4xx JSON {code, message, field}, never a 500."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from auditwatch.app import create_app
from auditwatch.services import Services
from storage.auth import Role
from storage.timescale import catalog
from tests.auditwatch.conftest import error_of, event

MISSING = object()
NIL = str(uuid.uuid4())
JSON_ROUTES = [
    ("POST", "/api/v1/logs"),
    ("POST", "/api/v1/logs/batch"),
    ("POST", "/api/v1/users"),
    ("POST", "/api/v1/keys"),
    ("POST", "/api/v1/event-types"),
    ("PUT", "/api/v1/retention"),
    ("DELETE", f"/api/v1/logs/{NIL}"),
]
GET_ROUTES = ["/api/v1/logs", "/api/v1/logs/export", f"/api/v1/logs/{NIL}", "/api/v1/keys", "/api/v1/users",
              "/api/v1/event-types", "/api/v1/retention"]
SINGLE_VALUED = ["start_time", "end_time", "user_id", "outcome", "source_ip", "metadata", "limit", "cursor",
                 "include_total"]
INJECTIONS = [
    "' OR 1=1 --",
    "'; DROP TABLE audit_events; --",
    "\" OR \"\"=\"",
    "1; SELECT pg_sleep(3)",
    "') OR ('1'='1",
    "$$; DROP TABLE users; $$",
    "%' OR '%'='",
    "\\'; DELETE FROM api_keys; --",
    "1 UNION SELECT secret_hash FROM api_keys",
]


def check(response, status: int | None = None, code: str | None = None, field: Any = MISSING) -> dict:
    """A 4xx with exactly the error shape, and the expected status, code and field when given."""
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data()[:300])
    body = error_of(response)
    if status is not None:
        assert response.status_code == status, body
    if code is not None:
        assert body["code"] == code, body
    if field is not MISSING:
        assert body["field"] == field, body
    return body


def nest(depth: int) -> dict[str, Any]:
    """A JSON object ``depth`` objects deep."""
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        node = {"a": node}
    return node


def nested_text(depth: int) -> str:
    """A filter shaped like ``nest(depth)`` that matches nothing, as text (orjson writes at most 254 levels)."""
    return '{"a":' * (depth - 1) + '{"leaf":"filter"}' + "}" * (depth - 1)


@pytest.fixture(scope="module")
def admin(role_keys, shared_services) -> dict[str, str]:
    catalog.register_users(shared_services.pool, [{"user_id": "alice"}], "tests")
    return role_keys[Role.ADMIN]


@pytest.fixture(scope="module")
def small_client(shared_settings) -> Iterator[Any]:
    """An app that takes bodies of at most 2 KiB, on the module's database."""
    settings = shared_settings.replace(max_body_bytes=2048)
    services = Services.open(settings)
    app = create_app(settings, services=services)
    app.testing = True
    try:
        yield app.test_client()
    finally:
        services.close()


def send(client, method: str, url: str, headers: dict[str, str], **kwargs: Any):
    return client.open(url, method=method, headers=headers, **kwargs)


# -- bodies -------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("raw", [
    b"", b"{", b"{]", b'{"a":}', b"nul", b"\xff\xfe{}", b'{"a":1}{"b":2}', b"[1,]", b"NaN", b"{'a': 1}",
    b'{"a":"\\ud800"}', b"\x00", b'{"a": 1e400}', b"[" * 2000 + b"]" * 2000,
], ids=["empty", "open", "mismatched", "no-value", "nul-word", "not-utf8", "two-docs", "trailing-comma", "nan",
        "single-quotes", "lone-surrogate", "nul-byte", "infinite", "too-deep"])
def test_malformed_json_bodies(shared_client, admin, route, raw):
    check(send(shared_client, *route, admin, data=raw, content_type="application/json"), 400, "malformed_json",
          None)


@pytest.mark.parametrize("route", [r for r in JSON_ROUTES if r[1] != "/api/v1/logs/batch"],
                         ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("value", [[], [{}], None, True], ids=["array", "array-of-object", "null", "true"])
def test_bodies_that_are_not_objects(shared_client, admin, route, value):
    response = send(shared_client, *route, admin, data=orjson.dumps(value), content_type="application/json")
    assert check(response)["code"] == "wrong_type"


@pytest.mark.parametrize(("value", "status", "code"), [
    ({}, 400, "wrong_type"), ("events", 400, "wrong_type"), (5, 400, "wrong_type"), ([], 400, "empty_batch"),
])
def test_batch_bodies_that_are_not_arrays(shared_client, admin, value, status, code):
    response = shared_client.post("/api/v1/logs/batch", data=orjson.dumps(value), content_type="application/json",
                                  headers=admin)
    check(response, status, code)


@pytest.mark.parametrize(("field", "value", "code"), [
    ("event_id", 123, "invalid_uuid"), ("event_id", ["x"], "invalid_uuid"), ("event_id", None, "missing_field"),
    ("timestamp", 1_700_000_000, "wrong_type"), ("timestamp", None, "missing_field"), ("timestamp", {}, "wrong_type"),
    ("event_type", 5, "wrong_type"), ("event_type", "", "missing_field"), ("event_type", "User_Login", None),
    ("event_type", "1login", None), ("event_type", "a" * 65, None),
    ("user_id", ["alice"], "wrong_type"), ("user_id", 5, "wrong_type"), ("user_id", "", "missing_field"),
    ("user_id", "a" * 257, "too_long"),
    ("outcome", True, "invalid_outcome"), ("outcome", "ok", "invalid_outcome"), ("outcome", 1, "invalid_outcome"),
    ("source_ip", 12, "wrong_type"), ("source_ip", "999.1.1.1", "invalid_ip"), ("source_ip", "10.0.0.0/8", "invalid_ip"),
    ("source_ip", "fe80::1%eth0", "invalid_ip"), ("source_ip", "localhost", "invalid_ip"),
    ("user_agent", {}, "wrong_type"), ("user_agent", "a" * 1025, "too_long"),
    ("resource_id", 1.5, "wrong_type"), ("source", False, "wrong_type"),
    ("metadata", "str", "wrong_type"), ("metadata", [1], "wrong_type"), ("metadata", 5, "wrong_type"),
    ("metadata", {"blob": "x" * 11_000}, "metadata_too_large"),
])
def test_wrong_field_types_and_values(shared_client, admin, field, value, code):
    body = {**event("alice"), field: value}
    response = shared_client.post("/api/v1/logs", json=body, headers=admin)
    error = check(response, 422, field=field)
    if code is not None:
        assert error["code"] == code
    else:
        assert error["code"] in {"invalid_event_type", "too_long"}


@pytest.mark.parametrize("value", ["not-a-uuid", "", " ", "1234", "g" * 32, "0" * 31, "0" * 33, "0" * 100,
                                   "0" * 32 + "x", "' OR 1=1 --"])
def test_invalid_event_ids_in_events(shared_client, admin, value):
    body = {**event("alice"), "event_id": value}
    error = check(shared_client.post("/api/v1/logs", json=body, headers=admin), 422, field="event_id")
    assert error["code"] in {"invalid_uuid", "missing_field"}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("segment", ["not-a-uuid", "1234", "g" * 32, "%00", "%27%20OR%201%3D1%20--", "0" * 100,
                                     "%E2%80%8B"])
def test_invalid_event_ids_in_paths(shared_client, admin, method, segment):
    response = send(shared_client, method, f"/api/v1/logs/{segment}", admin, json={"reason": "x"})
    check(response, 400, "invalid_uuid", "event_id")


TIMESTAMPS = ["yesterday", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z", "2024-01-01T00:00:00", "", "1700000000",
              "2024-01-01", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2024-01-01T00:00:00+25:00",
              "2024-01-01T00:00:00Z" + " " * 40, "２０２４-01-01T00:00:00Z"]


@pytest.mark.parametrize("value", [*TIMESTAMPS, "2999-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
def test_invalid_event_timestamps(shared_client, admin, value):
    body = {**event("alice"), "timestamp": value}
    error = check(shared_client.post("/api/v1/logs", json=body, headers=admin), 422, field="timestamp")
    assert error["code"] in {"invalid_timestamp", "missing_field", "timestamp_out_of_window"}


@pytest.mark.parametrize("name", ["start_time", "end_time"])
@pytest.mark.parametrize("value", TIMESTAMPS)
def test_invalid_query_timestamps(shared_client, admin, name, value):
    for route in ("/api/v1/logs", "/api/v1/logs/export"):
        response = shared_client.get(route, query_string={name: value}, headers=admin)
        assert check(response, field=name)["code"] in {"invalid_timestamp", "control_characters"}


def test_a_time_range_must_not_be_empty(shared_client, admin):
    for start, end in [("2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"), ("2024-01-01T00:00:00Z",) * 2]:
        response = shared_client.get("/api/v1/logs", query_string={"start_time": start, "end_time": end},
                                     headers=admin)
        check(response, 400, "invalid_range", "start_time")


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_bodies_over_the_limit_are_413(small_client, admin, route):
    big = orjson.dumps({"padding": "x" * 4096})
    check(send(small_client, *route, admin, data=big, content_type="application/json"), 413, "body_too_large", None)


def test_ndjson_over_the_limit_is_413_and_under_it_is_taken(small_client, admin, shared_conn):
    lines = [orjson.dumps(event("alice")) for _ in range(20)]
    check(small_client.post("/api/v1/logs/batch", data=b"\n".join(lines), content_type="application/x-ndjson",
                            headers=admin), 413, "body_too_large")
    fits = b"\n".join(lines[:5])
    assert len(fits) < 2048
    response = small_client.post("/api/v1/logs/batch", data=fits, content_type="application/x-ndjson",
                                 headers=admin)
    assert response.get_json()["accepted"] == 5


@pytest.mark.parametrize(("depth", "status"), [(16, 201), (17, 422), (300, 422), (900, 422)])
def test_metadata_depth(shared_client, admin, depth, status):
    response = shared_client.post("/api/v1/logs", json=event("alice", metadata=nest(depth)), headers=admin)
    assert response.status_code == status
    if status == 422:
        check(response, 422, "too_deep", "metadata")


@pytest.mark.parametrize(("depth", "ok"), [(16, True), (17, False), (300, False), (1100, False)])
def test_metadata_filter_depth(shared_client, admin, depth, ok):
    value = nested_text(depth) if depth < 1000 else "[" * depth + "]" * depth
    response = shared_client.get("/api/v1/logs", query_string={"metadata": value}, headers=admin)
    if ok:
        assert response.status_code == 200 and response.get_json()["events"] == []
    else:
        assert check(response, 400, field="metadata")["code"] in {"too_deep", "invalid_metadata",
                                                                  "parameter_too_long"}


# -- unknown fields and control characters ---------------------------------------------------------

@pytest.mark.parametrize(("extra", "field"), [
    ({"foo": 1}, "foo"), ({"received_at": "2024-01-01T00:00:00Z"}, "received_at"), ({"source_country": "US"},
                                                                                    "source_country"),
    ({"Ünïcode": 1}, "(unprintable)"), ({"a\u0000": 1}, "(unprintable)"), ({"": 1}, "(unprintable)"),
])
def test_unknown_event_fields(shared_client, admin, extra, field):
    response = shared_client.post("/api/v1/logs", json={**event("alice"), **extra}, headers=admin)
    check(response, 422, "unknown_field", field)


@pytest.mark.parametrize(("method", "url", "body", "field"), [
    ("POST", "/api/v1/users", {"user_id": "u-extra", "role": "admin"}, "role"),
    ("POST", "/api/v1/keys", {"name": "k-extra", "role": "viewer", "expires": 1}, "expires"),
    ("POST", "/api/v1/event-types", {"event_type": "t.extra", "builtin": True}, "builtin"),
    ("PUT", "/api/v1/retention", {"hot_days": 30, "keep_forever": True}, "keep_forever"),
    ("DELETE", f"/api/v1/logs/{NIL}", {"reason": "x", "force": True}, "force"),
    ("POST", "/api/v1/users", {"user_id": "u-extra", "Ärger": 1}, "(unprintable)"),
])
def test_unknown_body_fields(shared_client, admin, shared_conn, method, url, body, field):
    check(send(shared_client, method, url, admin, json=body), 400, "unknown_field", field)
    assert shared_conn.execute("SELECT count(*) FROM users WHERE user_id = 'u-extra'").fetchone()[0] == 0


@pytest.mark.parametrize(("field", "value"), [
    ("user_id", "a\x00b"), ("user_id", "a\nb"), ("user_id", "a\x1bb"), ("source", "x\x7f"),
    ("resource_id", "r\x00"), ("user_agent", "ua\r\n"), ("metadata", {"k": "v\x00"}), ("metadata", {"k\x07": 1}),
    ("metadata", {"k": ["ok", "\x01"]}),
])
def test_control_characters_in_events(shared_client, admin, field, value):
    response = shared_client.post("/api/v1/logs", json={**event("alice"), field: value}, headers=admin)
    check(response, 422, "control_characters", field)


@pytest.mark.parametrize(("method", "url", "body", "field"), [
    ("POST", "/api/v1/users", {"user_id": "a\x00b"}, "user_id"),
    ("POST", "/api/v1/users", {"user_id": "a\nb"}, "user_id"),
    ("POST", "/api/v1/users", {"user_id": "ok-user", "display_name": "Zo\x00e"}, "display_name"),
    ("POST", "/api/v1/users", {"user_id": "ok-user", "email": "z@x\x1b"}, "email"),
    ("POST", "/api/v1/keys", {"name": "k\x00", "role": "viewer"}, "name"),
    ("POST", "/api/v1/event-types", {"event_type": "t.ctl", "description": "d\x00"}, "description"),
    ("DELETE", f"/api/v1/logs/{NIL}", {"reason": "because\x00"}, "reason"),
])
def test_control_characters_in_bodies(shared_client, admin, shared_conn, method, url, body, field):
    check(send(shared_client, method, url, admin, json=body), 400, "control_characters", field)
    assert shared_conn.execute("SELECT count(*) FROM users WHERE user_id = 'ok-user'").fetchone()[0] == 0


@pytest.mark.parametrize("name", ["start_time", "end_time", "user_id", "outcome", "source_ip", "metadata", "limit",
                                  "cursor", "include_total"])
@pytest.mark.parametrize("value", ["\x00", "alice\x00", "a\x1b[31m"])
def test_control_characters_in_query_parameters(shared_client, admin, name, value):
    response = shared_client.get("/api/v1/logs", query_string={name: value}, headers=admin)
    check(response, 400, "control_characters", name)


def test_control_characters_in_other_parameters(shared_client, admin):
    check(shared_client.get("/api/v1/logs?event_type=%00", headers=admin), 400, field="event_type")
    check(shared_client.get("/api/v1/logs/export?format=csv%00", headers=admin), 400, field="format")
    check(shared_client.get("/api/v1/users?after=%00", headers=admin), 400, "control_characters", "after")
    check(shared_client.delete("/api/v1/keys/%00", headers=admin), 400, "invalid_name", "name")
    check(shared_client.get("/api/v1/logs?%00=1", headers=admin), 400, "unknown_parameter", "(unprintable)")


# -- SQL injection --------------------------------------------------------------------------------

def tables_intact(conn) -> None:
    for table in ("audit_events", "users", "api_keys", "event_types"):
        assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None, table
    assert conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] >= len(Role)


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize(("route", "name"), [
    *(("/api/v1/logs", name) for name in [*SINGLE_VALUED, "event_type"]),
    *(("/api/v1/logs/export", name) for name in ["user_id", "metadata", "source_ip", "format", "event_type"]),
    ("/api/v1/users", "after"), ("/api/v1/users", "limit"),
])
def test_sql_injection_in_query_parameters(shared_client, admin, shared_conn, route, name, payload):
    started = time.monotonic()
    response = shared_client.get(route, query_string={name: payload}, headers=admin)
    assert time.monotonic() - started < 2.5  # no pg_sleep ran
    if response.status_code == 200:  # taken as a literal value, so it matches only itself
        if route == "/api/v1/logs":
            assert name == "user_id"
            assert {e["user_id"] for e in response.get_json()["events"]} <= {payload}
        elif route == "/api/v1/logs/export":
            assert name == "user_id"
            assert {orjson.loads(line)["user_id"] for line in response.get_data().splitlines()} <= {payload}
        else:
            assert name == "after" and isinstance(response.get_json()["users"], list)
    else:
        check(response, field=name)
    tables_intact(shared_conn)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_sql_injection_in_a_metadata_filter(shared_client, admin, shared_conn, payload):
    filters = orjson.dumps({payload: payload}).decode()
    response = shared_client.get("/api/v1/logs", query_string={"metadata": filters}, headers=admin)
    assert response.status_code == 200 and response.get_json()["events"] == []
    tables_intact(shared_conn)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_sql_injection_in_paths_and_bodies(shared_client, admin, shared_conn, payload):
    quoted = payload.replace("%", "%25").replace("#", "%23").replace("?", "%3F").replace("/", "%2F")
    check(shared_client.get(f"/api/v1/logs/{quoted}", headers=admin), 400, "invalid_uuid")
    check(shared_client.delete(f"/api/v1/keys/{quoted}", headers=admin), 400, "invalid_name")
    check(shared_client.post("/api/v1/keys", json={"name": payload, "role": "viewer"}, headers=admin), 400,
          "invalid_name")
    check(shared_client.post("/api/v1/event-types", json={"event_type": payload}, headers=admin), 400,
          "invalid_event_type")
    # As data, the payload is stored verbatim: it never becomes SQL.
    created = shared_client.post("/api/v1/users", json={"user_id": payload}, headers=admin)
    assert created.status_code in (200, 201)
    assert shared_conn.execute("SELECT user_id FROM users WHERE user_id = %s", (payload,)).fetchone() == (payload,)
    sent = event(payload, metadata={"q": payload})
    assert shared_client.post("/api/v1/logs", json=sent, headers=admin).status_code == 201
    found = shared_client.get("/api/v1/logs", query_string={"user_id": payload}, headers=admin).get_json()
    assert [e["event_id"] for e in found["events"]] == [sent["event_id"]]
    tables_intact(shared_conn)


# -- query parameters -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "0", "1001", "abc", "1.5", "1e3", " 10", "10 ", "", "9" * 50, "²", "５",
                                   "0x10", "+5", "10,20", "٣", "99999999999999999999999999"])
def test_bad_limits(shared_client, admin, value):
    check(shared_client.get("/api/v1/logs", query_string={"limit": value}, headers=admin), 400, "invalid_limit",
          "limit")


@pytest.mark.parametrize("value", ["0", "10001", "-5", "²", "x", "1.0"])
def test_bad_user_list_limits(shared_client, admin, value):
    check(shared_client.get("/api/v1/users", query_string={"limit": value}, headers=admin), 400, "invalid_limit",
          "limit")


@pytest.mark.parametrize(("name", "value", "code"), [
    ("outcome", "SUCCESS", "invalid_outcome"), ("outcome", "", "invalid_outcome"),
    ("source_ip", "10.0.0.300", "invalid_ip"), ("source_ip", "abc", "invalid_ip"),
    ("source_ip", "10.0.0.0/40", "invalid_ip"), ("source_ip", "fe80::1%eth0", "invalid_ip"),
    ("source_ip", "", "invalid_ip"),
    ("include_total", "yes", "invalid_parameter"), ("include_total", "2", "invalid_parameter"),
    ("event_type", "User_Login", "invalid_event_type"), ("event_type", "a b", "invalid_event_type"),
    ("event_type", "x" * 65, "invalid_event_type"), ("event_type", "", "invalid_event_type"),
    ("metadata", "[]", "invalid_metadata"), ("metadata", "1", "invalid_metadata"),
    ("metadata", "null", "invalid_metadata"), ("metadata", "{", "invalid_metadata"),
    ("metadata", '{"a": 1e400}', "invalid_metadata"), ("metadata", '"hr"', "invalid_metadata"),
    ("metadata", '{"a": "\\u0000"}', "control_characters"),
    ("user_id", "x" * 4097, "parameter_too_long"),
])
def test_bad_filter_values(shared_client, admin, name, value, code):
    check(shared_client.get("/api/v1/logs", query_string={name: value}, headers=admin), 400, code, name)


@pytest.mark.parametrize("value", ["xml", "CSV", "json", "csv "])
def test_bad_export_formats(shared_client, admin, value):
    check(shared_client.get("/api/v1/logs/export", query_string={"format": value}, headers=admin), 400,
          "invalid_format", "format")


@pytest.mark.parametrize("route", GET_ROUTES)
@pytest.mark.parametrize("query", ["foo=1", "LIMIT=5", "user=alice", "limit2=3"])
def test_unknown_query_parameters(shared_client, admin, route, query):
    if route == "/api/v1/users" and query == "limit2=3":
        query = "offset=3"
    name = query.split("=")[0]
    if name != name.lower():
        name = "(unprintable)"  # only names shaped like identifiers are echoed back
    check(shared_client.get(f"{route}?{query}", headers=admin), 400, "unknown_parameter", name)


@pytest.mark.parametrize("name", ["limit", "cursor", "include_total"])
def test_paging_parameters_are_unknown_to_export(shared_client, admin, name):
    check(shared_client.get(f"/api/v1/logs/export?{name}=1", headers=admin), 400, "unknown_parameter", name)


@pytest.mark.parametrize(("route", "name"), [
    *(("/api/v1/logs", name) for name in SINGLE_VALUED),
    ("/api/v1/logs/export", "format"), ("/api/v1/logs/export", "user_id"),
    ("/api/v1/users", "after"), ("/api/v1/users", "limit"),
])
def test_repeated_single_valued_parameters(shared_client, admin, route, name):
    check(shared_client.get(route, query_string=[(name, "1"), (name, "2")], headers=admin), 400,
          "repeated_parameter", name)


# -- cursors --------------------------------------------------------------------------------------

def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture(scope="module")
def cursor(shared_client, shared_services, admin) -> str:
    """A real `next` cursor for user_id=pager, limit=1."""
    catalog.register_users(shared_services.pool, [{"user_id": "pager"}], "tests")
    batch = [event("pager") for _ in range(3)]
    assert shared_client.post("/api/v1/logs/batch", json=batch, headers=admin).get_json()["accepted"] == 3
    page = shared_client.get("/api/v1/logs?user_id=pager&limit=1", headers=admin).get_json()
    assert page["next"]
    return page["next"]


def fingerprint_of(cursor: str) -> str:
    return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["q"]


@pytest.mark.parametrize("make", [
    lambda c: "garbage",
    lambda c: "!!!!",
    lambda c: "a" * 600,
    lambda c: c[:-5],
    lambda c: c + "AAAA",
    lambda c: b64(b"not json"),
    lambda c: b64({}),
    lambda c: b64([1, 2]),
    lambda c: b64("str"),
    lambda c: b64({"t": "2024-01-01T00:00:00", "i": str(uuid.uuid4()), "q": fingerprint_of(c)}),
    lambda c: b64({"t": "yesterday", "i": str(uuid.uuid4()), "q": fingerprint_of(c)}),
    lambda c: b64({"t": "2024-01-01T00:00:00+00:00", "i": "not-a-uuid", "q": fingerprint_of(c)}),
    lambda c: b64({"t": 5, "i": str(uuid.uuid4()), "q": fingerprint_of(c)}),
    lambda c: b64({**orjson.loads(base64.urlsafe_b64decode(c + "==")), "q": "0" * 16}),
    lambda c: b64(b"\xff\xfe\x00"),
    lambda c: b64({"t": "2024-01-01T00:00:00+00:00", "i": 5, "q": fingerprint_of(c)}),
    lambda c: b64({"t": "2024-01-01T00:00:00+00:00", "i": ["a"], "q": fingerprint_of(c)}),
    lambda c: b64({"t": "2024-01-01T00:00:00+00:00", "i": None, "q": fingerprint_of(c)}),
], ids=["word", "punctuation", "too-long", "truncated", "padded", "not-json", "empty-object", "array", "string",
        "naive-time", "bad-time", "bad-id", "numeric-time", "tampered-fingerprint", "binary", "numeric-id", "list-id",
        "null-id"])
def test_bad_and_tampered_cursors(shared_client, admin, cursor, make):
    response = shared_client.get("/api/v1/logs", query_string={"user_id": "pager", "limit": 1,
                                                               "cursor": make(cursor)}, headers=admin)
    check(response, 400, "invalid_cursor", "cursor")


@pytest.mark.parametrize("other", [{"user_id": "alice"}, {"user_id": "pager", "outcome": "failure"},
                                   {"user_id": "pager", "event_type": "user_login"}, {}])
def test_a_cursor_reused_with_other_filters(shared_client, admin, cursor, other):
    response = shared_client.get("/api/v1/logs", query_string={**other, "limit": 1, "cursor": cursor},
                                 headers=admin)
    body = check(response, 400, "invalid_cursor", "cursor")
    assert "other filters" in body["message"]


def test_a_cursor_may_change_only_the_page_size(shared_client, admin, cursor):
    response = shared_client.get("/api/v1/logs", query_string={"user_id": "pager", "limit": 5, "cursor": cursor},
                                 headers=admin)
    assert response.status_code == 200
    assert len(response.get_json()["events"]) == 2


# -- media types, methods, other bodies ------------------------------------------------------------

@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None, "application/jsonx",
                                          "application/json-patch+json", "text/json"])
def test_wrong_content_types_are_415(shared_client, admin, route, content_type):
    body = orjson.dumps([event("alice")] if route[1].endswith("batch") else event("alice"))
    response = send(shared_client, *route, admin, data=body, content_type=content_type)
    check(response, 415, "unsupported_media_type", None)


@pytest.mark.parametrize("route", [r for r in JSON_ROUTES if r[1] != "/api/v1/logs/batch"],
                         ids=lambda r: f"{r[0]} {r[1]}")
def test_ndjson_is_for_batches_only(shared_client, admin, route):
    body = orjson.dumps(event("alice"))
    check(send(shared_client, *route, admin, data=body, content_type="application/x-ndjson"), 415)


def test_a_json_content_type_with_a_charset_is_fine(shared_client, admin):
    response = shared_client.post("/api/v1/logs", data=orjson.dumps(event("alice")),
                                  content_type="application/json; charset=utf-8", headers=admin)
    assert response.status_code == 201


@pytest.mark.parametrize(("method", "url", "status"), [
    ("PATCH", "/api/v1/logs", 405), ("PUT", "/api/v1/logs/batch", 405), ("POST", "/api/v1/retention", 405),
    ("GET", "/api/v1/nope", 404), ("GET", "/api/v2/logs", 404), ("DELETE", "/api/v1/users", 405),
])
def test_unknown_routes_and_methods(shared_client, admin, method, url, status):
    check(send(shared_client, method, url, admin), status)


@pytest.mark.parametrize(("body", "field"), [
    ({"hot_days": "30"}, "hot_days"), ({"hot_days": 30.5}, "hot_days"), ({"hot_days": True}, "hot_days"),
    ({"hot_days": None}, "hot_days"), ({"hot_days": 0}, "hot_days"), ({"hot_days": 3651}, "hot_days"),
    ({"hot_days": [30]}, "hot_days"), ({"cold_years": 101}, "cold_years"), ({"cold_years": -1}, "cold_years"),
    ({"hot_days": 10**30}, "hot_days"),
])
def test_bad_retention_values(shared_client, admin, body, field):
    check(shared_client.put("/api/v1/retention", json=body, headers=admin), 400, "invalid_field", field)


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"name": "k1", "role": "root"}, "invalid_role", "role"),
    ({"name": "k1", "role": 5}, "invalid_field", "role"),
    ({"name": "k1"}, "invalid_field", "role"),
    ({"role": "viewer"}, "invalid_field", "name"),
    ({"name": "-bad", "role": "viewer"}, "invalid_name", "name"),
    ({"name": "has space", "role": "viewer"}, "invalid_name", "name"),
    ({"name": "a" * 65, "role": "viewer"}, "invalid_field", "name"),
    ({"name": ["k1"], "role": "viewer"}, "invalid_field", "name"),
])
def test_bad_key_requests(shared_client, admin, body, code, field):
    check(shared_client.post("/api/v1/keys", json=body, headers=admin), 400, code, field)


@pytest.mark.parametrize(("body", "field"), [
    ({"user_id": "u1", "kind": "robot"}, "kind"), ({"user_id": "u1", "kind": ["human"]}, "kind"),
    ({"user_id": "u1", "kind": {"a": 1}}, "kind"), ({"user_id": ""}, "user_id"), ({"user_id": 5}, "user_id"),
    ({"user_id": "a" * 257}, "user_id"), ({"user_id": "u1", "email": 5}, "email"), ({}, "user_id"),
])
def test_bad_user_registrations(shared_client, admin, body, field):
    check(shared_client.post("/api/v1/users", json=body, headers=admin), 400, field=field)


@pytest.mark.parametrize(("body", "field"), [
    ({"event_type": "Bad"}, "event_type"), ({"event_type": ""}, "event_type"), ({"event_type": "1x"}, "event_type"),
    ({"event_type": "ok.type", "description": 5}, "description"), ({}, "event_type"),
    ({"event_type": "ok.type", "ocsf_class": "x" * 129}, "ocsf_class"),
])
def test_bad_event_types(shared_client, admin, body, field):
    check(shared_client.post("/api/v1/event-types", json=body, headers=admin), 400, field=field)


def test_the_tables_survived_everything(shared_conn, cursor):
    tables_intact(shared_conn)
    assert shared_conn.execute("SELECT count(*) FROM audit_events WHERE user_id = 'pager'").fetchone()[0] == 3
