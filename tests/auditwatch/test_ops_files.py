"""The shipped operations files: the Grafana dashboard and the Prometheus alert rules name only metrics we
export, and the rules' own unit tests pass under the real ``promtool``."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from ingest.bus import WriterStats
from ingest.metrics import SyslogCollector, WriterCollector
from ingest.syslog.listener import ListenerStats
from storage.metrics import StateCollector
from storage.timescale import sealing
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bauditwatch_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "unknown": ("",)}


def grafana_exprs() -> list[str]:
    board = orjson.loads((DEPLOY / "grafana" / "auditwatch.json").read_bytes())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def shipped_rules() -> list[dict]:
    """The alert rules in deploy/prometheus/auditwatch-alerts.yml."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "auditwatch-alerts.yml").read_text())
    return [r for g in rules["groups"] for r in g["rules"]]


def rule_exprs() -> list[str]:
    return [r["expr"] for r in shipped_rules()]


def names(collectors) -> set[str]:
    """Every series name the collectors expose (family names with their type's suffixes)."""
    out: set[str] = set()
    for collector in collectors:
        for family in collector.collect():
            out |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
            out |= {s.name for s in family.samples}
    return out


@pytest.fixture
def exported(pool) -> set[str]:
    """What the API, worker, listener and writer export, with the stored state fully present."""
    sealing.write_checkpoint(pool, Ed25519PrivateKey.generate(), now=datetime.now(UTC), force=True)
    with pool.connection() as conn:
        conn.execute("INSERT INTO alert_notifications (receiver, group_key, kind, payload, created_at, "
                     "next_attempt_at) VALUES ('slack', 'g', 'firing', '{}', now(), now())")
    listener = SimpleNamespace(stats=ListenerStats(), _queue=None)
    writer = SimpleNamespace(stats=WriterStats())
    found = names([REGISTRY, SyslogCollector(listener), WriterCollector(writer), StateCollector(pool)])
    assert "auditwatch_integrity_checkpoint_age_seconds" in found  # the state was really read
    return found


def test_every_dashboard_and_rule_expression_names_metrics_we_export(exported):
    exprs = grafana_exprs() + rule_exprs()
    assert len(grafana_exprs()) >= 25 and len(rule_exprs()) >= 4
    for expr in exprs:
        used = set(METRIC.findall(expr))
        assert used, f"{expr!r} names no Auditwatch metric"
        assert used <= exported, f"{expr!r} names {sorted(used - exported)}, which nothing exports"


def test_the_dashboard_covers_every_area_of_the_issue():
    text = " ".join(grafana_exprs())
    for metric in ("ingest_events_accepted_total", "ingest_events_rejected_total", "ingest_events_duplicate_total",
                   "ingest_batch_duration_seconds_bucket", "syslog_messages_received_total",
                   "syslog_udp_dropped_total", "syslog_oversized_total", "bus_lag_seconds",
                   "bus_deadletter_messages", "job_last_success_timestamp_seconds", "job_duration_seconds_bucket",
                   "worker_leader", "anomaly_incidents", "alerts_outbox_notifications",
                   "alerts_delivery_failures_total", "alerts_outbox_oldest_age_seconds",
                   "db_pool_connections_in_use", "integrity_checkpoint_age_seconds"):
        assert f"auditwatch_{metric}" in text, metric


def test_the_platform_alert_rules_pass_their_promtool_tests(tmp_path: Path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed: run scripts/install-prometheus.sh")
    checked = subprocess.run([promtool, "check", "rules", "auditwatch-alerts.yml"], cwd=DEPLOY / "prometheus",
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(shipped_rules())} rules found" in checked.stdout
    tested = subprocess.run([promtool, "test", "rules", "auditwatch-alerts.test.yml"], cwd=DEPLOY / "prometheus",
                            capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names_ = {r["alert"] for r in shipped_rules()}
    assert {"AuditwatchIngestStalled", "AuditwatchWorkerLeaderMissing", "AuditwatchOutboxBacklog",
            "AuditwatchCheckpointStale", "AuditwatchBusSignaturesFailing"} <= names_
