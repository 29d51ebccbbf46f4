"""Against Debian's real prometheus-alertmanager on loopback: alerts pushed to its /api/v2/alerts arrive
(GET shows them, resolved ones leave), and our Alertmanager-format webhook payload (version 4) has the shape
of what that Alertmanager itself sends to a webhook receiver, for the same alerts."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from alerts import actions
from alerts.alertmanager import AlertmanagerPush, label_name, webhook_payload
from alerts.errors import DeliveryError
from alerts.lifecycle import fingerprint
from storage.events import EventRecord, Outcome
from storage.timescale import outbox
from tests.alerts.conftest import make_rig
from tests.conftest import free_port

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
VICTIM = "am-victim"
FP = fingerprint("failed_login_burst", {"user_id": VICTIM})


class Sink:
    """A webhook receiver that keeps every JSON body by path."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict]] = {}
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with sink.lock:
                    sink.bodies.setdefault(self.path, []).append(data)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, path: str, predicate, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [b for b in self.bodies.get(path, []) if predicate(b)]
            if found:
                return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"nothing matching reached {path}: {self.bodies.get(path)}")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


@pytest.fixture(scope="module")
def alertmanager(sink: Sink, tmp_path_factory) -> Iterator[str]:
    """A real Alertmanager on a free loopback port, routing everything to the sink's /am (resolved too)."""
    if not Path(ALERTMANAGER).exists():
        pytest.fail(f"{ALERTMANAGER} is missing: run scripts/install-prometheus.sh")
    tmp = tmp_path_factory.mktemp("alertmanager")
    config = tmp / "alertmanager.yml"
    config.write_text(f"""
route:
  receiver: sink
  group_by: [alertname, user_id]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: {sink.url}/am
        send_resolved: true
""")
    port = free_port()
    log = (tmp / "alertmanager.log").open("wb")
    process = subprocess.Popen([ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                                "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"alertmanager exited: {(tmp / 'alertmanager.log').read_text()}")
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("alertmanager did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
        shutil.rmtree(tmp / "data", ignore_errors=True)


def _am_alerts(url: str) -> list[dict]:
    response = requests.get(f"{url}/api/v2/alerts", params={"filter": f'user_id="{VICTIM}"'}, timeout=5)
    response.raise_for_status()
    return response.json()


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_alerts_pushed_to_a_real_alertmanager_and_our_v4_payload_matches_its_own(pool, tmp_path, alertmanager,
                                                                                sink):
    rig = make_rig(pool, tmp_path, None, None, alertmanager_urls=(alertmanager,), webhook_url=f"{sink.url}/ours",
                   webhook_format="alertmanager", external_url="https://auditwatch.example.com")
    assert {"alertmanager", "webhook"} <= set(rig.notifiers)
    now = datetime.now(UTC)  # Alertmanager keeps real time: the alerts are pushed as happening now
    rig.write([EventRecord(event_id=uuid.uuid4(), timestamp=now - timedelta(seconds=30 - 2 * i), received_at=now,
                           event_type="user_login", user_id=VICTIM, outcome=Outcome.FAILURE,
                           source_ip="198.51.100.7") for i in range(12)])
    rig.tick(now)
    rig.tick(now + timedelta(seconds=11))  # after group_wait

    # The push: Alertmanager holds the alert, with our labels, annotations and link.
    held = _am_alerts(alertmanager)
    assert len(held) == 1, held
    alert = held[0]
    assert alert["labels"]["alertname"] == "failed_login_burst"
    assert alert["labels"]["user_id"] == VICTIM and alert["labels"]["severity"] == "critical"
    assert alert["labels"][label_name("mitre")] == "T1110.001"
    assert alert["annotations"]["summary"] == f"Failed-login burst for {VICTIM}"
    assert alert["annotations"]["runbook_url"].endswith("#failed_login_burst")
    assert alert["generatorURL"] == f"https://auditwatch.example.com/dashboard/alerts?fingerprint={FP}"
    assert alert["status"]["state"] == "active"
    ours = actions.get_alert(pool, FP, now=now)
    assert abs(_time(alert["startsAt"]) - ours.started_at) < timedelta(milliseconds=1)
    assert _time(alert["endsAt"]) > datetime.now(UTC) + timedelta(hours=23)  # held, not timed out

    # Alertmanager's own webhook (v4) for it, beside ours for the same alert.
    theirs = sink.wait("/am", lambda b: b["status"] == "firing")
    mine = sink.wait("/ours", lambda b: b["status"] == "firing" and any(
        a["fingerprint"] == FP for a in b["alerts"]))
    assert theirs["version"] == mine["version"] == "4"
    assert set(mine) == set(theirs), (sorted(mine), sorted(theirs))
    their_alert, my_alert = theirs["alerts"][0], next(a for a in mine["alerts"] if a["fingerprint"] == FP)
    assert set(my_alert) == set(their_alert), (sorted(my_alert), sorted(their_alert))
    assert my_alert["labels"] == their_alert["labels"]
    assert my_alert["annotations"] == their_alert["annotations"]
    assert my_alert["generatorURL"] == their_alert["generatorURL"]
    assert my_alert["endsAt"] == their_alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert _time(my_alert["startsAt"]) == _time(their_alert["startsAt"])
    for payload in (mine, theirs):
        assert isinstance(payload["groupKey"], str) and payload["groupKey"]
        assert isinstance(payload["truncatedAlerts"], int)
        assert payload["commonLabels"]["alertname"] == "failed_login_burst"
    assert mine["externalURL"] == "https://auditwatch.example.com"

    # Resolved by hand (at the real time: Alertmanager ends it at endsAt); the next evaluation, with the
    # burst's window empty, pushes the end.
    resolved_at = datetime.now(UTC)
    actions.resolve(pool, FP, by="tests", comment="done", now=resolved_at)
    rig.tick(now + timedelta(seconds=90))
    assert _am_alerts(alertmanager) == []  # an alert whose endsAt passed is no longer active
    theirs = sink.wait("/am", lambda b: b["status"] == "resolved")
    mine = sink.wait("/ours", lambda b: b["status"] == "resolved")
    assert theirs["alerts"][0]["status"] == mine["alerts"][0]["status"] == "resolved"
    assert abs(_time(mine["alerts"][0]["endsAt"]) - resolved_at) < timedelta(milliseconds=1)
    assert abs(_time(theirs["alerts"][0]["endsAt"]) - resolved_at) < timedelta(milliseconds=1)


def test_a_refused_push_is_a_delivery_error_with_the_reason(alertmanager):
    push = AlertmanagerPush("alertmanager", urls=[alertmanager])
    # Ends before it starts: Alertmanager validates and refuses it (400), which repeating cannot fix.
    bad = {"alerts": [{"fingerprint": "x", "rule_id": "bad", "status": "resolved", "title": "t", "labels": {},
                       "firing_at": "2024-05-01T12:00:00+00:00", "resolved_at": "2024-05-01T11:00:00+00:00"}]}
    with pytest.raises(DeliveryError) as refused:
        push.send(1, bad)
    assert refused.value.status_code == 400 and not refused.value.retryable
    assert "start" in str(refused.value) and alertmanager in str(refused.value)
    with pytest.raises(DeliveryError) as unreachable:
        AlertmanagerPush("alertmanager", urls=[f"http://127.0.0.1:{free_port()}"]).send(1, bad)
    assert unreachable.value.retryable
    # With a dead peer first, the live one takes it.
    good = {"alerts": [{**bad["alerts"][0], "status": "firing", "rule_id": "good", "resolved_at": None}]}
    AlertmanagerPush("alertmanager", urls=[f"http://127.0.0.1:{free_port()}", alertmanager]).send(2, good)
    held = requests.get(f"{alertmanager}/api/v2/alerts", params={"filter": 'alertname="good"'}, timeout=5).json()
    assert [a["labels"]["alertname"] for a in held] == ["good"]


def test_the_v4_payload_of_a_notification():
    payload = {"receiver": "webhook", "group_key": "/1:rule_id=r", "group_labels": {"rule_id": "r"},
               "status": "resolved", "alerts": [
                   {"fingerprint": "f1", "rule_id": "r", "title": "T", "severity": "warning", "status": "resolved",
                    "labels": {"rule_id": "r", "user-id": "u", "empty": ""}, "count": 3,
                    "started_at": "2024-05-01T12:00:00+00:00", "firing_at": "2024-05-01T12:00:10+00:00",
                    "resolved_at": "2024-05-01T13:00:00+00:00", "dashboard_url": "https://x/dashboard/alerts?fingerprint=f1"}]}
    out = webhook_payload(payload, external_url="https://x")
    alert = out["alerts"][0]
    assert out["status"] == "resolved" and out["groupLabels"] == {"rule_id": "r"}
    assert alert["labels"] == {"rule_id": "r", "user_id": "u", "alertname": "r", "severity": "warning"}
    assert (alert["startsAt"], alert["endsAt"]) == ("2024-05-01T12:00:10Z", "2024-05-01T13:00:00Z")
    assert alert["generatorURL"] == "https://x/dashboard/alerts?fingerprint=f1" and alert["fingerprint"] == "f1"
    assert label_name("9lives") == "_9lives"


def test_an_acknowledged_alert_is_pushed_again_before_alertmanager_would_end_it(pool, tmp_path, alertmanager):
    """Acknowledging stops repeats, but Alertmanager ends an alert at its endsAt (a day after the last push):
    while it fires here it is pushed again every 8 hours, as acknowledged; no other receiver hears more."""
    user = "am-acked"
    acked_fp = fingerprint("failed_login_burst", {"user_id": user})
    rig = make_rig(pool, tmp_path, None, None, alertmanager_urls=(alertmanager,))
    assert rig.config.keepalive == {"alertmanager": timedelta(hours=8)}
    now = datetime.now(UTC)  # Alertmanager keeps real time

    def burst(at: datetime) -> None:
        rig.write([EventRecord(event_id=uuid.uuid4(), timestamp=at - timedelta(seconds=30 - 2 * i), received_at=at,
                               event_type="user_login", user_id=user, outcome=Outcome.FAILURE,
                               source_ip="198.51.100.8") for i in range(12)])
        rig.tick(at)

    def told(receiver: str) -> list[tuple[str, list[str]]]:
        return [(n.kind, [a["status"] for a in n.payload["alerts"]])
                for n in reversed(outbox.notifications(pool, fingerprint=acked_fp, receiver=receiver))]

    burst(now)
    burst(now + timedelta(seconds=11))
    actions.acknowledge(pool, acked_fp, by="alice", comment="on it", now=now + timedelta(seconds=15))
    burst(now + timedelta(seconds=20))
    assert told("alertmanager") == [("firing", ["firing"]), ("acknowledged", ["acknowledged"])]
    local = told("local")
    assert local and local[-1][0] == "acknowledged"
    for hours in (4, 7.9):  # within the keepalive: nothing
        burst(now + timedelta(hours=hours))
    assert len(told("alertmanager")) == 2
    burst(now + timedelta(hours=8, minutes=1))
    assert told("alertmanager")[2:] == [("firing", ["acknowledged"])]
    assert told("local") == local  # the others were told of the acknowledgement once, and nothing since
    assert all(n.status == "delivered" for n in outbox.notifications(pool, receiver="alertmanager"))
    held = requests.get(f"{alertmanager}/api/v2/alerts", params={"filter": f'user_id="{user}"'}, timeout=5).json()
    assert len(held) == 1 and held[0]["status"]["state"] == "active"
    assert held[0]["annotations"]["acknowledged_by"] == "alice"
    assert _time(held[0]["endsAt"]) > datetime.now(UTC) + timedelta(hours=23)
