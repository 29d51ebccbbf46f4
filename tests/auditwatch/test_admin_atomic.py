"""Issue 14 #12: an admin change and its audit record commit together or not at all.

The audit write is made to fail by a trigger on ``audit_events`` in the test database (no mock): it
refuses any row written by the admin key under test. Each change must then not have happened either.
Without the trigger, each change writes both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.rules import PACKAGED_RULES
from storage.auth import Role
from storage.timescale import catalog, dashboards, self_audit
from tests.auditwatch.test_api_alerts import FP, firing  # noqa: F401 - the fixture, reused

ADMIN = "atomic-admin"

_FAIL_AUDIT = """
CREATE FUNCTION aw_test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id = %s OR NEW.source = 'auditwatch-cli' THEN
        RAISE EXCEPTION 'injected: the audit record cannot be stored';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER aw_test_refuse_audit BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION aw_test_refuse_audit();
"""


@pytest.fixture
def admin(make_key) -> dict[str, str]:
    return make_key(Role.ADMIN, ADMIN)


@pytest.fixture
def audit_fails(conn: psycopg.Connection) -> None:
    """From here on, every audit record of ADMIN (and of the CLI) fails to store."""
    conn.execute(_FAIL_AUDIT.replace("%s", f"'apikey:{ADMIN}'"))
    conn.commit()


def audited(conn: psycopg.Connection, event_type: str, resource_id: str) -> int:
    return conn.execute("SELECT count(*) FROM audit_events WHERE event_type = %s AND resource_id = %s "
                        "AND user_id = %s", (event_type, resource_id, f"apikey:{ADMIN}")).fetchone()[0]


def failed(response) -> bool:
    return response.status_code >= 500


def rule_text(threshold: int) -> str:
    return (PACKAGED_RULES / "failed_login_burst.yml").read_text().replace("at_least: 10", f"at_least: {threshold}")


# -- the change does not happen when its record cannot be stored -------------------------------------------

def test_key_create_and_revoke(client, admin, conn, services, audit_fails):
    assert failed(client.post("/api/v1/keys", headers=admin, json={"name": "ghost", "role": "admin"}))
    assert not catalog.key_exists(services.pool, "ghost")
    assert conn.execute("SELECT count(*) FROM users WHERE user_id = 'apikey:ghost'").fetchone()[0] == 0
    catalog.create_key(services.pool, "victim", Role.VIEWER, "tests")
    assert failed(client.delete("/api/v1/keys/victim", headers=admin))
    assert conn.execute("SELECT revoked_at FROM api_keys WHERE name = 'victim'").fetchone() == (None,)


def test_users_and_event_types(client, admin, conn, audit_fails):
    assert failed(client.post("/api/v1/users", headers=admin, json={"user_id": "mallory"}))
    assert conn.execute("SELECT count(*) FROM users WHERE user_id = 'mallory'").fetchone()[0] == 0
    assert failed(client.post("/api/v1/event-types", headers=admin, json={"event_type": "vpn.connect"}))
    assert conn.execute("SELECT count(*) FROM event_types WHERE event_type = 'vpn.connect'").fetchone()[0] == 0


def test_retention(client, admin, services, audit_fails):
    before = catalog.get_setting(services.pool, "retention")
    assert failed(client.put("/api/v1/retention", headers=admin, json={"hot_days": 1}))
    assert catalog.get_setting(services.pool, "retention") == before


def test_silences_and_acknowledgement(client, admin, conn, services, firing):  # noqa: F811
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    live = client.post("/api/v1/alert-silences", headers=admin, json={
        "matchers": {"rule_id": "other"}, "ends_at": ends, "comment": "made before the fault"}).get_json()
    conn.execute(_FAIL_AUDIT.replace("%s", f"'apikey:{ADMIN}'"))
    conn.commit()
    assert failed(client.post("/api/v1/alert-silences", headers=admin, json={
        "matchers": {"rule_id": "failed_login_burst"}, "ends_at": ends, "comment": "hide the burst"}))
    assert conn.execute("SELECT count(*) FROM alert_silences").fetchone()[0] == 1
    assert failed(client.delete(f"/api/v1/alert-silences/{live['silence_id']}", headers=admin))
    assert conn.execute("SELECT expired_at FROM alert_silences").fetchone() == (None,)
    assert failed(client.post(f"/api/v1/alerts/{FP}/ack", headers=admin, json={"comment": "quiet"}))
    assert conn.execute("SELECT acknowledged_by FROM alerts WHERE fingerprint = %s", (FP,)).fetchone() == (None,)


def test_rule_files(client, admin, settings, conn):
    saved = settings.resolved_data_dir() / "alert-rules" / "failed_login_burst.yml"
    assert client.put("/api/v1/alert-rules/failed_login_burst", headers=admin,
                      json={"yaml": rule_text(15)}).status_code == 200
    conn.execute(_FAIL_AUDIT.replace("%s", f"'apikey:{ADMIN}'"))
    conn.commit()
    assert failed(client.put("/api/v1/alert-rules/failed_login_burst", headers=admin, json={"yaml": rule_text(99)}))
    assert saved.read_text() == rule_text(15)
    assert failed(client.delete("/api/v1/alert-rules/failed_login_burst", headers=admin))
    assert saved.read_text() == rule_text(15)
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary file left behind


def test_feedback(client, admin, conn, audit_fails):
    assert failed(client.post("/api/v1/anomalies/feedback", headers=admin, json={
        "detector": "login_rate", "entity_type": "user", "entity_value": "bob", "reason": "known batch job"}))
    assert conn.execute("SELECT count(*) FROM anomaly_feedback").fetchone()[0] == 0


def test_cli_keys_and_users(run, conn, audit_fails):
    with pytest.raises(psycopg.errors.RaiseException):
        run("keys", "create", "--role", "admin", "--name", "cli-ghost")
    assert conn.execute("SELECT count(*) FROM api_keys WHERE name = 'cli-ghost'").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.RaiseException):
        run("users", "add", "cli-mallory")
    assert conn.execute("SELECT count(*) FROM users WHERE user_id = 'cli-mallory'").fetchone()[0] == 0


# -- the normal path still writes both ---------------------------------------------------------------------

def test_every_change_writes_its_record(client, admin, conn, settings, firing):  # noqa: F811
    key = client.post("/api/v1/keys", headers=admin, json={"name": "fine", "role": "viewer"}).get_json()
    assert audited(conn, "api_key_created", key["key_id"]) == 1
    assert client.delete("/api/v1/keys/fine", headers=admin).status_code == 200
    assert audited(conn, "api_key_revoked", key["key_id"]) == 1
    assert client.post("/api/v1/users", headers=admin, json={"user_id": "dave"}).status_code == 201
    assert client.post("/api/v1/users", headers=admin, json={"user_id": "dave"}).status_code == 200
    assert audited(conn, "config_change", "dave") == 1  # registering again changes nothing, records nothing
    assert client.post("/api/v1/event-types", headers=admin, json={"event_type": "vpn.connect"}).status_code == 201
    assert audited(conn, "config_change", "vpn.connect") == 1
    assert client.put("/api/v1/retention", headers=admin, json={"hot_days": 30}).status_code == 200
    assert audited(conn, "config_change", "retention") == 1
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    silence = client.post("/api/v1/alert-silences", headers=admin, json={
        "matchers": {"rule_id": "x"}, "ends_at": ends, "comment": "why"}).get_json()["silence_id"]
    assert client.delete(f"/api/v1/alert-silences/{silence}", headers=admin).status_code == 200
    assert audited(conn, "config_change", str(silence)) == 2
    assert client.post(f"/api/v1/alerts/{FP}/ack", headers=admin, json={}).status_code == 200
    assert audited(conn, "config_change", FP) == 1
    assert client.put("/api/v1/alert-rules/failed_login_burst", headers=admin,
                      json={"yaml": rule_text(15)}).status_code == 200  # overrides the packaged rule
    assert client.delete("/api/v1/alert-rules/failed_login_burst", headers=admin).status_code == 200
    assert audited(conn, "config_change", "failed_login_burst") == 2
    feedback = client.post("/api/v1/anomalies/feedback", headers=admin, json={
        "detector": "login_rate", "entity_type": "user", "entity_value": "bob", "reason": "batch job"})
    assert feedback.status_code == 201, feedback.get_json()
    assert audited(conn, "config_change", f"anomaly_feedback:{feedback.get_json()['feedback_id']}") == 1
    # Every record is sealed in the integrity chain like any other event.
    assert conn.execute("SELECT count(*) FROM audit_events WHERE user_id = %s AND batch_seq IS NULL",
                        (f"apikey:{ADMIN}",)).fetchone()[0] == 0


def test_saved_dashboards(services, conn):
    """The dashboard's create / save / delete (dashboard.pages.custom) store their record with the change."""
    def audit(change: str):
        return lambda saved: self_audit.record("config_change", f"apikey:{ADMIN}", now=datetime.now(UTC),
                                               resource_id=str(saved.dashboard_id), metadata={"change": change})

    kept = dashboards.create(services.pool, owner="apikey:x", name="kept", config={}, audit=audit("created"))
    assert audited(conn, "config_change", str(kept.dashboard_id)) == 1
    conn.execute(_FAIL_AUDIT.replace("%s", f"'apikey:{ADMIN}'"))
    with pytest.raises(psycopg.errors.RaiseException):
        dashboards.create(services.pool, owner="apikey:x", name="ghost", config={}, audit=audit("created"))
    with pytest.raises(psycopg.errors.RaiseException):
        dashboards.save(services.pool, kept.dashboard_id, owner="apikey:x", version=kept.version, name="renamed",
                        audit=audit("saved"))
    with pytest.raises(psycopg.errors.RaiseException):
        dashboards.delete(services.pool, kept.dashboard_id, owner="apikey:x", audit=audit("deleted"))
    assert [d.name for d in dashboards.visible_to(services.pool, "apikey:x")] == ["kept"]
