"""The real Prometheus (Debian's ``prometheus``, scripts/install-prometheus.sh) scrapes a running stack on
loopback: the API under gunicorn with two workers, ``auditwatch worker`` and ``auditwatch syslog``. The
assertions are PromQL query results from its HTTP API, so names, types, labels and the multiprocess sums are
checked by the program that has to read them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from storage.auth import Role
from storage.timescale import catalog, db
from tests.auditwatch.conftest import event
from tests.auditwatch.test_ops_files import grafana_exprs, shipped_rules
from tests.conftest import ROOT, free_port, start_server

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(not os.path.exists(PROMETHEUS),
                                reason="prometheus is not installed: run scripts/install-prometheus.sh")


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")


def spawn(args: list[str], env: dict[str, str], tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", *args], env=env, cwd=tmp_path,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single value of an instant query, None when it has no result yet."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def eventually(self, promql: str, expected: float, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.value(promql)
            if seen == expected:
                return
            time.sleep(1)
        raise AssertionError(f"{promql} = {seen}, expected {expected}")


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITWATCH_", "PROMETHEUS_"))}
    env.update(PYTHONPATH=str(ROOT), AUDITWATCH_DATABASE_URL=db_url, AUDITWATCH_DATA_DIR=str(tmp_path / "data"),
               AUDITWATCH_ALERTS_ENABLED="false", AUDITWATCH_POOL_MAX="5", AUDITWATCH_POOL_MIN="1")
    ports = {"worker": free_port(), "syslog": free_port(), "udp": free_port()}
    server = start_server(db_url, tmp_path, AUDITWATCH_POOL_MAX="5", AUDITWATCH_POOL_MIN="1",
                          AUDITWATCH_LOG_FORMAT="json")
    procs = [server.process]
    try:
        worker, worker_log = spawn(["worker"], {**env, "AUDITWATCH_WORKER_OPS_PORT": str(ports["worker"])},
                                   tmp_path, "worker")
        procs.append(worker)
        syslog, syslog_log = spawn(["syslog", "--udp-port", str(ports["udp"]), "--tcp-port", "0"],
                                   {**env, "AUDITWATCH_SYSLOG_OPS_PORT": str(ports["syslog"]),
                                    "AUDITWATCH_SYSLOG_MAX_MESSAGE_BYTES": "512"}, tmp_path, "syslog")
        procs.append(syslog)
        wait_http(f"http://127.0.0.1:{ports['worker']}/readyz", worker, worker_log)
        wait_http(f"http://127.0.0.1:{ports['syslog']}/readyz", syslog, syslog_log)
        api_port = server.url.rsplit(":", 1)[1]
        config = tmp_path / "prometheus.yml"
        config.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: ["{ROOT / 'deploy' / 'prometheus' / 'auditwatch-alerts.yml'}"]
scrape_configs:
  - job_name: api
    static_configs: [{{targets: ["127.0.0.1:{api_port}"]}}]
  - job_name: worker
    static_configs: [{{targets: ["127.0.0.1:{ports['worker']}"]}}]
  - job_name: syslog
    static_configs: [{{targets: ["127.0.0.1:{ports['syslog']}"]}}]
""")
        prom_port = free_port()
        prom_log = tmp_path / "prometheus.log"
        prom = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=prom_log.open("wb"), stderr=subprocess.STDOUT)
        procs.append(prom)
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", prom, prom_log)
        yield {"api": server.url, "udp": ports["udp"], "prometheus": Prometheus(f"http://127.0.0.1:{prom_port}"),
               "logs": {"api": server.log, "worker": worker_log, "syslog": syslog_log}}
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_prometheus_scrapes_the_stack_and_promql_sees_what_happened(stack, db_url):
    prom: Prometheus = stack["prometheus"]
    pool = db.open_pool(db_url, min_size=1, max_size=2, name="test")
    try:
        catalog.register_users(pool, [{"user_id": "alice"}], "tests")
        _, secret = catalog.create_key(pool, "prom-test", Role.SYSTEM, "tests")
    finally:
        pool.close()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO alert_notifications (receiver, group_key, kind, payload, created_at, next_attempt_at) "
                     "VALUES ('webhook', 'g1', 'firing', '{}', now() - interval '10 minutes', now() + interval '1 hour')")
        conn.execute("INSERT INTO alert_notification_attempts (notification_id, at, outcome, error) "
                     "SELECT notification_id, now(), 'retry', 'HTTP 502' FROM alert_notifications")
        conn.execute("INSERT INTO anomalies (detector, detector_version, entity_type, entity_value, window_start, "
                     "window_end, score, severity) VALUES ('volume', 'v1', 'user', 'alice', now() - interval '2 hours',"
                     " now() - interval '1 hour', 0.99, 'high')")

    # Ten requests, each on its own connection so both gunicorn workers serve some: per request 3 new
    # events, one repeat of the first, one of a type that does not exist.
    headers = {"Authorization": f"Bearer {secret}"}
    for _ in range(10):
        batch = [event("alice") for _ in range(3)]
        batch += [batch[0], event("alice", event_type="no_such_type")]
        answer = requests.post(f"{stack['api']}/api/v1/logs/batch", json=batch, headers=headers, timeout=30).json()
        assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (3, 1, 1), answer
    code = answer["errors"][0]["code"]

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for i in range(20):
            udp.sendto(f"<38>Dec  3 10:00:{i:02d} web1 sshd[1{i}]: Accepted password for alice from "
                       f"198.51.100.{i} port 22 ssh2 {uuid.uuid4()}".encode(), ("127.0.0.1", stack["udp"]))
        udp.sendto(b"<38>Dec  3 10:01:00 web1 app: " + b"x" * 600, ("127.0.0.1", stack["udp"]))

    for job in ("api", "worker", "syslog"):
        prom.eventually(f'up{{job="{job}"}}', 1)
    # Sums over both gunicorn workers (multiprocess mode): exact totals whichever worker was scraped.
    prom.eventually('sum(auditwatch_ingest_events_accepted_total{job="api",channel="http"})', 30)
    prom.eventually('sum(auditwatch_ingest_events_duplicate_total{job="api",channel="http"})', 10)
    prom.eventually(f'sum(auditwatch_ingest_events_rejected_total{{job="api",code="{code}"}})', 10)
    prom.eventually('sum(auditwatch_ingest_batch_duration_seconds_count{job="api",channel="http"})', 10)
    prom.eventually('sum(auditwatch_http_request_duration_seconds_count{job="api",route="/api/v1/logs/batch",'
                    'status="200"})', 10)
    prom.eventually('sum(auditwatch_db_pool_max_connections{job="api", pool="ingest"})', 10)  # 2 live workers x pool_max 5
    p99 = prom.value('histogram_quantile(0.99, sum by (le) (auditwatch_ingest_batch_duration_seconds_bucket'
                     '{job="api"}))')
    assert p99 is not None and 0 < p99 <= 30

    prom.eventually('auditwatch_syslog_messages_received_total{job="syslog"}', 21)
    prom.eventually('auditwatch_syslog_messages_stored_total{job="syslog"}', 21)
    prom.eventually('auditwatch_syslog_oversized_total{job="syslog"}', 1)
    assert prom.value('auditwatch_syslog_udp_dropped_total{job="syslog"}') == 0
    prom.eventually('sum(auditwatch_ingest_events_accepted_total{job="syslog",channel="syslog"})', 21)

    prom.eventually('auditwatch_alerts_outbox_notifications{job="worker",receiver="webhook",status="pending"}', 1)
    prom.eventually('auditwatch_alerts_delivery_failures_total{job="worker",receiver="webhook"}', 1)
    assert prom.value('auditwatch_alerts_outbox_oldest_age_seconds{receiver="webhook"} >= 600') is not None
    prom.eventually('auditwatch_anomaly_incidents{job="worker",detector="volume",severity="high"}', 1)
    prom.eventually('auditwatch_state_up{job="worker"}', 1)

    prom.eventually('count(auditwatch_job_last_success_timestamp_seconds{scheduled_job="refresh_rollups"} > 0)', 1)
    prom.eventually('sum(auditwatch_job_duration_seconds_count{scheduled_job="refresh_rollups"}) > bool 0', 1)
    prom.eventually('sum(auditwatch_worker_leader{job="worker"})', 1, timeout=180)
    prom.eventually('count(auditwatch_integrity_checkpoint_age_seconds{job="worker"} < 600)', 1)
    assert prom.value('sum(auditwatch_job_failures_total{job="worker"})') == 0, stack["logs"]["worker"].read_text()

    # The shipped Grafana dashboard's queries parse and run; the shipped alert rules load and evaluate.
    for expr in grafana_exprs():
        prom.query(expr.replace("$__rate_interval", "1m"))
    deadline = time.monotonic() + 30
    shipped = len(shipped_rules())
    while True:
        groups = requests.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if len(rules) == shipped and all(r["health"] == "ok" for r in rules) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [(r["name"], r["health"]) for r in rules if r["health"] != "ok"] == []
    assert len(rules) == shipped
