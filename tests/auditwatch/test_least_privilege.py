"""The API and writer run as the least-privilege app role of storage/timescale/roles.sql (issue 14 #2):
everything they do works, and an event cannot be changed or deleted through their connection."""

from __future__ import annotations

import random

import psycopg
import pytest

from auditwatch.app import create_app
from auditwatch.services import Services
from storage.auth import Role
from storage.timescale import catalog, verify
from tests.auditwatch.conftest import event


@pytest.fixture
def as_app_role(settings, app_role_url):
    """(client, services) of an app whose pool connects as a fresh app role."""
    services = Services.open(settings, url=app_role_url)
    app = create_app(settings, services=services)
    app.testing = True
    try:
        yield app.test_client(), services
    finally:
        services.close()


def test_the_api_works_as_the_app_role_and_cannot_rewrite_history(as_app_role, pool):
    client, services = as_app_role
    _, secret = catalog.create_key(services.pool, "admin-1", Role.ADMIN, "tests")
    admin = {"Authorization": f"Bearer {secret}"}
    assert client.post("/api/v1/users", json={"user_id": "alice"}, headers=admin).status_code == 201
    made = client.post("/api/v1/keys", json={"name": "ingest", "role": "system"}, headers=admin)
    assert made.status_code == 201, made.get_json()
    system = {"Authorization": f"Bearer {made.get_json()['key']}"}
    batch = [event("alice", metadata={"n": i}) for i in range(6)]
    assert client.post("/api/v1/logs/batch", json=batch, headers=system).status_code in (200, 201, 207)
    assert client.get("/api/v1/logs?limit=10", headers=admin).status_code == 200
    hold = client.post("/api/v1/legal-holds", headers=admin, json={
        "user_id": "bob", "start_time": "2024-01-01T00:00:00Z", "reason": "litigation hold LIT-7"})
    assert hold.status_code == 201, hold.get_json()
    erased = client.delete(f"/api/v1/logs/{batch[1]['event_id']}", json={"reason": "GDPR art. 17"}, headers=admin)
    assert erased.status_code == 200, erased.get_json()
    assert client.delete("/api/v1/keys/ingest", headers=admin).status_code == 200
    services.committer.close()

    with services.pool.connection() as c, pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        c.execute("UPDATE audit_events SET user_id = 'mallory' WHERE event_id = %s", (batch[2]["event_id"],))
    assert refused.value.sqlstate == "42501"
    with services.pool.connection() as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("DELETE FROM audit_events WHERE event_id = %s", (batch[2]["event_id"],))
    report = verify.verify(pool, trusted_keys=[])
    assert report.ok and report.erased == 1, report.problems


def test_the_app_role_erases_an_archived_event(as_app_role, pool, tmp_path):
    """Cold erasure needs no owner rights: the file swap, tombstones and removal link go through the
    app role's grants (integrity_erase_archived), and verify passes from the public key alone."""
    from datetime import UTC, datetime, timedelta

    from storage.timescale import archive, self_audit
    from storage.timescale.writer import EventWriter
    from tests.storage.cold_data import event as old_event

    client, services = as_app_role
    now = datetime.now(UTC)
    rng = random.Random(2)
    events = [old_event(now - timedelta(days=100, minutes=i), rng=rng) for i in range(5)]
    EventWriter(pool).write(events)  # sealed, so verify recomputes their batch from the rewritten file
    assert archive.run(pool, services.archive, now=now, hot_days=90,
                       audit=self_audit.auditor("tests", lambda: now)).rows == 5
    _, secret = catalog.create_key(services.pool, "admin-1", Role.ADMIN, "tests")
    erased = client.delete(f"/api/v1/logs/{events[2].event_id}", json={"reason": "GDPR art. 17"},
                           headers={"Authorization": f"Bearer {secret}"})
    assert erased.status_code == 200, erased.get_json()
    services.committer.close()
    report = verify.verify(pool, trusted_keys=[], cold=verify.cold_reader(pool, services.archive))
    assert report.ok, report.problems
    assert any("erased from" in n for n in report.notes), report.notes
