"""The worker schedules alert evaluation and delivery from settings, and the jobs run as scheduled."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from apscheduler.util import ref_to_obj

from alerts.dispatch import dispatch
from alerts.engine import flush
from alerts.notifiers import LocalSink
from auditwatch.worker import JOBS, LEADER_JOBS, build_scheduler
from storage.events import EventRecord, Outcome
from storage.timescale.writer import EventWriter


def test_alert_jobs_follow_settings(settings, services):
    scheduler = build_scheduler(services.pool, settings.replace(alerts_eval_seconds=12, alerts_dispatch_seconds=3))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert jobs["alerts_evaluate"].trigger.interval == timedelta(seconds=12)
    assert jobs["alerts_deliver"].trigger.interval == timedelta(seconds=3)
    assert set(jobs["alerts_deliver"].kwargs["notifiers"]) == {"local"}  # no credentials: the local sink
    off = build_scheduler(services.pool, settings.replace(alerts_enabled=False))
    assert {job.id for job in off.get_jobs()} == {j[0] for j in JOBS if not j[0].startswith("alerts_")} - LEADER_JOBS


def test_the_scheduled_functions_take_a_burst_to_the_local_sink(settings, services):
    scheduler = build_scheduler(services.pool, settings)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    now = datetime.now(UTC)
    EventWriter(services.pool).write([EventRecord(
        event_id=uuid.uuid4(), timestamp=now - timedelta(seconds=20 - i), received_at=now, event_type="user_login",
        user_id="victim", outcome=Outcome.FAILURE) for i in range(12)])
    evaluate, deliver = (ref_to_obj(jobs[j].func_ref) for j in ("alerts_evaluate", "alerts_deliver"))
    assert evaluate(**jobs["alerts_evaluate"].kwargs).changes
    sink: LocalSink = jobs["alerts_deliver"].kwargs["notifiers"]["local"]
    assert deliver(**jobs["alerts_deliver"].kwargs).delivered == []  # group_wait (10 s) not over yet
    # group_wait elapses; the delivery tick flushes the group and sends it.
    later = datetime.now(UTC) + timedelta(seconds=11)
    assert flush(services.pool, jobs["alerts_deliver"].kwargs["config"], now=later)
    assert dispatch(services.pool, jobs["alerts_deliver"].kwargs["notifiers"], now=later).delivered
    lines = [json.loads(x) for x in sink.path.read_text().splitlines()]
    assert lines[0]["alerts"][0]["title"] == "Failed-login burst for victim"
    assert str(sink.path).startswith(str(settings.resolved_data_dir()))
