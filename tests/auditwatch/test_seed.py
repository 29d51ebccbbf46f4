"""``auditwatch seed-demo``: a labelled demo history through the ingest pipeline, safe to rerun."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from ingest.demo import DemoTraffic, history_start
from ingest.seed import demo_labels, seed_demo
from storage.dataapi import connect
from tests.conftest import ROOT


def test_seed_demo_stores_the_generator_events_and_names_the_incidents(run, db_url):
    end = "2024-05-01T15:00:00+00:00"
    result = run("seed-demo", "--days", "0.125", "--end", end, "--users", "60", "--service-accounts", "1")
    assert result.exit_code == 0, result.output
    expected = list(DemoTraffic(seed=7, users=60, service_accounts=1).events(
        datetime(2024, 5, 1, 12, tzinfo=UTC), datetime(2024, 5, 1, 15, tzinfo=UTC)))
    assert f"{len(expected):,} events stored, 0 already there, 0 rejected" in result.output
    # 12:00-15:00 holds exactly one injected attack: the 14:05 password spraying.
    assert "1 injected incidents" in result.output and "password_spraying" in result.output
    with connect(db_url) as aw:
        stored = aw.events()
        assert sorted(stored["event_id"].to_list()) == sorted(e["event_id"] for e in expected)
        assert stored["source_country"].is_not_null().any()  # enriched on the way in, like any ingest
        # The rollups were refreshed: the hourly series equals the events.
        hourly = aw.rollup("2024-05-01T12:00Z", "2024-05-01T15:00Z", interval="1h", group_by=())
        assert hourly["events"].to_list() == [
            sum(1 for e in expected if e["timestamp"].startswith(f"2024-05-01T{h}")) for h in (12, 13, 14)]
        assert aw.users().filter(kind="human").height == 60
    again = run("seed-demo", "--days", "0.125", "--end", end, "--users", "60", "--service-accounts", "1")
    assert f"0 events stored, {len(expected):,} already there" in again.output


@pytest.mark.parametrize(("args", "message"), [
    (("--end", "tomorrow"), "not an ISO 8601 time"),
    (("--end", "2024-05-01T15:00:00"), "needs a time zone"),
    (("--end", "2999-01-01T00:00Z"), "in the future"),
    (("--users", "10"), "60"),
    (("--days", "0"), "--days"),
])
def test_seed_demo_refuses_bad_arguments(run, args, message):
    result = run("seed-demo", *args)
    assert result.exit_code == 2 and message in result.output


def test_seed_demo_function_refuses_an_impossible_range(pool):
    now = datetime(2024, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="future"):
        seed_demo(pool, start=now, end=now + timedelta(hours=1), now=now)
    with pytest.raises(ValueError, match="empty"):
        seed_demo(pool, start=now, end=now, now=now)
    with pytest.raises(ValueError, match="time zone"):
        seed_demo(pool, start=datetime(2024, 4, 30), end=now, now=now)


def test_seed_demo_is_registered_when_the_cli_runs_as_a_module(tmp_path):
    # `auditwatch up` runs `python -m auditwatch.cli`: cli.py is then __main__, and a command module
    # that imported auditwatch.cli back would break every command.
    result = subprocess.run([sys.executable, "-m", "auditwatch.cli", "seed-demo", "--help"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "labelled attacks" in result.stdout


def test_demo_labels_name_the_entities_an_anomaly_must_match():
    day = datetime(2024, 5, 1, tzinfo=UTC)
    labels = demo_labels(start=day, end=day + timedelta(days=1), users=80, service_accounts=2)
    traffic = DemoTraffic(seed=7, users=80, service_accounts=2)
    injected = sorted(traffic.incidents(day), key=lambda i: i.start)
    assert [(x.scenario, x.start, x.end) for x in labels] == [(i.scenario, i.start, i.end) for i in injected]
    spraying = next(x for x in labels if x.scenario == "password_spraying")
    assert spraying.entities == {next(i.source_ip for i in injected if i.scenario == "password_spraying")}
    burst = next(x for x in labels if x.scenario == "failed_login_burst")
    assert len(burst.entities) == 2  # the victim and the attacking address
    assert demo_labels(start=day, end=day + timedelta(hours=1)) == []


def test_a_range_that_cuts_an_attack_labels_it_only_once_its_events_are_in_it():
    # CI at 20:41 on a Sunday scored a history ending at 01:41: the 01:40-01:45 permission change was a label,
    # and its one event (01:43) was not stored yet, so "not found" was a miss no detector could avoid. The
    # escalation is now a session of four steps; it is a label once its first is stored.
    day = datetime(2026, 12, 6, tzinfo=UTC)
    traffic = DemoTraffic(seed=7, users=80, service_accounts=2)
    change = next(i for i in traffic.incidents(day) if i.scenario == "unusual_permission_change")
    steps = traffic.injected_times(change)
    at = steps[0]
    assert len(steps) == 4 and change.start < at and steps[-1] < change.end
    injected = {e["timestamp"] for e in traffic.events(change.start, change.end) if e["source_ip"] == change.source_ip}
    assert {datetime.fromisoformat(t) for t in injected} == set(steps)
    assert [e for e in traffic.events(day, at) if e["event_type"] == "permission_change"] == []
    before = demo_labels(start=day, end=at, users=80, service_accounts=2)
    after = demo_labels(start=day, end=at + timedelta(microseconds=1), users=80, service_accounts=2)
    assert "unusual_permission_change" not in [x.scenario for x in before]
    assert [x.scenario for x in after].count("unusual_permission_change") == 1
    # A burst cut in its middle is a label from both sides: each holds some of its 40 failures.
    burst = next(i for i in traffic.incidents(day) if i.scenario == "failed_login_burst")
    times = traffic.injected_times(burst)
    assert len(times) == 40
    middle = times[20]
    assert "failed_login_burst" in [x.scenario for x in demo_labels(start=day, end=middle, users=80,
                                                                    service_accounts=2)]
    assert "failed_login_burst" in [x.scenario for x in demo_labels(start=middle, end=day + timedelta(days=1),
                                                                    users=80, service_accounts=2)]


@pytest.mark.parametrize(("now", "begins"), [
    ("2026-12-08T10:00", "2026-12-07T10:00"),  # a Tuesday: the last 24 hours are a working day
    ("2026-12-05T21:50", "2026-12-04T00:50"),  # a Saturday evening: back to Friday's first hour
    ("2026-12-06T21:50", "2026-12-04T00:50"),  # a Sunday evening: the same Friday
    ("2026-12-07T05:00", "2026-12-04T05:00"),  # a Monday morning: 5 hours of it, 19 of Friday
])
def test_the_demo_history_holds_a_working_day_whenever_it_starts(now, begins):
    """`make up` backfills 24 hours, further back at a weekend: demo people mostly rest then, and a Saturday's
    third of a weekday's events was too little to learn from (the 01:40 permission change was missed)."""
    end = datetime.fromisoformat(now).replace(tzinfo=UTC)
    start = history_start(end)
    assert start == datetime.fromisoformat(begins).replace(tzinfo=UTC)
    assert history_start(end, hours=48) <= end - timedelta(hours=48)
    hours = [start + timedelta(hours=k) for k in range(int((end - start) / timedelta(hours=1)))]
    assert sum(h.weekday() < 5 for h in hours) >= 24
    assert end - start <= timedelta(days=3)  # within the worker's default backfill (`analytics_backfill_days`)


@pytest.mark.parametrize("hours", ["-1", "100000", "a day"])
def test_the_demo_refuses_a_history_it_cannot_backfill(hours):
    """A negative, absurd or non-numeric backfill is a usage error before anything is sent or registered."""
    from click.testing import CliRunner

    from auditwatch.cli.main import main

    result = CliRunner().invoke(main, ["demo", "--url", "http://127.0.0.1:9", "--key", "k", "--history-hours", hours])
    assert result.exit_code == 2 and "--history-hours" in result.output
