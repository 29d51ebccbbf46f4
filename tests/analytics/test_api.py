"""The anomalies API: listing with filters and paging, feedback (audited, scoped), bad input and roles."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest

from analytics.detectors import ANOMALY_SCHEMA
from analytics.jobs import suppress
from storage.auth import Role
from storage.timescale import anomalies as store
from tests.analytics.conftest import T0


def _store(services) -> list[dict]:
    rows = []
    for i, (detector, etype, value, score) in enumerate([
        ("failed_login_burst", "user", "alice", 0.95), ("failed_login_burst", "source_ip", "185.220.1.2", 0.97),
        ("password_spraying", "source_ip", "45.155.1.1", 0.82), ("export_volume", "user", "bob", 0.64),
        ("new_context", "user", "carol", 0.71),
    ]):
        rows.append({"detector": detector, "detector_version": f"{detector}-v1-test", "entity_type": etype,
                     "entity_value": value, "window_start": T0 + timedelta(minutes=i),
                     "window_end": T0 + timedelta(minutes=i + 1), "score": score,
                     "severity": "critical" if score >= 0.9 else "high" if score >= 0.8 else
                     "medium" if score >= 0.7 else "low",
                     "explanation": orjson.dumps({"summary": f"{value} did something", "observed": {"count": 40},
                                                  "expected": {"count": 0.01}, "features": [], "peers": {}}).decode(),
                     "sample_event_ids": [str(uuid.uuid4())]})
    store.upsert(services.pool, pl.DataFrame(rows, schema=ANOMALY_SCHEMA), detected_at=T0 + timedelta(hours=1))
    return rows


@pytest.fixture
def stored(services):
    return _store(services)


@pytest.fixture(scope="module")
def shared_stored(shared_services):
    return _store(shared_services)


def test_list_returns_explained_anomalies_newest_first(client, make_key, stored):
    response = client.get("/api/v1/anomalies", headers=make_key(Role.VIEWER))
    assert response.status_code == 200
    found = response.get_json()["anomalies"]
    assert [a["entity_value"] for a in found] == ["carol", "bob", "45.155.1.1", "185.220.1.2", "alice"]
    first = found[0]
    assert set(first) == {"anomaly_id", "detector", "detector_version", "entity_type", "entity_value", "window_start",
                          "window_end", "peak_at", "windows", "score", "severity", "explanation", "sample_event_ids",
                          "detected_at"}
    assert first["explanation"]["summary"] == "carol did something"
    assert response.get_json()["next"] is None


@pytest.mark.parametrize("query, expected", [
    ("detector=failed_login_burst", {"alice", "185.220.1.2"}),
    ("detector=failed_login_burst&detector=export_volume", {"alice", "185.220.1.2", "bob"}),
    ("entity_type=source_ip", {"185.220.1.2", "45.155.1.1"}),
    ("entity_type=user&entity_value=bob", {"bob"}),
    ("min_score=0.9", {"alice", "185.220.1.2"}),
    ("severity=high&severity=medium", {"45.155.1.1", "carol"}),
    (f"start_time={(T0 + timedelta(minutes=2)).isoformat().replace('+00:00', 'Z')}", {"45.155.1.1", "bob", "carol"}),
    (f"end_time={(T0 + timedelta(minutes=1)).isoformat().replace('+00:00', 'Z')}", {"alice"}),
])
def test_list_filters(shared_client, role_keys, shared_stored, query, expected):
    response = shared_client.get(f"/api/v1/anomalies?{query}", headers=role_keys[Role.VIEWER])
    assert response.status_code == 200, response.get_json()
    assert {a["entity_value"] for a in response.get_json()["anomalies"]} == expected


def test_keyset_paging_walks_every_anomaly_once(client, make_key, stored):
    headers, seen, url = make_key(Role.VIEWER), [], "/api/v1/anomalies?limit=2"
    while url:
        body = client.get(url, headers=headers).get_json()
        seen += [a["anomaly_id"] for a in body["anomalies"]]
        url = f"/api/v1/anomalies?limit=2&cursor={body['next']}" if body["next"] else None
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("query, code", [
    ("start_time=yesterday", "invalid_timestamp"),
    ("min_score=2", "invalid_min_score"), ("min_score=abc", "invalid_min_score"),
    ("severity=urgent", "invalid_severity"), ("entity_type=host", "invalid_entity_type"),
    ("detector=DROP%20TABLE", "invalid_detector"), ("limit=0", "invalid_limit"), ("limit=100000", "invalid_limit"),
    ("cursor=not-a-cursor", "invalid_cursor"), ("bogus=1", "unknown_parameter"),
    ("start_time=2024-03-02T00:00:00Z&end_time=2024-03-01T00:00:00Z", "invalid_range"),
    ("entity_value=a%00b", "control_characters"), ("min_score=1&min_score=0", "repeated_parameter"),
])
def test_list_refuses_bad_input_with_a_clear_error(shared_client, role_keys, query, code):
    response = shared_client.get(f"/api/v1/anomalies?{query}", headers=role_keys[Role.VIEWER])
    body = response.get_json()
    assert set(body) == {"code", "message", "field"} and body["message"]
    assert (response.status_code in (400, 422), body["code"]) == (True, code)


def test_feedback_is_stored_audited_and_honoured(client, make_key, stored, services, conn):
    anomaly = client.get("/api/v1/anomalies?entity_value=alice", headers=make_key(Role.VIEWER)).get_json()[
        "anomalies"][0]
    auditor = make_key(Role.AUDITOR, "analyst-1")
    response = client.post("/api/v1/anomalies/feedback", headers=auditor,
                           json={"anomaly_id": anomaly["anomaly_id"], "reason": "red-team exercise", "days": 7})
    assert response.status_code == 201, response.get_json()
    feedback = response.get_json()
    assert (feedback["detector"], feedback["entity_type"], feedback["entity_value"]) == (
        "failed_login_burst", "user", "alice")
    assert feedback["created_by"] == "apikey:analyst-1" and feedback["until"] is not None
    audit = conn.execute("SELECT user_id, event_type, metadata FROM audit_events WHERE resource_id = %s",
                         (f"anomaly_feedback:{feedback['feedback_id']}",)).fetchall()
    assert len(audit) == 1 and audit[0][:2] == ("apikey:analyst-1", "config_change")
    assert audit[0][2]["change"] == "anomaly_feedback" and audit[0][2]["reason"] == "red-team exercise"
    listed = client.get("/api/v1/anomalies/feedback", headers=make_key(Role.VIEWER)).get_json()["feedback"]
    assert [f["feedback_id"] for f in listed] == [feedback["feedback_id"]]
    # What the scoring job applies: alice's burst anomalies are dropped, the source address's are not.
    rerun = pl.DataFrame([{**r, "window_start": r["window_start"] + timedelta(days=1)} for r in stored],
                         schema=ANOMALY_SCHEMA)
    kept, dropped = suppress(rerun, store.suppressions(services.pool, now=T0 + timedelta(days=1)))
    assert dropped == 1 and "alice" not in set(kept["entity_value"])


def test_feedback_scopes_a_detector_or_an_entity_without_an_anomaly(client, make_key):
    admin = make_key(Role.ADMIN)
    by_detector = client.post("/api/v1/anomalies/feedback", headers=admin,
                              json={"scope": "detector", "detector": "multivariate_outlier", "days": 90})
    assert by_detector.status_code == 201
    assert by_detector.get_json()["entity_type"] is None and by_detector.get_json()["until"] is not None
    by_entity = client.post("/api/v1/anomalies/feedback", headers=admin,
                            json={"scope": "entity", "entity_type": "source_ip", "entity_value": "10.0.0.5"})
    assert by_entity.status_code == 201 and by_entity.get_json()["detector"] is None


@pytest.mark.parametrize("body, status, code", [
    ({"anomaly_id": "nope"}, 400, "invalid_uuid"),
    ({"anomaly_id": str(uuid.uuid4())}, 404, "not_found"),
    ({"detector": "x", "days": 0}, 400, "invalid_field"),
    ({"detector": "x", "days": True}, 400, "invalid_field"),
    ({"detector": "x", "days": None}, 400, "invalid_field"),  # a false positive never lasts for ever
    ({"detector": "x", "days": 91}, 400, "invalid_field"),
    ({"detector": "x", "days": 365}, 400, "invalid_field"),
    ({"detector": "x", "scope": "everything"}, 400, "invalid_field"),
    ({"detector": "x", "verdict": "maybe"}, 400, "invalid_field"),
    ({"entity_type": "user"}, 400, "invalid_field"),
    ({"entity_type": "host", "entity_value": "h"}, 400, "invalid_field"),
    ({"reason": "no scope"}, 400, "missing_scope"),
    ({"detector": "x", "sql": "DROP"}, 400, "unknown_field"),
    ([1, 2], 400, "wrong_type"),
])
def test_feedback_refuses_bad_bodies(shared_client, role_keys, body, status, code):
    response = shared_client.post("/api/v1/anomalies/feedback", headers=role_keys[Role.AUDITOR], json=body)
    assert (response.status_code, response.get_json()["code"]) == (status, code)


def test_feedback_needs_json_and_the_triage_permission(client, make_key):
    assert client.post("/api/v1/anomalies/feedback", headers=make_key(Role.AUDITOR), data="x").status_code == 415
    for role in (Role.VIEWER, Role.SYSTEM):
        response = client.post("/api/v1/anomalies/feedback", headers=make_key(role), json={"detector": "x"})
        assert (response.status_code, response.get_json()["code"]) == (403, "forbidden")
    assert client.get("/api/v1/anomalies", headers=make_key(Role.SYSTEM)).status_code == 403
    assert client.get("/api/v1/anomalies").status_code == 401


# -- bounded suppression (issue 14 #9) -------------------------------------------------------------------------

def test_an_auditor_cannot_switch_a_detector_off(client, make_key, services):
    auditor = make_key(Role.AUDITOR, "insider")
    response = client.post("/api/v1/anomalies/feedback", headers=auditor,
                           json={"scope": "detector", "detector": "export_volume", "days": 30})
    assert (response.status_code, response.get_json()["code"]) == (403, "admin_required")
    assert "only an admin" in response.get_json()["message"]
    assert store.list_feedback(services.pool) == []
    # The same auditor may still triage one entity under that detector, for a bounded time.
    scoped = client.post("/api/v1/anomalies/feedback", headers=auditor, json={
        "detector": "export_volume", "entity_type": "user", "entity_value": "bob", "days": 90})
    assert scoped.status_code == 201 and scoped.get_json()["until"] is not None


@pytest.mark.parametrize("entity_type, entity_value",
                         [("user", "apikey:insider"), ("user_ip", "apikey:insider|10.0.0.9")])
@pytest.mark.parametrize("scope", ["entity", "entity_detector"])
def test_nobody_suppresses_findings_about_themselves(client, make_key, services, entity_type, entity_value, scope):
    for role in (Role.AUDITOR, Role.ADMIN):
        key = make_key(role, "insider") if role is Role.AUDITOR else make_key(role)
        body = {"scope": scope, "detector": "export_volume", "entity_type": entity_type, "entity_value": entity_value}
        if role is Role.ADMIN:  # an admin may file it about someone else
            assert client.post("/api/v1/anomalies/feedback", headers=key, json=body).status_code == 201
        else:
            response = client.post("/api/v1/anomalies/feedback", headers=key, json=body)
            assert (response.status_code, response.get_json()["code"]) == (403, "self_suppression")


def test_no_scope_hides_anomalies_about_its_filer(services):
    """Even an admin's detector-wide suppression keeps reporting the admin's own anomalies."""
    now = T0 + timedelta(days=1)
    store.add_feedback(services.pool, anomaly_id=None, detector="export_volume", entity_type=None, entity_value=None,
                       verdict="false_positive", until=now + timedelta(days=10), reason="noisy",
                       created_by="apikey:root")
    found = pl.DataFrame([
        {"detector": "export_volume", "entity_type": etype, "entity_value": value, "window_start": now,
         "window_end": now + timedelta(hours=1), "score": 0.9, "severity": "critical", "detector_version": "v",
         "explanation": "{}", "sample_event_ids": []}
        for etype, value in [("user", "bob"), ("user", "apikey:root"), ("user_ip", "apikey:root|10.1.1.1"),
                             ("user_ip", "apikey:rooted|10.1.1.1")]], schema=ANOMALY_SCHEMA)
    kept, dropped = suppress(found, store.suppressions(services.pool, now=now))
    assert dropped == 2
    assert set(kept["entity_value"]) == {"apikey:root", "apikey:root|10.1.1.1"}


def test_the_database_refuses_unbounded_false_positives(services):
    import psycopg

    for until in (None, datetime.now(UTC) + timedelta(days=92)):
        with pytest.raises(psycopg.errors.CheckViolation):
            store.add_feedback(services.pool, anomaly_id=None, detector="x", entity_type=None, entity_value=None,
                               verdict="false_positive", until=until, reason="", created_by="apikey:x")
    confirmed = store.add_feedback(services.pool, anomaly_id=None, detector="x", entity_type=None, entity_value=None,
                                   verdict="true_positive", until=None, reason="", created_by="apikey:x")
    assert confirmed.until is None
