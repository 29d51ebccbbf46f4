"""Health, request ids, logs and /metrics of the API, in process (the live processes: test_prometheus.py)."""

from __future__ import annotations

import io
import logging
import time
import uuid

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from auditwatch import health, logs
from auditwatch.health import OpsServer, Readiness
from storage.auth import Role
from tests.auditwatch.conftest import event
from tests.conftest import free_port


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics body as {(name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def json_logs():
    """JSON logs into a buffer for one test; the handler is removed afterwards."""
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    try:
        yield stream
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logs._Handler)]:
            root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_readyz_names_the_schema_version_and_healthz_stays_liveness(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "ok"
    database = body["checks"]["database"]
    assert database["ok"] is True
    assert database["schema_version"] == database["expected_schema_version"] >= 14
    assert "bus" not in body["checks"]  # no bus configured: not checked
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_is_503_with_the_fix_when_the_schema_is_behind(client, conn):
    newest = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
    conn.execute("DELETE FROM schema_migrations WHERE version = %s", (newest,))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    database = ready.get_json()["checks"]["database"]
    assert database["ok"] is False and database["schema_version"] == newest - 1
    assert "run `auditwatch migrate`" in database["problem"]
    assert client.get("/healthz").status_code == 200  # alive, only not ready


def test_readyz_fails_when_the_configured_bus_does_not_answer(services):
    from ingest.bus import BusClient, BusConfig

    bus = BusClient(BusConfig(url=f"nats://127.0.0.1:{free_port()}", publish_timeout=1.0))
    try:
        ok, checks = Readiness(services.pool, bus).check()
    finally:
        bus.close()
    assert ok is False
    assert checks["database"]["ok"] is True
    assert checks["bus"]["ok"] is False and "the event bus is unavailable" in checks["bus"]["problem"]


def test_request_ids_are_echoed_or_made_and_reach_the_writers_log_line(client, make_key, users, json_logs):
    users("alice")
    key = make_key(Role.SYSTEM)
    sent = event("alice")
    given = f"req-{uuid.uuid4().hex[:12]}"
    created = client.post("/api/v1/logs", json=sent, headers={**key, "X-Request-Id": given})
    assert created.status_code == 201
    assert created.headers["X-Request-Id"] == given

    made = client.get("/healthz").headers["X-Request-Id"]
    assert len(made) == 32 and made != given
    refused = client.get("/healthz", headers={"X-Request-Id": "bad id <script>"}).headers["X-Request-Id"]
    assert refused != "bad id <script>" and len(refused) == 32

    records = lines(json_logs)
    access = [r for r in records if r["logger"] == "auditwatch.access" and r.get("path") == "/api/v1/logs"]
    assert len(access) == 1
    assert access[0]["request_id"] == given
    assert (access[0]["method"], access[0]["status"], access[0]["level"]) == ("POST", 201, "info")
    assert access[0]["duration_ms"] >= 0 and access[0]["timestamp"].endswith("Z")
    stored = [r for r in records if r["logger"] == "storage.timescale.writer" and given in r.get("request_ids", [])]
    assert len(stored) == 1, records
    assert stored[0]["event"].startswith("stored 1 events (1 new)")


def test_text_logs_carry_the_request_id_too(client):
    stream = io.StringIO()
    logs.configure("text", stream=stream)
    try:
        client.get("/healthz", headers={"X-Request-Id": "text-req-1"})
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logs._Handler)]:
            root.removeHandler(handler)
    line = next(li for li in stream.getvalue().splitlines() if "GET /healthz 200" in li)
    assert "request_id=text-req-1" in line and not line.startswith("{")


def test_metrics_count_accepted_duplicates_and_rejections_by_code(client, make_key, users):
    users("alice")
    key = make_key(Role.SYSTEM)
    before = samples(client.get("/metrics").get_data(as_text=True))
    one = event("alice")
    batch = [one, one, event("nobody-registered"), event("alice", event_type="No Such Type!")]
    answer = client.post("/api/v1/logs/batch", json=batch, headers=key).get_json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (1, 1, 2)
    codes = sorted(e["code"] for e in answer["errors"])

    response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    after = samples(response.get_data(as_text=True))

    def grew(name: str, **labels: str) -> float:
        key_ = (name, tuple(sorted(labels.items())))
        return after.get(key_, 0) - before.get(key_, 0)

    assert grew("auditwatch_ingest_events_accepted_total", channel="http") == 1
    assert grew("auditwatch_ingest_events_duplicate_total", channel="http") == 1
    for code in set(codes):
        assert grew("auditwatch_ingest_events_rejected_total", channel="http", code=code) == codes.count(code)
    assert grew("auditwatch_ingest_batch_duration_seconds_count", channel="http") == 1
    assert grew("auditwatch_http_request_duration_seconds_count", route="/api/v1/logs/batch", method="POST",
                status="200") == 1
    # The three pools of a server process: ingest (pool_max), reads and exports (their own budgets).
    assert after[("auditwatch_db_pool_max_connections", (("pool", "ingest"),))] == 8
    assert ("auditwatch_db_pool_max_connections", (("pool", "read"),)) in after
    assert ("auditwatch_db_pool_max_connections", (("pool", "export"),)) in after


def test_a_server_worker_refreshes_its_pool_gauges_a_few_times_a_second_not_per_request(client, monkeypatch):
    """Four labelled multiprocess gauges per request cost a tenth of a single-event POST's CPU."""
    from storage import metrics as storage_metrics

    calls: list[int] = []
    observe = storage_metrics.observe_pools
    monkeypatch.setattr(storage_metrics, "observe_pools", lambda pools: (calls.append(1), observe(pools))[1])
    started = time.monotonic()
    for _ in range(40):
        assert client.get("/healthz").status_code == 200
    elapsed = time.monotonic() - started
    assert 1 <= len(calls) <= 2 + elapsed / health.POOL_GAUGES_EVERY, (len(calls), elapsed)
    assert len(calls) < 40


def test_the_ops_server_answers_health_and_metrics(services):
    server = OpsServer("127.0.0.1", 0, Readiness(services.pool)).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["checks"]["database"]["ok"] is True
        scraped = requests.get(f"{base}/metrics", timeout=5)
        assert scraped.status_code == 200 and "auditwatch_job_failures_total" in scraped.text
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.stop()


def test_with_json_logs_every_line_the_server_writes_is_json_gunicorns_own_too(db_url, tmp_path):
    """A log pipeline that parses one JSON object a line must not meet gunicorn's plain start and stop lines."""
    from tests.conftest import start_server

    server = start_server(db_url, tmp_path, AUDITWATCH_LOG_FORMAT="json", AUDITWATCH_WORKERS="1")
    try:
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
    assert server.process.returncode == 0
    text = server.log.read_text()
    records = [orjson.loads(line) for line in text.splitlines() if line.strip()]  # raises on a plain line
    by_gunicorn = [r["event"] for r in records if r.get("logger") == "gunicorn.error"]
    assert any(e.startswith("Listening at: http://") for e in by_gunicorn), text
    assert any(e.startswith("Booting worker with pid") for e in by_gunicorn), text
    assert any(e == "Shutting down: Master" for e in by_gunicorn), text
