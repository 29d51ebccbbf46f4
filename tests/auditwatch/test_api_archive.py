"""The cold tier through the API and the CLI: tier-marked reads, legal holds, archive status, retention."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from storage.auth import Role
from storage.cold.store import ColdStore
from storage.timescale import archive, legal_hold, queries, self_audit
from storage.timescale.queries import EventQuery
from tests.auditwatch.conftest import error_of
from tests.storage.cold_data import event, write

NOW = datetime.now(UTC)
# Noon of the day 100 days ago: the old events below span at most 7 hours before it, so they sit in one day's
# chunk whatever the hour the suite runs (anchored on NOW, they straddled midnight when run before 07:00 UTC).
OLD = (NOW - timedelta(days=100)).replace(hour=12, minute=0, second=0, microsecond=0)


def seed_and_archive(services, *, old=12, recent=5) -> list:
    rng = random.Random(11)
    events = [event(OLD - timedelta(minutes=37 * i), rng=rng, user_id="alice") for i in range(old)]
    events += [event(NOW - timedelta(minutes=3 * i + 1), rng=rng, user_id="alice") for i in range(recent)]
    write(services.pool, events)
    result = archive.run(services.pool, services.archive, now=NOW, hot_days=90,
                         audit=self_audit.auditor("tests", lambda: NOW))
    assert result.rows == old
    return events


def test_the_events_list_pages_across_hot_and_cold_and_marks_each_tier(client, services, make_key):
    events = seed_and_archive(services)
    headers = make_key(Role.VIEWER)
    seen, tiers, cursor = [], [], None
    while True:
        url = "/api/v1/logs?user_id=alice&limit=4&include_total=true" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=headers).get_json()
        if cursor is None:
            assert body["total"] == len(events)
        seen += [e["event_id"] for e in body["events"]]
        tiers += [e["tier"] for e in body["events"]]
        cursor = body["next"]
        if cursor is None:
            break
    newest_first = sorted(events, key=lambda e: (e.timestamp, e.event_id), reverse=True)
    assert seen == [str(e.event_id) for e in newest_first]
    assert tiers == ["hot"] * 5 + ["cold"] * 12


def test_an_old_range_is_answered_from_the_archive(client, services, make_key):
    events = seed_and_archive(services)
    start = (OLD - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    end = (OLD + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    body = client.get(f"/api/v1/logs?start_time={start}&end_time={end}&limit=100",
                      headers=make_key(Role.VIEWER)).get_json()
    assert {e["tier"] for e in body["events"]} == {"cold"}
    assert len(body["events"]) == 12
    archived = {str(e.event_id): e for e in events[:12]}
    for got in body["events"]:
        assert got == {**archived[got["event_id"]].to_json(), "tier": "cold"}


def test_an_auditor_places_lists_and_releases_a_hold_and_each_is_audited(client, services, make_key):
    headers = make_key(Role.AUDITOR, "counsel")
    response = client.post("/api/v1/legal-holds", headers=headers, json={
        "user_id": "alice", "start_time": "2024-01-01T00:00:00Z", "reason": "litigation hold LIT-7"})
    assert response.status_code == 201, response.get_json()
    hold = response.get_json()
    assert hold["created_by"] == "apikey:counsel" and hold["released_at"] is None
    listed = client.get("/api/v1/legal-holds", headers=headers).get_json()["holds"]
    assert [h["hold_id"] for h in listed] == [hold["hold_id"]]
    released = client.post(f"/api/v1/legal-holds/{hold['hold_id']}/release", headers=headers,
                           json={"reason": "settled"})
    assert released.status_code == 200 and released.get_json()["release_reason"] == "settled"
    assert client.get("/api/v1/legal-holds", headers=headers).get_json()["holds"] == []
    assert len(client.get("/api/v1/legal-holds?include_released=true", headers=headers).get_json()["holds"]) == 1
    services.committer.close()
    records = queries.search(services.pool, EventQuery(event_types=("legal_hold",))).events
    assert sorted(r.metadata["action"] for r in records) == ["placed", "released"]
    assert {r.user_id for r in records} == {"apikey:counsel"}


@pytest.mark.parametrize(("body", "code"), [
    ({"reason": "nothing held"}, "invalid_hold"),
    ({"user_id": "alice"}, "invalid_field"),
    ({"user_id": "alice", "reason": ""}, "invalid_field"),
    ({"start_time": "yesterday", "reason": "r"}, "invalid_timestamp"),
    ({"start_time": "2024-01-01T00:00:00", "reason": "r"}, "invalid_timestamp"),
    ({"start_time": 5, "reason": "r"}, "invalid_timestamp"),
    ({"start_time": "2024-02-01T00:00:00Z", "end_time": "2024-01-01T00:00:00Z", "reason": "r"}, "invalid_hold"),
    ({"user_id": "x" * 300, "reason": "r"}, "invalid_field"),
    ({"user_id": "alice", "reason": "r", "scope": "all"}, "unknown_field"),
], ids=["nothing", "no-reason", "empty-reason", "bad-date", "naive-date", "number-date", "inverted", "long-user",
        "unknown-field"])
def test_bad_holds_are_refused_with_clear_errors(client, services, make_key, body, code):
    response = client.post("/api/v1/legal-holds", headers=make_key(Role.ADMIN), json=body)
    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert legal_hold.list_holds(services.pool, include_released=True) == []


def test_releasing_unknown_malformed_or_released_holds(client, services, make_key):
    headers = make_key(Role.ADMIN)
    missing = client.post("/api/v1/legal-holds/424242/release", headers=headers, json={"reason": "r"})
    assert missing.status_code == 404 and "424242" in error_of(missing)["message"]
    bad = client.post("/api/v1/legal-holds/abc/release", headers=headers, json={"reason": "r"})
    assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_hold_id"
    hold = client.post("/api/v1/legal-holds", headers=headers, json={"case_id": "C-1", "reason": "r"}).get_json()
    assert client.post(f"/api/v1/legal-holds/{hold['hold_id']}/release", headers=headers,
                       json={"reason": "r"}).status_code == 200
    again = client.post(f"/api/v1/legal-holds/{hold['hold_id']}/release", headers=headers, json={"reason": "r"})
    assert again.status_code == 409 and "already released" in error_of(again)["message"]


def test_archive_status_reports_the_cold_tier(client, services, make_key):
    seed_and_archive(services)
    body = client.get("/api/v1/archive", headers=make_key(Role.VIEWER)).get_json()
    assert body["live_files"] == 1 and body["live_rows"] == 12 and body["live_bytes"] > 0
    assert body["files_by_state"] == {"complete": 1}
    assert body["chunks_awaiting_archive"] == 0
    assert body["policy"] == {"hot_days": 90, "cold_years": 7, "cold_years_by_type": {}}


def test_per_type_cold_retention_is_a_retention_setting(client, services, make_key):
    headers = make_key(Role.ADMIN)
    ok = client.put("/api/v1/retention", headers=headers, json={"cold_years_by_type": {"config_change": 10}})
    assert ok.status_code == 200 and ok.get_json()["cold_years_by_type"] == {"config_change": 10}
    # The audit record names every type, even ones whose names R9 treats as sensitive keys.
    sensitive = {"password_reset": 12, "auth_failure": 3, "session_start": 2}
    assert client.put("/api/v1/retention", headers=headers, json={"cold_years_by_type": sensitive}).status_code == 200
    [change] = [e for e in queries.search(services.pool, EventQuery(event_types=("config_change",))).events
                if e.resource_id == "retention" and "password_reset" in str(e.metadata["after"])]
    assert change.metadata["after"]["cold_years_by_type"] == [
        {"event_type": t, "cold_years": y} for t, y in sorted(sensitive.items())]
    assert change.metadata["before"]["cold_years_by_type"] == [{"event_type": "config_change", "cold_years": 10}]
    for bad in ({"config_change": 0}, {"Bad Type": 3}, {"config_change": True}, ["config_change"]):
        response = client.put("/api/v1/retention", headers=headers, json={"cold_years_by_type": bad})
        assert response.status_code == 400 and error_of(response)["field"] == "cold_years_by_type"


# -- the CLI ----------------------------------------------------------------------------------------



def test_cli_archive_run_status_and_retention_dry_run(run, services, tmp_path):
    rng = random.Random(2)
    write(services.pool, [event(OLD - timedelta(hours=i), rng=rng) for i in range(6)])
    result = run("archive", "run")
    assert result.exit_code == 0, result.output
    assert "archived 1 chunk(s), 6 rows in 1 file(s)" in result.output
    status = run("archive", "status")
    assert status.exit_code == 0 and "live files:     1 (6 rows" in status.output
    store = ColdStore(tmp_path / "data" / "archive")
    assert [store.exists(f.path) for f in archive.list_files(services.pool)] == [True]
    dry = run("retention", "run", "--dry-run")
    assert dry.exit_code == 0 and "nothing has outlived its retention" in dry.output
    real = run("retention", "run")
    assert real.exit_code == 0 and "0 rows removed" in real.output


def test_cli_legal_holds_and_their_bad_input(run):
    placed = run("legal-hold", "add", "--user", "alice", "--start", "2024-01-01T00:00:00Z", "--reason", "LIT-7")
    assert placed.exit_code == 0 and "placed legal hold 1: time [2024-01-01T00:00:00+00:00" in placed.output
    listed = run("legal-hold", "list")
    assert "user alice" in listed.output and "LIT-7" in listed.output
    for args, message in [
        (("legal-hold", "add", "--reason", "r"), "hold on nothing"),
        (("legal-hold", "add", "--start", "31/01/2024", "--reason", "r"), "not an ISO 8601 time"),
        (("legal-hold", "add", "--start", "2024-01-31T00:00:00", "--reason", "r"), "no time zone"),
        (("legal-hold", "add", "--start", "2024-02-01T00:00:00Z", "--end", "2024-01-01T00:00:00Z", "--reason", "r"),
         "before its end"),
        (("legal-hold", "release", "77", "--reason", "r"), "no legal hold has id 77"),
        (("legal-hold", "release", "x", "--reason", "r"), "not a valid integer"),
    ]:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    released = run("legal-hold", "release", "1", "--reason", "settled")
    assert released.exit_code == 0 and "released legal hold 1" in released.output
    again = run("legal-hold", "release", "1", "--reason", "settled")
    assert again.exit_code == 2 and "already released" in again.output


def test_delete_erases_an_archived_event_and_a_hold_refuses_with_409(client, services, make_key):
    events = seed_and_archive(services)
    admin = make_key(Role.ADMIN)
    held, target = events[0], events[1]
    hold = legal_hold.place(services.pool, reason="case LIT-9", created_by="apikey:counsel",
                            start_time=held.timestamp, end_time=held.timestamp + timedelta(microseconds=1),
                            audit=self_audit.auditor("tests", lambda: NOW))
    refused = client.delete(f"/api/v1/logs/{held.event_id}", headers=admin, json={"reason": "GDPR request"})
    assert refused.status_code == 409 and error_of(refused)["code"] == "legal_hold"
    assert f"legal hold {hold.hold_id}" in error_of(refused)["message"]

    done = client.delete(f"/api/v1/logs/{target.event_id}", headers=admin, json={"reason": "GDPR request"})
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["erased"] == 1
    listed = client.get("/api/v1/logs?user_id=alice&limit=100", headers=admin).get_json()["events"]
    ids = {e["event_id"] for e in listed}
    assert str(target.event_id) not in ids and str(held.event_id) in ids
    exported = client.get("/api/v1/logs/export?user_id=alice&format=ndjson", headers=admin).get_data()
    assert str(target.event_id).encode() not in exported
    again = client.delete(f"/api/v1/logs/{target.event_id}", headers=admin, json={"reason": "GDPR request"})
    assert again.status_code == 404
