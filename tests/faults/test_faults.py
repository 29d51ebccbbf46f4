"""Fault injection on real processes (issue 14): sustained ingest over HTTP (direct and through the
JetStream bus) and syslog TCP while PostgreSQL is restarted and the API, the bus writer and the worker
are SIGKILLed. Afterwards every acknowledged event is stored exactly once, ``auditwatch verify`` passes,
no alert was paged twice, and every component works again without anyone fixing anything.

CI-sized: 2 PostgreSQL restarts and 4 kills at once; syslog stores through two worker processes
(``syslog_processes``; the in-process path has its own outage test in tests/ingest/test_syslog_listener.py). bench/faults.py runs the larger schedule (5 restarts,
20 kills) and prints the recovery times.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.faultstack import HttpLoad, Stack, SyslogLoad, repeated_pages


def _wait(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@pytest.fixture
def stack():
    # The syslog listener stores through two worker processes: their pools ride out the restarts too.
    made = Stack(Path(tempfile.mkdtemp(prefix="auditwatch-faults-")), syslog_processes=2)
    try:
        made.up()
        yield made
    finally:
        made.destroy()


def test_nothing_acknowledged_is_lost_or_doubled_through_restarts_and_kills(stack):
    direct = HttpLoad(f"http://127.0.0.1:{stack.api_port}", stack.key, clients=2)
    bus = HttpLoad(f"http://127.0.0.1:{stack.api_bus_port}", stack.key, clients=2)
    burst = HttpLoad(f"http://127.0.0.1:{stack.api_port}", stack.key, clients=1, user="fault-victim",
                     failed_logins=True)
    syslog = SyslogLoad(stack.syslog_port)
    loads = (direct, bus, burst)
    for load in (*loads, syslog):
        load.start()

    def acked_since(load: HttpLoad, before: int) -> bool:
        return len(load.acked) > before

    try:
        time.sleep(4)
        # PostgreSQL stopped for 2 s, then a fast restart: both APIs come back by themselves.
        for down_for in (2.0, 0.0):
            stack.restart_postgres(down_for)
            counts = [len(load.acked) for load in loads]  # from the moment the server is back up
            for load, before in zip(loads, counts, strict=True):
                _wait(lambda load=load, before=before: acked_since(load, before), 30, f"ingest after restart ({load.url})")
            time.sleep(2)
        # SIGKILL both APIs, the bus writer and the worker at once; the supervisor (this test) starts them again.
        killed = [stack.components[name] for name in ("api", "writer", "api_bus", "worker")]
        for component in killed:
            component.kill()
        checkpoints = stack.checkpoints()
        for component in killed:
            component.start()
        for component in killed:
            component.wait_ready()
        _wait(lambda: stack.checkpoints() > checkpoints, 60, "a checkpoint from the restarted worker")
        time.sleep(3)
    finally:
        for load in (*loads, syslog):
            load.stop()

    # Drain: the bus writer catches up; the syslog listener's queue empties.
    everything = direct.acked + bus.acked + burst.acked
    _wait(lambda: len(stack.stored_counts(everything)) == len(everything), 90, "every acknowledged event stored")
    _wait(lambda: len(stack.syslog_counts(syslog.prefix)) == syslog.sent, 60, "every syslog line stored")

    stored = stack.stored_counts(everything)
    assert len(everything) == len(set(everything))
    assert Counter(stored.values()) == Counter({1: len(everything)}), "an acknowledged event is missing or doubled"
    lines = stack.syslog_counts(syslog.prefix)
    assert syslog.disconnects == 0 and len(lines) == syslog.sent and set(lines.values()) == {1}
    for load in loads:
        assert set(load.statuses) <= {200, 201, 503, "connection_error"}, load.statuses  # never a 500
        assert len(load.acked) > 20

    report = stack.verify()
    assert report.returncode == 0, report.stdout + report.stderr

    pages = stack.notifications()
    ids = [p["notification_id"] for p in pages]
    assert len(ids) == len(set(ids)), "a notification was delivered twice"
    assert any(a["status"] == "firing" for p in pages for a in p.get("alerts", [])), "the burst never paged"
    assert repeated_pages(pages) == [], "a group was paged again with nothing new"

    # Every component still works after the faults, without a restart by hand.
    for load_url in (f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.api_bus_port}"):
        probe = HttpLoad(load_url, stack.key, clients=1)
        probe.start()
        _wait(lambda probe=probe: len(probe.acked) > 0, 30, f"ingest on {load_url}")
        probe.stop()
        _wait(lambda probe=probe: len(stack.stored_counts(probe.acked)) == len(probe.acked), 60,
              "the probe's events stored")
