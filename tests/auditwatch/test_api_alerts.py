"""The alerting API: listing, acknowledging, silences and rules, with roles and bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from alerts import engine
from alerts.engine import AlertConfig
from alerts.lifecycle import fingerprint
from alerts.routing import load_routing
from alerts.rules import PACKAGED_RULES
from storage.auth import Role
from storage.events import EventRecord, Outcome
from storage.timescale import queries
from storage.timescale.queries import EventQuery
from storage.timescale.writer import EventWriter
from tests.auditwatch.conftest import error_of

FP = fingerprint("failed_login_burst", {"user_id": "victim"})


@pytest.fixture
def firing(services):
    """A firing failed-login-burst alert for `victim`, made by the real evaluator."""
    now = datetime.now(UTC)
    EventWriter(services.pool).write([EventRecord(
        event_id=uuid.uuid4(), timestamp=now - timedelta(seconds=30 - i), received_at=now, event_type="user_login",
        user_id="victim", outcome=Outcome.FAILURE) for i in range(12)])
    engine.evaluate(services.pool, AlertConfig(routing=load_routing()), now=now)
    return FP


def config_changes(services) -> list[dict]:
    page = queries.search(services.pool, EventQuery(event_types=("config_change",), limit=100))
    return [e.metadata for e in page.events]


def test_list_and_get_alerts(client, make_key, firing):
    viewer = make_key(Role.VIEWER)
    body = client.get("/api/v1/alerts?state=firing", headers=viewer).get_json()
    assert [a["fingerprint"] for a in body["alerts"]] == [FP]
    assert body["alerts"][0]["state"] == "firing" and body["alerts"][0]["count"] == 12
    one = client.get(f"/api/v1/alerts/{FP}", headers=viewer).get_json()
    assert one["history"][0]["to"] == "firing"
    assert client.get("/api/v1/alerts?state=resolved", headers=viewer).get_json()["alerts"] == []
    history = client.get(f"/api/v1/alert-history?fingerprint={FP}", headers=viewer).get_json()["history"]
    assert history[0]["rule_id"] == "failed_login_burst"


@pytest.mark.parametrize(("url", "code"), [
    ("/api/v1/alerts?state=burning", "invalid_state"),
    ("/api/v1/alerts?limit=0", "invalid_limit"),
    ("/api/v1/alerts?since=yesterday", "invalid_timestamp"),
    ("/api/v1/alerts?colour=red", "unknown_parameter"),
    ("/api/v1/alerts/not-a-fingerprint", "invalid_fingerprint"),
    ("/api/v1/alert-notifications?status=lost", "invalid_status"),
    ("/api/v1/alert-notifications?receiver=%3Cscript%3E", "invalid_receiver"),
    ("/api/v1/alert-silences?active=maybe", "invalid_parameter"),
])
def test_bad_queries_are_refused(client, make_key, url, code):
    response = client.get(url, headers=make_key(Role.ADMIN))
    # Malformed timestamps are 422, as everywhere in the API (ingest.validate); the rest 400.
    assert response.status_code == (422 if code == "invalid_timestamp" else 400)
    assert error_of(response)["code"] == code


def test_acknowledge(client, make_key, firing, services):
    admin = make_key(Role.ADMIN)
    assert client.post(f"/api/v1/alerts/{FP}/ack", json={}, headers=make_key(Role.AUDITOR)).status_code == 403
    response = client.post(f"/api/v1/alerts/{FP}/ack", json={"comment": "on it", "for_minutes": 30}, headers=admin)
    assert response.status_code == 200
    body = response.get_json()
    assert body["acknowledged_by"].startswith("apikey:") and body["acknowledged_until"]
    assert any(m.get("change") == "alert_acknowledged" for m in config_changes(services))
    for payload, code in [({"until": "2000-01-01T00:00:00Z"}, "invalid_field"),
                          ({"for_minutes": 0}, "invalid_field"), ({"for_minutes": True}, "invalid_field"),
                          ({"until": "soon"}, "invalid_timestamp"), ({"comment": "x" * 3000}, "invalid_field"),
                          ({"until": "2099-01-01T00:00:00Z", "for_minutes": 5}, "invalid_field"),
                          ({"by": "someone-else"}, "unknown_field")]:
        bad = client.post(f"/api/v1/alerts/{FP}/ack", json=payload, headers=admin)
        assert bad.status_code == (422 if code == "invalid_timestamp" else 400) and error_of(bad)["code"] == code
    missing = client.post(f"/api/v1/alerts/{'f' * 20}/ack", json={}, headers=admin)
    assert missing.status_code == 404 and "GET /api/v1/alerts" in error_of(missing)["message"]
    text = client.post(f"/api/v1/alerts/{FP}/ack", data="{}", headers=admin)
    assert text.status_code == 415


def test_silences_crud(client, make_key, firing, services):
    admin = make_key(Role.ADMIN)
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = client.post("/api/v1/alert-silences", headers=admin, json={
        "matchers": {"rule_id": "failed_login_burst"}, "ends_at": ends, "comment": "pentest until noon"})
    assert created.status_code == 201
    silence_id = created.get_json()["silence_id"]
    listed = client.get("/api/v1/alert-silences?active=true", headers=make_key(Role.VIEWER)).get_json()["silences"]
    assert [s["silence_id"] for s in listed] == [silence_id] and listed[0]["created_by"].startswith("apikey:")
    alerts = client.get("/api/v1/alerts", headers=admin).get_json()["alerts"]
    assert alerts[0]["silenced"] is True
    assert client.delete(f"/api/v1/alert-silences/{silence_id}", headers=admin).get_json()["active"] is False
    assert client.delete(f"/api/v1/alert-silences/{silence_id}", headers=admin).status_code == 404
    assert client.get("/api/v1/alert-silences?active=true", headers=admin).get_json()["silences"] == []
    changes = [m.get("change") for m in config_changes(services)]
    assert "silence_created" in changes and "silence_expired" in changes


@pytest.mark.parametrize(("payload", "code"), [
    ({"matchers": {}, "ends_at": "2099-01-01T00:00:00Z", "comment": "x"}, "invalid_field"),
    ({"matchers": {"rule_id": 5}, "ends_at": "2099-01-01T00:00:00Z", "comment": "x"}, "invalid_silence"),
    ({"matchers": {"rule_id": "r"}, "comment": "x"}, "invalid_field"),
    ({"matchers": {"rule_id": "r"}, "ends_at": "2099-01-01T00:00:00Z"}, "invalid_field"),
    ({"matchers": {"rule_id": "r"}, "ends_at": "2000-01-01T00:00:00Z", "comment": "x"}, "invalid_silence"),
    ({"matchers": {"rule_id": "r"}, "ends_at": "2099-01-01T00:00:00Z", "comment": "x",
      "starts_at": "2000-01-01T00:00:00Z"}, "invalid_silence"),
    ({"matchers": {"rule_id": "r"}, "ends_at": "2099-01-01", "comment": "x"}, "invalid_timestamp"),
    ({"matchers": {f"k{i}": "v" for i in range(30)}, "ends_at": "2099-01-01T00:00:00Z", "comment": "x"},
     "invalid_silence"),
])
def test_bad_silences_are_refused(client, make_key, payload, code):
    response = client.post("/api/v1/alert-silences", json=payload, headers=make_key(Role.ADMIN))
    assert response.status_code == (422 if code == "invalid_timestamp" else 400)
    assert error_of(response)["code"] == code


@pytest.mark.parametrize("matchers", [{"rule_id\u0000": "r"}, {"rule_id": "r\u0000"}, {"rule_id": "a\nb"}])
def test_control_characters_in_matchers_are_refused_not_a_server_error(client, make_key, matchers):
    # Found by the fuzz run: a NUL reached PostgreSQL (which cannot store it) and came back as a 503.
    ends = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = client.post("/api/v1/alert-silences", json={"matchers": matchers, "ends_at": ends, "comment": "x"},
                           headers=make_key(Role.ADMIN))
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_silence"
    assert "control characters" in error_of(response)["message"]


def test_rules_are_listed_and_edited_by_admins_only(client, make_key, settings, services):
    admin, viewer = make_key(Role.ADMIN), make_key(Role.VIEWER)
    assert client.get("/api/v1/alert-rules", headers=viewer).status_code == 403
    rules = {r["id"]: r for r in client.get("/api/v1/alert-rules", headers=admin).get_json()["rules"]}
    assert rules["failed_login_burst"]["packaged"] is True and rules["failed_login_burst"]["examples"] >= 2
    text = (PACKAGED_RULES / "failed_login_burst.yml").read_text().replace("at_least: 10", "at_least: 15")
    response = client.put("/api/v1/alert-rules/failed_login_burst", json={"yaml": text}, headers=admin)
    assert response.status_code == 200, response.get_json()
    saved = settings.resolved_data_dir() / "alert-rules" / "failed_login_burst.yml"
    assert saved.read_text() == text
    assert client.get("/api/v1/alert-rules/failed_login_burst", headers=admin).get_json()["packaged"] is False
    assert any(m.get("change") == "alert_rule_saved" for m in config_changes(services))
    assert client.delete("/api/v1/alert-rules/failed_login_burst", headers=admin).status_code == 200
    assert not saved.exists()
    packaged = client.delete("/api/v1/alert-rules/failed_login_burst", headers=admin)
    assert packaged.status_code == 409 and "enabled: false" in error_of(packaged)["message"]


def test_a_bad_rule_is_refused_with_its_line(client, make_key, settings):
    admin = make_key(Role.ADMIN)
    text = (PACKAGED_RULES / "failed_login_burst.yml").read_text().replace("window: 1m", "window: a minute")
    response = client.put("/api/v1/alert-rules/failed_login_burst", json={"yaml": text}, headers=admin)
    error = error_of(response)
    assert response.status_code == 422 and "failed_login_burst.yml:11: `threshold.window`" in error["message"]
    other = client.put("/api/v1/alert-rules/other_id", json={
        "yaml": (PACKAGED_RULES / "failed_login_burst.yml").read_text()}, headers=admin)
    assert other.status_code == 422 and "must equal" in error_of(other)["message"]
    assert client.put("/api/v1/alert-rules/Bad-Id", json={"yaml": "x"}, headers=admin).status_code == 400
    assert client.put("/api/v1/alert-rules/x", json={"yaml": 5}, headers=admin).status_code == 400
    assert not (settings.resolved_data_dir() / "alert-rules" / "failed_login_burst.yml").exists()


def test_notifications_and_attempts_are_queryable(client, make_key, services, firing, tmp_path):
    from alerts.dispatch import dispatch
    from alerts.notifiers import LocalSink
    now = datetime.now(UTC)
    engine.evaluate(services.pool, AlertConfig(routing=load_routing()), now=now + timedelta(seconds=15))
    dispatch(services.pool, {"local": LocalSink("local", path=tmp_path / "sink.jsonl")},
             now=now + timedelta(seconds=15))
    notes = client.get(f"/api/v1/alert-notifications?fingerprint={FP}", headers=make_key(Role.VIEWER)).get_json()
    assert [(n["receiver"], n["status"]) for n in notes["notifications"]] == [("local", "delivered")]
    assert notes["notifications"][0]["attempts"][0]["outcome"] == "delivered"
