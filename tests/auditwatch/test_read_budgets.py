"""Issue 14 #10: reads are bounded, and no viewer can starve ingest.

Reads run under a statement_timeout on their own pool, exports on a small pool of their own,
include_total stops counting at max_count and says so, and a full hot page keeps the listing out of
the cold tier.
"""

from __future__ import annotations

import psycopg
import pytest

from auditwatch.app import create_app
from storage.auth import Role
from storage.timescale import archive
from tests.auditwatch.conftest import error_of, event
from tests.auditwatch.test_api_archive import seed_and_archive
from tests.conftest import opened_services


@pytest.fixture
def app_of(settings):
    """An app (and its Services) with changed settings, on the test's database."""
    made = []

    def make(**changes):
        changed = settings.replace(**changes)
        services = opened_services(changed)
        svc = services.__enter__()
        made.append(services)
        app = create_app(changed, services=svc)
        app.testing = True
        return app, svc

    yield make
    for services in made:
        services.__exit__(None, None, None)


def _ingest_key(svc, role=Role.SYSTEM):
    from storage.timescale import catalog
    _, secret = catalog.create_key(svc.pool, f"k-{role.value}", role, "tests")
    return {"Authorization": f"Bearer {secret}"}


def test_reads_have_a_time_budget_and_ingest_has_none(app_of):
    _, svc = app_of(read_statement_timeout=0.3)
    with svc.reads.connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("300ms",)
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(3)")
    with svc.pool.connection() as conn:  # the writer's and ingest's pool
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        conn.execute("SELECT pg_sleep(0.5)")
    with svc.exports.connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10min",)
    assert svc.reads is not svc.pool and svc.exports is not svc.pool and svc.exports is not svc.reads


def test_include_total_stops_at_max_count_and_says_so(app_of, users):
    app, svc = app_of(max_count=5)
    client = app.test_client()
    users("many", "few")
    ingest, viewer = _ingest_key(svc), _ingest_key(svc, Role.VIEWER)
    for user, n in (("many", 8), ("few", 3)):
        for _ in range(n):
            assert client.post("/api/v1/logs", json=event(user), headers=ingest).status_code == 201
    many = client.get("/api/v1/logs?user_id=many&limit=2&include_total=true", headers=viewer).get_json()
    assert (many["total"], many["total_exact"]) == (5, False)
    few = client.get("/api/v1/logs?user_id=few&limit=2&include_total=true", headers=viewer).get_json()
    assert (few["total"], few["total_exact"]) == (3, True)


def test_a_full_hot_page_does_not_open_the_cold_tier(client, services, make_key):
    events = seed_and_archive(services, old=12, recent=5)
    store = services.archive
    with services.pool.connection() as conn:
        files = archive.files(conn, states=("complete",))
    assert files
    for f in files:  # unreadable archives: any scan of them fails the request
        with open(store.full_path(f.path), "wb") as fh:
            fh.write(b"not parquet")
    viewer = make_key(Role.VIEWER)
    first = client.get("/api/v1/logs?user_id=alice&limit=4", headers=viewer)
    assert first.status_code == 200, first.data[:300]
    hot = sorted(events[12:], key=lambda e: (e.timestamp, e.event_id), reverse=True)
    assert [e["event_id"] for e in first.get_json()["events"]] == [str(e.event_id) for e in hot[:4]]
    assert {e["tier"] for e in first.get_json()["events"]} == {"hot"}
    # The page that reaches past the hot tier does read the archive (and here finds it broken).
    second = client.get(f"/api/v1/logs?user_id=alice&limit=4&cursor={first.get_json()['next']}", headers=viewer)
    assert second.status_code >= 500


def test_an_export_runs_on_its_own_pool_and_never_blocks_ingest(app_of, users):
    app, svc = app_of(export_pool_max=1, export_wait_seconds=0.5)
    client = app.test_client()
    users("alice")
    ingest = _ingest_key(svc)
    auditor = _ingest_key(svc, Role.AUDITOR)
    for _ in range(3):
        assert client.post("/api/v1/logs", json=event("alice"), headers=ingest).status_code == 201
    running = client.get("/api/v1/logs/export?format=ndjson&user_id=alice", headers=auditor, buffered=False)
    assert running.status_code == 200  # holds the export pool's only connection until read or closed
    try:
        busy = client.get("/api/v1/logs/export?format=ndjson&user_id=alice", headers=auditor)
        assert busy.status_code == 503 and busy.headers["Retry-After"]
        assert error_of(busy)["code"] == "exports_busy"
        # Ingest and reads go on meanwhile.
        assert client.post("/api/v1/logs", json=event("alice"), headers=ingest).status_code == 201
        assert client.get("/api/v1/logs?user_id=alice", headers=auditor).status_code == 200
        lines = b"".join(running.response).splitlines()
        assert len(lines) >= 3
    finally:
        running.close()
    again = client.get("/api/v1/logs/export?format=ndjson&user_id=alice", headers=auditor)
    assert again.status_code == 200 and len(again.data.splitlines()) == 4
