"""The ingest routes: POST /api/v1/logs and /api/v1/logs/batch against a real TimescaleDB."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.auditwatch.conftest import ago, error_of, event, in_one_minute

JSON = "application/json"
NDJSON = "application/x-ndjson"
ERROR_KEYS = {"index", "event_id", "code", "field", "message"}


def stored(conn, *event_ids: str) -> dict[str, int]:
    """How many rows each of these event ids has in audit_events."""
    rows = conn.execute(
        "SELECT event_id::text, count(*) FROM audit_events WHERE event_id = ANY(%s::uuid[]) GROUP BY 1",
        (list(event_ids),),
    ).fetchall()
    return dict(rows)


def ndjson(*items: object) -> bytes:
    return b"\n".join(orjson.dumps(i) for i in items) + b"\n"


def test_single_event_is_created_then_a_retry_is_a_duplicate(client, make_key, users, conn):
    users("alice")
    key = make_key("system")
    sent = event("alice", outcome="success", source="vpn", source_ip="203.0.113.9", user_agent="curl/8",
                 resource_id="doc-1", metadata={"bucket": "hr", "size": 12})

    first = client.post("/api/v1/logs", json=sent, headers=key)
    assert first.status_code == 201
    assert first.get_json() == {"event_id": sent["event_id"], "status": "created"}

    retry = client.post("/api/v1/logs", json=sent, headers=key)
    assert retry.status_code == 200
    assert retry.get_json() == {"event_id": sent["event_id"], "status": "duplicate"}

    assert stored(conn, sent["event_id"]) == {sent["event_id"]: 1}
    row = conn.execute("SELECT event_type, user_id, outcome, source, host(source_ip), user_agent, resource_id, "
                       "metadata FROM audit_events WHERE event_id = %s", (sent["event_id"],)).fetchone()
    assert row[:7] == ("user_login", "alice", "success", "vpn", "203.0.113.9", "curl/8", "doc-1")
    # The metadata as sent, plus the sending key's principal (issue 14 #3).
    assert row[7] == {"bucket": "hr", "size": 12, "_ingest": {"sender": row[7]["_ingest"]["sender"]}}
    assert row[7]["_ingest"]["sender"].startswith("apikey:system-")


def test_missing_source_ip_and_user_agent_come_from_the_request(client, make_key, users, conn):
    users("alice")
    sent = event("alice")
    response = client.post("/api/v1/logs", json=sent, headers={**make_key("system"), "User-Agent": "sender/1.0"},
                           environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert response.status_code == 201
    row = conn.execute("SELECT host(source_ip), user_agent FROM audit_events WHERE event_id = %s",
                       (sent["event_id"],)).fetchone()
    assert row == ("198.51.100.7", "sender/1.0")


def test_single_event_rejections_name_the_field(client, make_key, users, conn):
    users("alice")
    key = make_key("admin")  # admin may ingest, but not backfill
    cases = [
        (event("nobody"), "unknown_user", "user_id"),
        (event("alice", event_type="not_in_catalogue"), "unknown_event_type", "event_type"),
        (event("alice", at=ago(hours=2)), "timestamp_out_of_window", "timestamp"),
        ({k: v for k, v in event("alice").items() if k != "user_id"}, "missing_field", "user_id"),
    ]
    for sent, code, field in cases:
        response = client.post("/api/v1/logs", json=sent, headers=key)
        assert response.status_code == 422, sent
        body = error_of(response)
        assert (body["code"], body["field"]) == (code, field)
    assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 0


def test_system_keys_may_backfill_history(client, make_key, users, conn):
    users("alice")
    old = event("alice", at=ago(days=400))
    assert client.post("/api/v1/logs", json=old, headers=make_key("system")).status_code == 201
    assert stored(conn, old["event_id"]) == {old["event_id"]: 1}


def test_json_batch_reports_each_event_and_stores_the_valid_ones(client, make_key, users, conn):
    users("alice", "bob")
    key = make_key("system")
    earlier = event("alice")
    assert client.post("/api/v1/logs", json=earlier, headers=key).status_code == 201
    good = [event("alice"), event("bob", event_type="file_download", metadata={"path": "/x"})]
    repeated = event("bob")
    batch = [
        good[0],                                          # 0 created
        {"event_id": "not-a-uuid", **{k: v for k, v in event().items() if k != "event_id"}},  # 1 rejected
        earlier,                                          # 2 duplicate of a stored event
        event("mallory"),                                 # 3 unknown user
        good[1],                                          # 4 created
        "not an object",                                  # 5 rejected
        repeated,                                         # 6 created
        repeated,                                         # 7 duplicate within the batch
        event("alice", event_type="no_such_type"),        # 8 unknown event type
    ]

    response = client.post("/api/v1/logs/batch", json=batch, headers=key)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"accepted", "duplicates", "rejected", "errors"}
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 2, 4)
    for error in body["errors"]:
        assert set(error) == ERROR_KEYS
    by_index = {e["index"]: e for e in body["errors"]}
    assert sorted(by_index) == [1, 3, 5, 8]
    assert (by_index[1]["code"], by_index[1]["field"], by_index[1]["event_id"]) == ("invalid_uuid", "event_id",
                                                                                    "not-a-uuid")
    assert (by_index[3]["code"], by_index[3]["field"], by_index[3]["event_id"]) == ("unknown_user", "user_id",
                                                                                    batch[3]["event_id"])
    assert (by_index[5]["code"], by_index[5]["event_id"]) == ("wrong_type", None)
    assert (by_index[8]["code"], by_index[8]["field"]) == ("unknown_event_type", "event_type")

    ids = [e["event_id"] for e in (*good, repeated, earlier, batch[3], batch[8])]
    assert stored(conn, *ids) == {good[0]["event_id"]: 1, good[1]["event_id"]: 1, repeated["event_id"]: 1,
                                  earlier["event_id"]: 1}


def test_ndjson_batch_reports_bad_lines_in_place(client, make_key, users, conn):
    users("alice")
    good = [event("alice"), event("alice"), event("alice")]
    body = (orjson.dumps(good[0]) + b"\r\n\n" + b'{"event_id": oops}\n' + orjson.dumps(good[1]) + b"\n"
            + orjson.dumps({**event("alice"), "color": "red"}) + b"\n   \n" + orjson.dumps(good[2]))

    response = client.post("/api/v1/logs/batch", data=body, content_type=NDJSON, headers=make_key("system"))

    assert response.status_code == 200
    result = response.get_json()
    assert (result["accepted"], result["duplicates"], result["rejected"]) == (3, 0, 2)
    errors = {e["index"]: e for e in result["errors"]}
    assert sorted(errors) == [1, 3]  # blank lines are skipped, not counted
    assert (errors[1]["code"], errors[1]["event_id"]) == ("malformed_json", None)
    assert "line 3" in errors[1]["message"]
    assert (errors[3]["code"], errors[3]["field"]) == ("unknown_field", "color")
    assert stored(conn, *(e["event_id"] for e in good)) == {e["event_id"]: 1 for e in good}


def test_ndjson_batch_retried_is_all_duplicates(client, make_key, users, conn):
    users("alice")
    key = make_key("system")
    events = [event("alice") for _ in range(5)]
    first = client.post("/api/v1/logs/batch", data=ndjson(*events), content_type=NDJSON, headers=key)
    again = client.post("/api/v1/logs/batch", data=ndjson(*events), content_type=NDJSON, headers=key)
    assert first.get_json() == {"accepted": 5, "duplicates": 0, "rejected": 0, "errors": []}
    assert again.get_json() == {"accepted": 0, "duplicates": 5, "rejected": 0, "errors": []}
    assert stored(conn, *(e["event_id"] for e in events)) == {e["event_id"]: 1 for e in events}


def test_batch_of_exactly_the_limit_is_stored(app_with, users, make_key, conn):
    client = app_with(rate_limit_per_minute=0).test_client()  # 0 disables R6
    users("bulk")
    events = [event("bulk", event_type="file_download") for _ in range(10_000)]
    response = client.post("/api/v1/logs/batch", data=orjson.dumps(events), content_type=JSON,
                           headers=make_key("system"))
    assert response.status_code == 200
    assert response.get_json() == {"accepted": 10_000, "duplicates": 0, "rejected": 0, "errors": []}
    assert conn.execute("SELECT count(*) FROM audit_events WHERE user_id = 'bulk'").fetchone()[0] == 10_000


@pytest.mark.parametrize("media", [JSON, NDJSON])
def test_batch_over_the_limit_is_refused_whole(client, make_key, users, conn, media):
    users("alice")
    events = [event("alice") for _ in range(10_001)]
    data = orjson.dumps(events) if media == JSON else ndjson(*events)
    response = client.post("/api/v1/logs/batch", data=data, content_type=media, headers=make_key("system"))
    assert response.status_code == 413
    assert error_of(response)["code"] == "batch_too_large"
    assert conn.execute("SELECT count(*) FROM audit_events WHERE user_id = 'alice'").fetchone()[0] == 0


def test_rate_limit_refuses_a_single_post_with_retry_after(app_with, users, make_key, conn):
    client = app_with(rate_limit_per_minute=3).test_client()

    def attempt(user_id: str):
        users(user_id)
        key = make_key("system")  # R6 counts per key: a fresh key for each try at one minute
        return user_id, [client.post("/api/v1/logs", json=event(user_id), headers=key) for _ in range(4)]

    user_id, responses = in_one_minute(attempt)
    assert [r.status_code for r in responses] == [201, 201, 201, 429]
    refused = responses[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    body = error_of(refused)
    assert (body["code"], body["field"]) == ("rate_limited", None) and "this key" in body["message"]
    assert conn.execute("SELECT count(*) FROM audit_events WHERE user_id = %s", (user_id,)).fetchone()[0] == 3


def test_rate_limit_in_a_batch_is_per_event_and_per_key(app_with, users, make_key, conn):
    client = app_with(rate_limit_per_minute=3).test_client()

    def attempt(user_id: str):
        other = f"{user_id}-other"
        users(user_id, other)
        key, second_key = make_key("system"), make_key("system")
        batch = [event(user_id) for _ in range(2)] + [event(other)] + [event(user_id) for _ in range(3)]
        partial = client.post("/api/v1/logs/batch", json=batch, headers=key)
        refused = client.post("/api/v1/logs/batch", json=[event(user_id), event(other)], headers=key)
        # Another key is not touched by the first one's budget, whoever its events are about (issue 14 #8).
        elsewhere = client.post("/api/v1/logs/batch", json=[event(user_id) for _ in range(3)], headers=second_key)
        return user_id, partial, refused, elsewhere

    user_id, partial, refused, elsewhere = in_one_minute(attempt)
    assert partial.status_code == 200
    assert 1 <= int(partial.headers["Retry-After"]) <= 60
    body = partial.get_json()
    assert (body["accepted"], body["rejected"]) == (3, 3)
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(3, "rate_limited"), (4, "rate_limited"),
                                                                 (5, "rate_limited")]
    # Every event of this batch is over the limit: the whole request is a 429, still per event.
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers
    assert refused.get_json()["rejected"] == 2
    assert elsewhere.status_code == 200 and elsewhere.get_json()["accepted"] == 3
    assert conn.execute("SELECT count(*) FROM audit_events WHERE user_id = %s", (user_id,)).fetchone()[0] == 5



def test_admin_ingests_but_viewer_and_auditor_may_not(client, make_key, users):
    users("alice")
    assert client.post("/api/v1/logs", json=event("alice"), headers=make_key("admin")).status_code == 201
    for role in ("viewer", "auditor"):
        response = client.post("/api/v1/logs", json=event("alice"), headers=make_key(role))
        assert response.status_code == 403
        assert error_of(response)["code"] == "forbidden"


def test_acknowledged_event_ids_are_the_ones_sent(client, make_key, users):
    users("alice")
    sent = event("alice", event_id=str(uuid.uuid4()).upper())
    response = client.post("/api/v1/logs", json=sent, headers=make_key("system"))
    assert response.status_code == 201
    assert uuid.UUID(response.get_json()["event_id"]) == uuid.UUID(sent["event_id"])


def test_an_ingest_key_cannot_forge_the_platforms_records(client, make_key, users, conn):
    """Issue 14 #3 over HTTP: a forged erasure tombstone, a key principal and the platform's source are 422s."""
    users("alice")
    key = make_key("system")
    tombstone = event("alice", event_type="event_erased", source="auditwatch",
                      metadata={"integrity": {"erased_leaves": ["ab" * 32]}})
    for sent, code, field in [
        ({**tombstone, "source": "app"}, "reserved_event_type", "event_type"),
        (event("alice", event_type="events_expired"), "reserved_event_type", "event_type"),
        (event("apikey:admin-1", event_type="data_export"), "reserved_principal", "user_id"),
        (event("alice", source="auditwatch"), "reserved_source", "source"),
        (event("alice", metadata={"_ingest": {"sender": "apikey:admin-1"}}), "reserved_metadata", "metadata"),
    ]:
        response = client.post("/api/v1/logs", json=sent, headers=key)
        assert response.status_code == 422, response.data
        assert (error_of(response)["code"], error_of(response)["field"]) == (code, field)
    batch = client.post("/api/v1/logs/batch", json=[{**tombstone, "source": "app"}, event("alice")], headers=key)
    assert batch.status_code == 200 and batch.get_json()["accepted"] == 1
    assert batch.get_json()["errors"][0]["code"] == "reserved_event_type"
    assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'event_erased' "
                        "OR source = 'auditwatch' AND user_id = 'alice'").fetchone()[0] == 0
