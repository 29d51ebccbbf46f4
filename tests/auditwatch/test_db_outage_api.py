"""Issue 14 #11 through the API: while PostgreSQL is stopped, ingest answers 503 with ``Retry-After: 1`` at
once (not after the pool's 30 s), and once it is back ingest succeeds again by itself; every event the API
acknowledged (201) is stored exactly once. A private cluster, so the shared test server is never stopped.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import psycopg
import pytest

from auditwatch import settings as settings_mod
from auditwatch.app import create_app
from bench.faultcluster import private_cluster
from storage.auth import Role
from storage.timescale import catalog
from storage.timescale.cluster import DATABASE
from tests.auditwatch.conftest import event
from tests.conftest import opened_services


@pytest.fixture(scope="module")
def cluster():
    with private_cluster() as made:
        yield made


def test_ingest_fails_fast_during_an_outage_and_resumes_after_it(cluster, tmp_path):
    url = cluster.url_for(DATABASE)
    settings = settings_mod.load(config_file=None, environ={}, overrides={
        "database_url": url, "data_dir": str(tmp_path / "data"), "pool_min": 1, "pool_max": 8,
        "unknown_users": "register", "dashboard": False, "key_cache_seconds": 0.0})
    with opened_services(settings) as services:
        app = create_app(settings, services=services)
        _, secret = catalog.create_key(services.pool, "sender", Role.SYSTEM, "tests")
        headers = {"Authorization": f"Bearer {secret}"}
        statuses: Counter[int] = Counter()
        acked: list[str] = []
        slowest_refusal = 0.0
        retry_after: set[str] = set()
        phase = {"name": "before"}
        by_phase: dict[str, Counter[int]] = {"before": Counter(), "down": Counter(), "after": Counter()}
        stop = threading.Event()
        lock = threading.Lock()

        def client() -> None:
            nonlocal slowest_refusal
            http = app.test_client()
            while not stop.is_set():
                body = event("alice")
                started = time.monotonic()
                response = http.post("/api/v1/logs", json=body, headers=headers)
                took = time.monotonic() - started
                with lock:
                    statuses[response.status_code] += 1
                    by_phase[phase["name"]][response.status_code] += 1
                    if response.status_code == 201:
                        acked.append(body["event_id"])
                    elif response.status_code == 503:
                        retry_after.add(response.headers.get("Retry-After", ""))
                        if phase["name"] == "down":
                            slowest_refusal = max(slowest_refusal, took)
                if response.status_code == 503:
                    time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            cluster.down()
            time.sleep(1.0)  # the first refusals trip the circuit
            phase["name"] = "down"
            time.sleep(2.0)
            cluster.up(install=False)
            phase["name"] = "after"
            deadline = time.monotonic() + 30
            while by_phase["after"][201] < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(60)

    assert set(statuses) <= {201, 503}, statuses
    assert by_phase["down"][503] > 0 and by_phase["down"][201] == 0, by_phase
    assert by_phase["after"][201] >= 20, by_phase
    assert retry_after == {"1"}
    # Loose bound (shared machine): refused at once, not after the pool's 30 s wait.
    assert slowest_refusal < 5, slowest_refusal
    with psycopg.connect(url) as conn:
        counts = dict(conn.execute("SELECT event_id::text, count(*) FROM audit_events WHERE event_id = ANY(%s) "
                                   "GROUP BY 1", ([uuid.UUID(i) for i in acked],)).fetchall())
    assert len(counts) == len(acked) and set(counts.values()) == {1}
