"""The bus writer's operations surface against a real nats-server: lag and dead letters as metrics, /readyz
with the bus, and the request id of a publishing request in the writer's log line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import nats
import orjson
import requests
import structlog
from prometheus_client.parser import text_string_to_metric_families

from ingest import metrics
from ingest.bus import CONSUMER, BusClient, BusConfig, BusPublisher, BusWriter, ensure_streams
from storage.events import EventRecord, Outcome
from storage.timescale import catalog
from tests.conftest import ROOT, free_port
from tests.ingest.test_bus import wait_for


def record(user: str = "alice") -> EventRecord:
    import uuid
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id=user,
                       received_at=now, outcome=Outcome.SUCCESS, source="bus-ops-test",
                       metadata={"_ingest": {"sender": "apikey:bus-ops-test"}})  # as a publishing node stamps it


def scrape(url: str) -> dict[str, float]:
    text = requests.get(url, timeout=5).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def scrape_process(proc: subprocess.Popen, log, url: str) -> dict[str, float]:
    """A live process's metrics ({} while it is not serving yet); fails at once, with its log, if it died."""
    assert proc.poll() is None, log.read_text()
    try:
        return scrape(url)
    except requests.RequestException:
        return {}


async def _queue(nc, config: BusConfig, messages: int):
    """The streams, ``messages`` messages on the work queue, and a pull subscription on its durable consumer."""
    js = nc.jetstream()
    await ensure_streams(js, config)
    for i in range(messages):
        await js.publish(config.subject, b"x%d" % i, stream=config.stream)
    return js, await js.pull_subscribe(config.subject, durable=CONSUMER, stream=config.stream)


def test_observe_bus_reports_pending_messages_their_age_and_dead_letters(nats_server):
    config = BusConfig(url=nats_server.url, stream="OPS_T", subject="ops.t", deadletter_stream="OPS_T_DEAD",
                       deadletter_subject="ops.t.dead")

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js, sub = await _queue(nc, config, 3)
            await js.publish(config.deadletter_subject, b"dead", stream=config.deadletter_stream)
            await asyncio.sleep(1.2)
            await metrics.observe_bus(js, sub, config, now=time.monotonic() + 3600)
        finally:
            await nc.close()

    asyncio.run(scenario())
    assert metrics.BUS_PENDING._value.get() == 3
    assert metrics.BUS_DEADLETTERS._value.get() == 1
    assert 1.0 <= metrics.BUS_OLDEST_PENDING._value.get() < 60


def test_a_failure_reading_the_gauges_is_logged_and_they_are_read_again(nats_server, services, monkeypatch, caplog):
    """The writer reads its gauges in a task of their own. An error they did not expect (a bug) ended that task
    silently: the gauges froze for the rest of the run and the error surfaced only at shutdown."""
    config = BusConfig(url=nats_server.url, stream="OPS_G", subject="ops.g", deadletter_stream="OPS_G_DEAD",
                       deadletter_subject="ops.g.dead")
    real, calls = metrics._read_bus, []

    async def flaky(js, sub, config) -> None:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise KeyError("a field this code did not expect")
        await real(js, sub, config)

    monkeypatch.setattr(metrics, "_read_bus", flaky)
    monkeypatch.setattr(metrics, "_BUS_EVERY", 0.0)
    monkeypatch.setattr(metrics, "_bus_checked", [0.0])  # a test before may have left it in the future
    metrics.BUS_PENDING.set(-1)

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js, sub = await _queue(nc, config, 4)
            observing = asyncio.create_task(BusWriter(config, services.writer)._observe(js, sub))
            deadline = time.monotonic() + 15
            while metrics.BUS_PENDING._value.get() != 4 and time.monotonic() < deadline:
                assert not observing.done(), observing.exception()
                await asyncio.sleep(0.1)
            observing.cancel()
        finally:
            await nc.close()

    with caplog.at_level("ERROR", logger="ingest.bus"):
        asyncio.run(scenario())
    assert len(calls) >= 3
    assert metrics.BUS_PENDING._value.get() == 4  # read again after the failures
    failures = [r for r in caplog.records if "reading the bus's gauges failed" in r.getMessage()]
    assert len(failures) == 1 and "KeyError" in caplog.text  # once per streak, with the error


def test_the_writer_process_serves_its_metrics_and_logs_the_publishers_request_ids(nats_server, db_url, services,
                                                                                    tmp_path):
    catalog.register_users(services.pool, [{"user_id": "alice"}], "tests")
    config = BusConfig(url=nats_server.url)
    client = BusClient(config)
    try:
        structlog.contextvars.bind_contextvars(request_id="bus-req-42")
        try:
            # One message of three events, the last refused on re-validation (a platform principal).
            assert BusPublisher(client).write([record(), record(), record("apikey:forged")]) == [True] * 3
        finally:
            structlog.contextvars.clear_contextvars()
        client.call(lambda js: js.publish(config.subject, b"not an event", stream=config.stream))  # poison
    finally:
        client.close()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITWATCH_")}
    env.update(PYTHONPATH=str(ROOT), AUDITWATCH_DATABASE_URL=db_url, AUDITWATCH_BUS_URL=nats_server.url,
               AUDITWATCH_DATA_DIR=str(tmp_path / "data"), AUDITWATCH_WRITER_OPS_PORT=str(port),
               AUDITWATCH_LOG_FORMAT="json")
    log = tmp_path / "writer.log"
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "writer"], env=env, cwd=tmp_path,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def settled() -> bool:
            seen = scrape_process(proc, log, f"{base}/metrics")
            return (seen.get("auditwatch_bus_writer_events_stored_total") == 2
                    and seen.get("auditwatch_bus_writer_events_split_total") == 1
                    and seen.get("auditwatch_bus_dead_lettered_total") == 2
                    and seen.get("auditwatch_bus_deadletter_messages") == 2
                    and seen.get("auditwatch_bus_pending_messages") == 0
                    and seen.get("auditwatch_bus_lag_seconds") == 0)

        wait_for(settled, 90, "the writer's metrics to settle")
        ready = requests.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["bus"]["ok"] is True
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lines = [orjson.loads(li) for li in log.read_text().splitlines() if li.startswith("{")]
    stored = [li for li in lines if li.get("logger") == "ingest.bus" and "bus-req-42" in li.get("request_ids", [])]
    assert len(stored) == 1, log.read_text()[-3000:]
    assert stored[0]["event"] == "writer: stored 2 events (2 new)" and stored[0]["level"] == "info"
