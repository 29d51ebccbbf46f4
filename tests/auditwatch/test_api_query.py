"""The read and admin routes: search, paging, export, erasure, keys, users, event types, retention."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from storage.auth import Role
from storage.events import COLUMNS, EventRecord, Outcome
from storage.timescale import catalog
from tests.auditwatch.conftest import error_of, event

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# The seed's window: the audit events the tests' own reads create (timestamped now) fall outside it.
WINDOW = {"start_time": (T0 - 3 * DAY).isoformat(), "end_time": T0.isoformat()}

SEED = {
    "a1": event("alice", at=T0 - HOUR, outcome="success", source_ip="10.0.0.5",
                metadata={"bucket": "hr", "level": {"x": 1}}),
    "a2": event("alice", at=T0 - 2 * HOUR, event_type="file_download", outcome="failure", source_ip="10.0.1.7",
                metadata={"bucket": "finance"}),
    "b1": event("bob", at=T0 - 3 * HOUR, outcome="failure", source_ip="192.168.1.10",
                metadata={"bucket": "hr", "tags": ["a", "b"]}),
    "b2": event("bob", at=T0 - DAY, event_type="data_export", outcome="success", source_ip="2001:db8::1"),
    "c1": event("carol", at=T0 - 2 * DAY, event_type="password_change", outcome="unknown", source_ip="10.0.0.6",
                metadata={"bucket": "hr", "level": {"x": 2}}),
}
# Cells a spreadsheet would run as formulas; seeded outside WINDOW.
FORMULAS = event("=evil", at=T0 - 5 * DAY, resource_id='=HYPERLINK("http://x.example")', user_agent="@SUM(A1)",
                 source="+cmd", metadata={"note": "-1"})
MANY = 1_100  # more than the largest page


@pytest.fixture(scope="module")
def seeded(shared_client, shared_services, role_keys) -> dict[str, Any]:
    """SEED and FORMULAS through the API; MANY events of `dave` straight through the writer."""
    catalog.register_users(shared_services.pool, [{"user_id": u} for u in ("alice", "bob", "carol", "=evil", "erin")],
                           "tests")
    response = shared_client.post("/api/v1/logs/batch", json=[*SEED.values(), FORMULAS],
                                  headers=role_keys[Role.SYSTEM])
    assert response.get_json()["accepted"] == len(SEED) + 1
    # Ten at one instant, so paging must break ties on event_id.
    dave = [EventRecord(event_id=uuid.uuid4(), timestamp=T0 - 30 * DAY - timedelta(seconds=max(0, i - 9)),
                        event_type="file_upload", user_id="dave", received_at=T0, outcome=Outcome.SUCCESS)
            for i in range(MANY)]
    assert shared_services.writer.write(dave) == [True] * MANY
    return {"dave": dave}


SENT_BY = {"_ingest": {"sender": "apikey:shared-system"}}  # what ingest records of the seeding key


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.get_data()
    return [e["event_id"] for e in response.get_json()["events"]]


def newest_first(records: list[EventRecord]) -> list[str]:
    return [str(r.event_id) for r in sorted(records, key=lambda r: (r.timestamp, r.event_id), reverse=True)]


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["a1", "a2", "b1", "b2", "c1"]),
    ({"user_id": "alice"}, ["a1", "a2"]),
    ({"user_id": "nobody"}, []),
    ({"event_type": "user_login"}, ["a1", "b1"]),
    ({"event_type": ["user_login", "data_export"]}, ["a1", "b1", "b2"]),
    ({"outcome": "failure"}, ["a2", "b1"]),
    ({"outcome": "unknown"}, ["c1"]),
    ({"source_ip": "10.0.0.5"}, ["a1"]),
    ({"source_ip": "10.0.0.0/24"}, ["a1", "c1"]),
    ({"source_ip": "10.0.0.0/16"}, ["a1", "a2", "c1"]),
    ({"source_ip": "10.0.0.77/16"}, ["a1", "a2", "c1"]),  # host bits are ignored
    ({"source_ip": "2001:db8::/32"}, ["b2"]),
    ({"source_ip": "2001:0db8:0000::0001"}, ["b2"]),
    ({"metadata": '{"bucket": "hr"}'}, ["a1", "b1", "c1"]),
    ({"metadata": '{"tags": ["a"]}'}, ["b1"]),
    ({"metadata": '{"level": {"x": 2}}'}, ["c1"]),
    ({"metadata": "{}"}, ["a1", "a2", "b1", "b2", "c1"]),
    ({"start_time": (T0 - 2 * HOUR).isoformat()}, ["a1", "a2"]),  # the start is inclusive
    ({"end_time": (T0 - HOUR).isoformat()}, ["a2", "b1", "b2", "c1"]),  # the end is exclusive
    ({"start_time": "2024-05-01T11:30:00+02:00", "end_time": "2024-05-01T11:30:00Z"}, ["a1", "a2"]),  # 09:30Z
    ({"user_id": "bob", "outcome": "success", "event_type": "data_export"}, ["b2"]),
    ({"user_id": "alice", "metadata": '{"bucket": "hr"}', "source_ip": "10.0.0.0/8"}, ["a1"]),
])
def test_filters(shared_client, role_keys, seeded, params, expected):
    query = [(k, v) for k, values in {**WINDOW, **params}.items()
             for v in (values if isinstance(values, list) else [values])]
    response = shared_client.get("/api/v1/logs", query_string=query, headers=role_keys[Role.VIEWER])
    assert ids_of(response) == [SEED[k]["event_id"] for k in expected]  # newest first
    assert response.get_json()["next"] is None


def test_one_event_reads_back_as_sent(shared_client, role_keys, seeded):
    sent = SEED["b1"]
    response = shared_client.get(f"/api/v1/logs/{sent['event_id']}", headers=role_keys[Role.VIEWER])
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == set(COLUMNS)
    # As sent, plus the sending key that ingest records in metadata._ingest (issue 14 #3).
    assert body["metadata"].pop("_ingest") == {"sender": "apikey:shared-system"}
    assert {k: body[k] for k in sent if k != "timestamp"} == {k: v for k, v in sent.items() if k != "timestamp"}
    assert datetime.fromisoformat(body["timestamp"]) == datetime.fromisoformat(sent["timestamp"])
    assert datetime.fromisoformat(body["received_at"]) > T0


def test_unknown_event_id_is_404(shared_client, role_keys, seeded):
    response = shared_client.get(f"/api/v1/logs/{uuid.uuid4()}", headers=role_keys[Role.VIEWER])
    assert response.status_code == 404
    assert error_of(response) | {"message": ""} == {"code": "not_found", "field": "event_id", "message": ""}


def test_limit_defaults_to_100_and_stops_at_1000(shared_client, role_keys, seeded):
    expected = newest_first(seeded["dave"])
    headers = role_keys[Role.VIEWER]

    default = shared_client.get("/api/v1/logs?user_id=dave", headers=headers)
    assert ids_of(default) == expected[:100]
    assert default.get_json()["next"]

    largest = shared_client.get("/api/v1/logs?user_id=dave&limit=1000", headers=headers)
    assert ids_of(largest) == expected[:1000]
    assert largest.get_json()["next"]

    over = shared_client.get("/api/v1/logs?user_id=dave&limit=1001", headers=headers)
    assert over.status_code == 400
    assert error_of(over)["field"] == "limit"

    one = shared_client.get("/api/v1/logs?user_id=dave&limit=1", headers=headers)
    assert ids_of(one) == expected[:1]


def test_last_page_has_no_next(shared_client, role_keys, seeded):
    headers = role_keys[Role.VIEWER]
    exact = shared_client.get("/api/v1/logs", query_string={**WINDOW, "limit": 5}, headers=headers)
    assert len(ids_of(exact)) == 5 and exact.get_json()["next"] is None
    short = shared_client.get("/api/v1/logs", query_string={**WINDOW, "limit": 4}, headers=headers)
    assert len(ids_of(short)) == 4 and short.get_json()["next"]


@pytest.mark.parametrize("flag", ["true", "1", "TRUE"])
def test_include_total_counts_every_match(shared_client, role_keys, seeded, flag):
    response = shared_client.get(f"/api/v1/logs?user_id=dave&limit=10&include_total={flag}",
                                 headers=role_keys[Role.VIEWER])
    assert len(ids_of(response)) == 10
    assert response.get_json()["total"] == MANY


@pytest.mark.parametrize("flag", [None, "false", "0"])
def test_total_is_left_out_unless_asked(shared_client, role_keys, seeded, flag):
    query = {"user_id": "dave", "limit": 10} | ({"include_total": flag} if flag else {})
    response = shared_client.get("/api/v1/logs", query_string=query, headers=role_keys[Role.VIEWER])
    assert "total" not in response.get_json()


def walk(client, headers, query: dict[str, Any], between=None) -> list[str]:
    """Follow `next` to the end; ``between(page_number)`` runs before each following page."""
    seen: list[str] = []
    cursor = None
    for page in range(10_000):
        response = client.get("/api/v1/logs", query_string={**query, **({"cursor": cursor} if cursor else {})},
                              headers=headers)
        seen += ids_of(response)
        cursor = response.get_json()["next"]
        if cursor is None:
            return seen
        if between:
            between(page)
    raise AssertionError("paging did not end")


def test_paging_returns_each_event_once_while_events_arrive(shared_client, role_keys, seeded, shared_conn):
    system, viewer = role_keys[Role.SYSTEM], role_keys[Role.VIEWER]
    base = T0 - 60 * DAY
    originals = [event("erin", at=base - timedelta(minutes=i // 3)) for i in range(23)]  # triples share a time
    assert shared_client.post("/api/v1/logs/batch", json=originals, headers=system).get_json()["accepted"] == 23
    arrived: list[dict[str, Any]] = []

    def insert(page: int) -> None:
        # One newer than everything (it lands on a page already read) and one older than everything
        # (it lands behind the cursor, on a page still to come).
        batch = [event("erin", at=base + DAY), event("erin", at=base - (30 + page) * DAY)]
        assert shared_client.post("/api/v1/logs/batch", json=batch, headers=system).get_json()["accepted"] == 2
        arrived.extend(batch)

    seen = walk(shared_client, viewer, {"user_id": "erin", "limit": 4}, between=insert)

    assert len(seen) == len(set(seen)), "an event was returned twice"
    original_ids = {e["event_id"] for e in originals}
    assert original_ids <= set(seen)
    older = {e["event_id"] for e in arrived if e["timestamp"] < originals[-1]["timestamp"]}
    newer = {e["event_id"] for e in arrived} - older
    assert older and older <= set(seen)
    assert not newer & set(seen)
    stored = {r[0] for r in shared_conn.execute(
        "SELECT event_id::text FROM audit_events WHERE user_id = 'erin'").fetchall()}
    assert set(seen) <= stored


def test_paging_the_whole_table_returns_every_row_once(shared_client, role_keys, seeded, shared_conn):
    before = {r[0] for r in shared_conn.execute("SELECT event_id::text FROM audit_events").fetchall()}
    seen = walk(shared_client, role_keys[Role.VIEWER], {"limit": 1000})
    assert len(seen) == len(set(seen))
    assert before <= set(seen)  # and the only extras are the walk's own query_executed events
    extras = set(seen) - before
    kinds = shared_conn.execute("SELECT DISTINCT event_type FROM audit_events WHERE event_id = ANY(%s::uuid[])",
                                (list(extras),)).fetchall()
    assert set(kinds) <= {("query_executed",)}


def test_a_search_is_itself_audited(shared_client, role_keys, seeded, shared_conn):
    response = shared_client.get("/api/v1/logs", query_string={**WINDOW, "user_id": "carol"},
                                 headers=role_keys[Role.AUDITOR])
    assert ids_of(response) == [SEED["c1"]["event_id"]]
    rows = shared_conn.execute(
        "SELECT user_id, outcome, metadata FROM audit_events WHERE event_type = 'query_executed' "
        "AND metadata -> 'filters' ->> 'user_id' = 'carol'").fetchall()
    assert len(rows) == 1
    user_id, outcome, metadata = rows[0]
    assert (user_id, outcome) == ("apikey:shared-auditor", "success")
    assert metadata["route"] == "list_events"
    assert metadata["returned"] == 1
    assert metadata["filters"]["start_time"].startswith("2024-04-28T12:00:00")


def test_reading_one_event_is_audited(shared_client, role_keys, seeded, shared_conn):
    target = SEED["a2"]["event_id"]
    assert shared_client.get(f"/api/v1/logs/{target}", headers=role_keys[Role.VIEWER]).status_code == 200
    row = shared_conn.execute(
        "SELECT user_id, metadata FROM audit_events WHERE event_type = 'query_executed' "
        "AND metadata ->> 'event_id' = %s", (target,)).fetchone()
    assert row == ("apikey:shared-viewer", {"route": "get_event", "event_id": target, "found": True})


def test_ndjson_export_streams_the_matching_events(shared_client, role_keys, seeded, shared_conn):
    response = shared_client.get("/api/v1/logs/export", query_string={**WINDOW, "user_id": "alice"},
                                 headers=role_keys[Role.AUDITOR])
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"] == 'attachment; filename="audit-events.ndjson"'
    lines = [orjson.loads(line) for line in response.get_data().splitlines()]
    assert [e["event_id"] for e in lines] == [SEED["a1"]["event_id"], SEED["a2"]["event_id"]]
    sender = lines[0]["metadata"].pop("_ingest")["sender"]  # recorded by ingest (issue 14 #3)
    assert lines[0]["metadata"] == {"bucket": "hr", "level": {"x": 1}} and sender.startswith("apikey:")

    row = shared_conn.execute(
        "SELECT user_id, metadata FROM audit_events WHERE event_type = 'export_requested' "
        "AND metadata -> 'filters' ->> 'user_id' = 'alice'").fetchone()
    assert row[0] == "apikey:shared-auditor"
    assert row[1]["format"] == "ndjson"


def test_export_has_no_page_limit(shared_client, role_keys, seeded):
    response = shared_client.get("/api/v1/logs/export?user_id=dave", headers=role_keys[Role.AUDITOR])
    assert [orjson.loads(line)["event_id"] for line in response.get_data().splitlines()] == \
        newest_first(seeded["dave"])


def test_csv_export_matches_the_filter(shared_client, role_keys, seeded):
    response = shared_client.get("/api/v1/logs/export", query_string={**WINDOW, "format": "csv",
                                                                       "event_type": "user_login"},
                                 headers=role_keys[Role.ADMIN])
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == COLUMNS
    records = [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [r["event_id"] for r in records] == [SEED["a1"]["event_id"], SEED["b1"]["event_id"]]
    assert orjson.loads(records[1]["metadata"]) == {"bucket": "hr", "tags": ["a", "b"], **SENT_BY}
    assert records[1]["source_ip"] == "192.168.1.10"


def test_csv_export_neutralises_formulas(shared_client, role_keys, seeded):
    response = shared_client.get("/api/v1/logs/export", query_string={"format": "csv", "user_id": "=evil"},
                                 headers=role_keys[Role.AUDITOR])
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 2
    record = dict(zip(COLUMNS, rows[1], strict=True))
    assert record["user_id"] == "'=evil"
    assert record["resource_id"] == "'=HYPERLINK(\"http://x.example\")"
    assert record["user_agent"] == "'@SUM(A1)"
    assert record["source"] == "'+cmd"
    assert orjson.loads(record["metadata"]) == {"note": "-1", **SENT_BY}
    # The NDJSON export carries the values unchanged.
    raw = shared_client.get("/api/v1/logs/export", query_string={"user_id": "=evil"},
                            headers=role_keys[Role.AUDITOR]).get_data()
    assert orjson.loads(raw)["resource_id"] == FORMULAS["resource_id"]


# -- changes: each on its own database --------------------------------------------------------------

def test_an_event_with_a_huge_number_does_not_break_reads(client, make_key, users):
    """jsonb keeps numbers past 64 bits; reading them back must not fail every search and export."""
    users("alice")
    sent = event("alice")
    raw = orjson.dumps(sent)[:-1] + b', "metadata": {"n": 123456789012345678901234567890}}'
    assert client.post("/api/v1/logs", data=raw, content_type="application/json",
                       headers=make_key("system")).status_code == 201
    auditor = make_key("auditor")

    one = client.get(f"/api/v1/logs/{sent['event_id']}", headers=auditor)
    assert one.status_code == 200
    assert float(one.get_json()["metadata"]["n"]) == pytest.approx(1.2345678901234568e29)
    assert ids_of(client.get("/api/v1/logs?user_id=alice", headers=auditor)) == [sent["event_id"]]
    exported = client.get("/api/v1/logs/export?user_id=alice", headers=auditor).get_data()
    assert orjson.loads(exported)["event_id"] == sent["event_id"]
    table = client.get("/api/v1/logs/export?user_id=alice&format=csv", headers=auditor).get_data(as_text=True)
    assert "1234567890123456" in table or "1.2345678901234568e+29" in table



def test_erasure_needs_a_reason_and_is_audited(client, make_key, users, conn):
    users("alice")
    target, kept = event("alice"), event("alice")
    client.post("/api/v1/logs/batch", json=[target, kept], headers=make_key("system"))
    admin = make_key("admin", name="dpo")
    url = f"/api/v1/logs/{target['event_id']}"

    assert client.delete(url, headers=admin).status_code == 415
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": 7}):
        response = client.delete(url, json=body, headers=admin)
        assert response.status_code == 400
        assert error_of(response)["field"] == "reason"
    assert conn.execute("SELECT count(*) FROM audit_events WHERE event_id = %s", (target["event_id"],)).fetchone()[0]

    response = client.delete(url, json={"reason": "GDPR art. 17 request #42"}, headers=admin)
    assert response.status_code == 200
    assert response.get_json() == {"erased": 1, "event_id": target["event_id"]}
    remaining = {r[0] for r in conn.execute("SELECT event_id::text FROM audit_events WHERE user_id = 'alice'")}
    assert remaining == {kept["event_id"]}

    audit = conn.execute("SELECT user_id, resource_id, metadata FROM audit_events WHERE event_type = 'event_erased'"
                         ).fetchall()
    assert len(audit) == 1
    assert audit[0][:2] == ("apikey:dpo", target["event_id"])
    assert audit[0][2]["reason"] == "GDPR art. 17 request #42"
    assert audit[0][2]["erased"] == [{"timestamp": datetime.fromisoformat(target["timestamp"]).isoformat(),
                                      "event_type": "user_login"}]

    again = client.delete(url, json={"reason": "again"}, headers=admin)
    assert again.status_code == 404
    assert error_of(again)["code"] == "not_found"


def test_keys_are_created_listed_and_revoked(client, make_key, conn):
    admin = make_key("admin", name="root")

    created = client.post("/api/v1/keys", json={"name": "ci-reader", "role": "viewer"}, headers=admin)
    assert created.status_code == 201
    body = created.get_json()
    assert set(body) == {"key_id", "name", "role", "created_at", "revoked_at", "key"}
    assert (body["name"], body["role"], body["revoked_at"]) == ("ci-reader", "viewer", None)
    secret = body["key"]
    new_key = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/logs", headers=new_key).status_code == 200

    listed = client.get("/api/v1/keys", headers=admin)
    assert listed.status_code == 200
    assert secret.split("_", 2)[2] not in listed.get_data(as_text=True)  # the secret is shown once only
    keys = {k["name"]: k for k in listed.get_json()["keys"]}
    assert keys["ci-reader"] == {k: v for k, v in body.items() if k != "key"}
    assert "key" not in keys["ci-reader"]

    clash = client.post("/api/v1/keys", json={"name": "ci-reader", "role": "admin"}, headers=admin)
    assert clash.status_code == 409

    revoked = client.delete("/api/v1/keys/ci-reader", headers=admin)
    assert revoked.status_code == 200
    assert revoked.get_json()["revoked_at"] is not None
    refused = client.get("/api/v1/logs", headers=new_key)  # no wait for the key cache: revocation clears it
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "invalid_key"
    assert client.delete("/api/v1/keys/ci-reader", headers=admin).status_code == 404

    audit = conn.execute("SELECT event_type, user_id, metadata FROM audit_events WHERE event_type LIKE 'api_key_%' "
                         "ORDER BY received_at").fetchall()
    assert audit == [("api_key_created", "apikey:root", {"name": "ci-reader", "role": "viewer"}),
                     ("api_key_revoked", "apikey:root", {"name": "ci-reader"})]


def test_a_key_can_be_revoked_by_id(client, make_key):
    admin = make_key("admin")
    body = client.post("/api/v1/keys", json={"name": "by-id", "role": "auditor"}, headers=admin).get_json()
    assert client.delete(f"/api/v1/keys/{body['key_id']}", headers=admin).status_code == 200
    assert client.get("/api/v1/logs", headers={"Authorization": f"Bearer {body['key']}"}).status_code == 401


def test_revocation_outside_the_api_waits_for_the_key_cache(client, make_key, services):
    header = make_key("viewer", name="cached")
    assert client.get("/api/v1/users", headers=header).status_code == 200
    catalog.revoke_key(services.pool, "cached", revoked_by="tests")  # as `auditwatch keys revoke` does
    assert client.get("/api/v1/users", headers=header).status_code == 200  # still cached
    services.forget_keys()
    assert client.get("/api/v1/users", headers=header).status_code == 401


def test_users_are_registered_listed_and_then_accepted(client, make_key, conn):
    admin = make_key("admin", name="hr-admin")
    body = {"user_id": "zoe", "display_name": "Zoë", "email": "zoe@example.com", "department": "HR"}

    first = client.post("/api/v1/users", json=body, headers=admin)
    assert first.status_code == 201
    assert first.get_json() == {"user_id": "zoe", "created": True}
    again = client.post("/api/v1/users", json=body, headers=admin)
    assert again.status_code == 200
    assert again.get_json() == {"user_id": "zoe", "created": False}
    svc = client.post("/api/v1/users", json={"user_id": "backup-bot", "kind": "service"}, headers=admin)
    assert svc.status_code == 201

    listed = client.get("/api/v1/users", headers=make_key("viewer")).get_json()["users"]
    by_id = {u["user_id"]: u for u in listed}
    assert {k: by_id["zoe"][k] for k in ("display_name", "email", "department", "kind")} == {
        "display_name": "Zoë", "email": "zoe@example.com", "department": "HR", "kind": "human"}
    assert by_id["backup-bot"]["kind"] == "service"
    page = client.get("/api/v1/users?limit=1&after=backup-bot", headers=admin).get_json()["users"]
    assert [u["user_id"] for u in page] == [min(u for u in by_id if u > "backup-bot")]

    audited = conn.execute("SELECT resource_id, user_id FROM audit_events WHERE event_type = 'config_change' "
                           "AND metadata ->> 'change' = 'user_registered' ORDER BY resource_id").fetchall()
    assert audited == [("backup-bot", "apikey:hr-admin"), ("zoe", "apikey:hr-admin")]  # not the repeat

    assert client.post("/api/v1/logs", json=event("zoe"), headers=make_key("system")).status_code == 201


def test_event_types_are_added_and_then_accepted(client, make_key, users, conn):
    users("alice")
    admin = make_key("admin")
    builtin = client.get("/api/v1/event-types", headers=make_key("viewer")).get_json()["event_types"]
    assert {"user_login", "query_executed", "event_erased"} <= {t["event_type"] for t in builtin}
    assert all(t["builtin"] for t in builtin)
    # Only the platform writes these; ingest refuses them (issue 14 #3).
    assert {t["event_type"] for t in builtin if t["reserved"]} >= {"query_executed", "event_erased", "events_expired"}
    assert not any(t["reserved"] for t in builtin if t["event_type"] in ("user_login", "config_change"))

    body = {"event_type": "vpn.connect", "description": "A VPN session began", "ocsf_class": "Network [4001]"}
    created = client.post("/api/v1/event-types", json=body, headers=admin)
    assert created.status_code == 201
    assert created.get_json() == {"event_type": "vpn.connect", "created": True}
    assert client.post("/api/v1/event-types", json=body, headers=admin).get_json()["created"] is False

    listed = {t["event_type"]: t for t in client.get("/api/v1/event-types", headers=admin).get_json()["event_types"]}
    assert listed["vpn.connect"] == {**body, "builtin": False, "reserved": False,
                                     "class_uid": 4001, "activity_id": 99, "type_uid": 400199}  # from the caption
    assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'config_change' "
                        "AND resource_id = 'vpn.connect'").fetchone()[0] == 1

    # The pipeline refreshes its catalogue on a miss at most once a second.
    system = make_key("system")
    for _ in range(30):
        response = client.post("/api/v1/logs", json=event("alice", event_type="vpn.connect"), headers=system)
        if response.status_code == 201:
            break
        assert error_of(response)["code"] == "unknown_event_type"
        time.sleep(0.1)
    assert response.status_code == 201


def test_retention_is_read_changed_and_audited(client, make_key, conn):
    viewer, admin = make_key("viewer"), make_key("admin", name="ops")
    assert client.get("/api/v1/retention", headers=viewer).get_json() == {"hot_days": 90, "cold_years": 7}

    changed = client.put("/api/v1/retention", json={"hot_days": 30}, headers=admin)
    assert changed.status_code == 200
    assert changed.get_json() == {"hot_days": 30, "cold_years": 7}
    assert client.put("/api/v1/retention", json={"cold_years": 10}, headers=admin).get_json() == {
        "hot_days": 30, "cold_years": 10}
    assert client.get("/api/v1/retention", headers=viewer).get_json() == {"hot_days": 30, "cold_years": 10}

    for bad in ({"hot_days": 0}, {"hot_days": 3651}, {"cold_years": "7"}, {"hot_days": True}, {"keep": 1}):
        assert client.put("/api/v1/retention", json=bad, headers=admin).status_code == 400

    audit = conn.execute("SELECT user_id, resource_id, metadata FROM audit_events WHERE event_type = 'config_change' "
                         "ORDER BY received_at").fetchall()
    assert audit == [
        ("apikey:ops", "retention", {"before": None, "after": {"hot_days": 30, "cold_years": 7}}),
        ("apikey:ops", "retention", {"before": {"hot_days": 30, "cold_years": 7},
                                     "after": {"hot_days": 30, "cold_years": 10}}),
    ]
