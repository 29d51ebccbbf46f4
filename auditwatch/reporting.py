"""Wiring for reports/: the worker's scheduled report jobs, built from Settings."""

from __future__ import annotations

from datetime import UTC

from apscheduler.triggers.cron import CronTrigger

from auditwatch import integrity
from auditwatch.services import archive_options, archive_root
from auditwatch.settings import Settings, SettingsError
from reports.errors import ReportError
from reports.jobs import Schedule
from storage.integrity import checkpoints


def report_jobs(settings: Settings) -> list[tuple[str, CronTrigger, dict]]:
    """(job id, cron trigger, keyword arguments of reports.jobs:scheduled_report) per configured schedule."""
    if not settings.report_schedules:
        return []
    # The worker signs the checkpoints, so its own key (and the rotated-out ones) are the ones to trust.
    trusted = {checkpoints.public_bytes(integrity.signing_key(settings))} | integrity.trusted_keys(settings)
    out_root = settings.reports_dir or str(settings.resolved_data_dir() / "reports")
    jobs = []
    for i, text in enumerate(settings.report_schedules):
        try:
            schedule = Schedule.parse(text)
            trigger = CronTrigger.from_crontab(schedule.cron, timezone=UTC)
        except (ReportError, ValueError) as exc:
            raise SettingsError(f"report_schedules[{i}]: {exc}") from None
        jobs.append((f"report_{i}_{schedule.name}", trigger, {
            "name": schedule.name, "period": schedule.period, "scope": schedule.scope, "out_root": out_root,
            "trusted_keys": frozenset(trusted), "archive_root": archive_root(settings),
            "archive_options": archive_options(settings), "publish_to_archive": settings.reports_to_archive}))
    return jobs
