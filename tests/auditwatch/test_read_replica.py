"""The read replica (issue 16, Reads): a real hot standby of the test cluster, made with pg_basebackup and
streaming on loopback. Reads go to it; writes, erasure and the audit records of reads stay on the primary;
its lag shows on /readyz, /metrics and the ops page; while it is down reads answer 503 and writes go on.

Which server answered is proven by pausing the standby's replay: an event written after the pause is on the
primary only, so a read that cannot see it was served by the replica.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from auditwatch import settings as settings_mod
from auditwatch.app import create_app
from dashboard.context import EXTENSION
from dashboard.pages import ops
from storage import location
from storage.auth import Role
from storage.timescale import catalog
from storage.timescale.standby import LocalStandby
from tests.auditwatch.conftest import event
from tests.conftest import free_port, opened_services


@pytest.fixture(scope="module")
def standby(session_cluster) -> Iterator[LocalStandby]:
    if session_cluster is None:
        pytest.skip("needs the tests' own local cluster to copy (AUDITWATCH_TEST_DATABASE_URL is set)")
    # Not under pytest's tmp_path: that is private to its user, and the standby runs as `postgres` when we are root.
    root = Path(tempfile.mkdtemp(prefix="aw-standby-"))
    root.chmod(0o755)
    replica = LocalStandby(root / "standby", port=free_port(), primary=session_cluster)
    replica.up()
    try:
        yield replica
    finally:
        replica.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def replicated(db_url, standby, tmp_path):
    """(app, services, replica URL) on a fresh database, reads from the standby."""
    dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    standby.wait_for(dbname)
    read_url = standby.url_for(dbname)
    settings = settings_mod.load(config_file=None, environ={}, overrides={
        "database_url": db_url, "read_database_url": read_url, "data_dir": str(tmp_path / "data"),
        "pool_min": 1, "pool_max": 4, "read_pool_max": 2})
    with opened_services(settings) as services:
        app = create_app(settings, services=services)
        app.testing = True
        catalog.register_users(services.pool, [{"user_id": "alice"}], "tests")
        yield app, services, read_url


def _key(services, role: str) -> dict[str, str]:
    _, secret = catalog.create_key(services.pool, f"{role}-{time.monotonic_ns()}", Role(role), "tests")
    return {"Authorization": f"Bearer {secret}"}


def _replay(read_url: str, action: str) -> None:
    with psycopg.connect(read_url, autocommit=True) as conn:
        conn.execute({"pause": "SELECT pg_wal_replay_pause()", "resume": "SELECT pg_wal_replay_resume()"}[action])


def _until(predicate, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _on_replica(read_url: str, event_id: str) -> bool:
    with psycopg.connect(read_url) as conn:
        return conn.execute("SELECT 1 FROM audit_events WHERE event_id = %s", (event_id,)).fetchone() is not None


def test_reads_come_from_the_replica_and_writes_erasure_and_read_audits_go_to_the_primary(replicated, conn):
    app, services, read_url = replicated
    client = app.test_client()
    system, admin = _key(services, "system"), _key(services, "admin")
    seen = event("alice")
    assert client.post("/api/v1/logs", json=seen, headers=system).status_code == 201
    assert _until(lambda: _on_replica(read_url, seen["event_id"])), "the standby never replayed the first event"

    _replay(read_url, "pause")
    try:
        unseen = event("alice")
        # A write while the replica is paused: on the primary at once.
        assert client.post("/api/v1/logs", json=unseen, headers=system).status_code == 201
        assert conn.execute("SELECT count(*) FROM audit_events WHERE event_id = %s",
                            (unseen["event_id"],)).fetchone()[0] == 1
        assert not _on_replica(read_url, unseen["event_id"])

        # The query API, one event and a page, and an export: all from the replica, which lacks the new event.
        assert client.get(f"/api/v1/logs/{seen['event_id']}", headers=admin).status_code == 200
        assert client.get(f"/api/v1/logs/{unseen['event_id']}", headers=admin).status_code == 404
        listed = [e["event_id"] for e in client.get("/api/v1/logs?user_id=alice", headers=admin).get_json()["events"]]
        assert seen["event_id"] in listed and unseen["event_id"] not in listed
        exported = client.get("/api/v1/logs/export?user_id=alice&format=ndjson", headers=admin).get_data(as_text=True)
        assert seen["event_id"] in exported and unseen["event_id"] not in exported

        # The audit records of those reads are written to the primary (the replica cannot take them).
        audits = conn.execute("SELECT metadata->>'route', resource_id FROM audit_events "
                              "WHERE event_type = 'query_executed' ORDER BY timestamp").fetchall()
        assert [r[0] for r in audits] == ["get_event", "get_event", "list_events"]
        assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'export_requested'"
                            ).fetchone()[0] == 1

        # The dashboard and the data API read there too; sign-in and its changes use the primary.
        context = app.extensions[EXTENSION]
        assert context.reads is services.reads and context.pool is services.pool
        with context.reads.connection() as c:
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        with context.pool.connection() as c:
            assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        store = location.from_environ({"AUDITWATCH_DATABASE_URL": "postgresql:///primary",
                                       "AUDITWATCH_READ_DATABASE_URL": read_url})
        assert store.reads == read_url and store.database_url == "postgresql:///primary"

        # Erasure works on the primary: it finds the event the replica has not seen yet.
        erased = client.delete(f"/api/v1/logs/{unseen['event_id']}", json={"reason": "test"}, headers=admin)
        assert erased.status_code == 200, erased.get_json()
    finally:
        _replay(read_url, "resume")
    assert _until(lambda: client.get(f"/api/v1/logs/{seen['event_id']}", headers=admin).status_code == 200)


def test_the_replicas_lag_shows_on_readyz_metrics_and_the_ops_page(replicated):
    app, services, read_url = replicated
    client = app.test_client()
    system = _key(services, "system")
    assert _until(lambda: client.get("/readyz").get_json()["read_replica"]["lag_seconds"] == 0.0)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["read_replica"]["ok"] is True

    _replay(read_url, "pause")
    try:
        client.post("/api/v1/logs", json=event("alice"), headers=system)
        time.sleep(1.5)
        client.post("/api/v1/logs", json=event("alice"), headers=system)
        behind = _until(lambda: (client.get("/readyz").get_json()["read_replica"]["lag_seconds"] or 0) >= 1.0)
        assert behind, client.get("/readyz").get_json()
        lag = client.get("/readyz").get_json()["read_replica"]["lag_seconds"]
        metrics = client.get("/metrics").get_data(as_text=True)
        gauge = [line for line in metrics.splitlines() if line.startswith("auditwatch_read_replica_lag_seconds")]
        assert gauge and float(gauge[0].split()[-1]) >= lag, gauge
        assert "auditwatch_read_replica_up 1.0" in metrics
        with app.test_request_context("/dashboard/ops"):
            tile = str(ops._replica_tile())
        assert "Read replica lag" in tile and " s" in tile
    finally:
        _replay(read_url, "resume")
    assert _until(lambda: client.get("/readyz").get_json()["read_replica"]["lag_seconds"] == 0.0)


def test_while_the_replica_is_down_reads_answer_503_and_writes_go_on(replicated, standby, conn):
    app, services, _read_url = replicated
    client = app.test_client()
    system, admin = _key(services, "system"), _key(services, "admin")
    standby.down()
    try:
        read = client.get("/api/v1/logs?user_id=alice", headers=admin)
        assert read.status_code == 503, read.get_data(as_text=True)
        body = read.get_json()
        assert body["code"] == "replica_unavailable" and "read replica" in body["message"]
        assert read.headers["Retry-After"] == "5"
        written = event("alice")
        assert client.post("/api/v1/logs", json=written, headers=system).status_code == 201
        assert conn.execute("SELECT count(*) FROM audit_events WHERE event_id = %s",
                            (written["event_id"],)).fetchone()[0] == 1
        ready = client.get("/readyz")  # the process can still take events: it stays ready
        assert ready.status_code == 200
        assert ready.get_json()["read_replica"]["ok"] is False
        assert "auditwatch_read_replica_up 0.0" in client.get("/metrics").get_data(as_text=True)
        # A server started while its replica is down starts (and serves writes) all the same.
        with opened_services(services.settings) as other:
            assert other.replica_status().ok is False
    finally:
        standby.up()
    assert _until(lambda: client.get("/api/v1/logs?user_id=alice", headers=admin).status_code == 200, 60)
