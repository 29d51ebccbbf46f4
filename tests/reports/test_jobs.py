"""Scheduled reports: the period just ended, once per period, optionally copied to the object store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from reports.errors import ReportError
from reports.jobs import Schedule, period_before, scheduled_report
from storage.timescale import reports as stored_reports


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_period_just_ended():
    assert period_before(at("2024-05-07T06:00"), "day") == (at("2024-05-06T00:00"), at("2024-05-07T00:00"))
    # 2024-05-08 is a Wednesday: the last full week is Monday 04-29 to Monday 05-06
    assert period_before(at("2024-05-08T06:00"), "week") == (at("2024-04-29T00:00"), at("2024-05-06T00:00"))
    assert period_before(at("2024-03-01T06:00"), "month") == (at("2024-02-01T00:00"), at("2024-03-01T00:00"))
    assert period_before(at("2024-01-15T00:00"), "month") == (at("2023-12-01T00:00"), at("2024-01-01T00:00"))


def test_schedules_are_checked():
    assert Schedule.parse("access-review|0 6 1 * *|month") == Schedule("access-review", "0 6 1 * *", "month")
    assert Schedule.parse("incident-timeline|0 7 * * *|day|user:bob").scope == "user:bob"
    for bad in ("access-review|0 6 1 * *", "access-review|0 6 1 *|month", "access-review|0 6 1 * *|year"):
        with pytest.raises(ReportError, match="NAME\\|CRON\\|PERIOD"):
            Schedule.parse(bad)
    with pytest.raises(ReportError, match="no report named"):
        Schedule.parse("nope|0 6 1 * *|month")
    with pytest.raises(ReportError, match="takes a scope"):
        Schedule.parse("incident-timeline|0 6 1 * *|month")


class _Leader:
    def __init__(self, leads: bool) -> None:
        self.leads = leads

    def is_leader(self) -> bool:
        return self.leads


def test_the_worker_generates_each_period_once_and_copies_it_to_the_archive(seeded, tmp_path):
    kwargs = {"name": "auth-failures", "period": "day", "out_root": str(tmp_path / "reports"),
              "trusted_keys": seeded.trusted, "archive_root": str(seeded.store.root), "now": lambda: at("2024-05-03T06:00")}
    assert scheduled_report(seeded.pool, leader=_Leader(False), **kwargs) is None
    generated = scheduled_report(seeded.pool, leader=_Leader(True), publish_to_archive=True, **kwargs)
    assert generated is not None
    assert (generated.params.start, generated.params.end) == (at("2024-05-02T00:00"), at("2024-05-03T00:00"))
    assert generated.figures["Failed authentications"] == 32  # the spray (30), the lockout, alice's daily typo
    assert generated.proof.ok and generated.proof.covered
    [row] = stored_reports.history(seeded.pool, name="auth-failures")
    assert row.generated_by == "worker" and "reports/auth-failures/20240502T0000_20240503T0000_" in row.location
    copied = Path(row.location)
    assert (copied / "report.pdf").read_bytes() == generated.pdf.read_bytes()
    assert scheduled_report(seeded.pool, **kwargs) is None  # already generated for that day
    assert len(stored_reports.history(seeded.pool, name="auth-failures")) == 1


def test_the_worker_schedules_configured_reports_on_the_leader(settings, services):
    from auditwatch.settings import SettingsError
    from auditwatch.worker import build_scheduler

    configured = settings.replace(report_schedules=("access-review|0 6 1 * *|month",))
    scheduler = build_scheduler(services.pool, configured, leader=_Leader(True))
    job = scheduler.get_job("report_0_access-review")
    assert job is not None and job.func_ref == "reports.jobs:scheduled_report"
    assert "day='1'" in str(job.trigger) and "hour='6'" in str(job.trigger)
    assert job.kwargs["name"] == "access-review" and job.kwargs["period"] == "month"
    with pytest.raises(SettingsError, match="report_schedules\\[0\\]"):
        build_scheduler(services.pool, settings.replace(report_schedules=("access-review|bad|month",)),
                        leader=_Leader(True))
