"""generated_reports is append-only for the application role (the API's and the dashboard's), as audit_events
is: it stores a run, it cannot change or remove one (SQLSTATE 42501). Migration 0020."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from storage.timescale import reports as stored_reports
from storage.timescale import self_audit

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _stored(pool) -> stored_reports.StoredReport:
    report = stored_reports.StoredReport(
        report_id=uuid.uuid4(), name="access-review", version=1, period_start=datetime(2024, 5, 1, tzinfo=UTC),
        period_end=NOW, scope="all", parameters={"report": "access-review"}, figures={"keys": 3},
        files={"report.pdf": "ab" * 32}, sha256="cd" * 32, generated_by="apikey:auditor", generated_at=NOW,
        location="/srv/reports/x")
    stored_reports.save(pool, report, self_audit.record("report_generated", "apikey:auditor", now=NOW,
                                                        resource_id=str(report.report_id)))
    return report


def _refused(pool, statement: str, params=()) -> str:
    with pool.connection() as c, pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
        c.execute(statement, params)
    return caught.value.sqlstate


def test_the_app_role_stores_a_report_but_cannot_change_or_remove_one(app_pool, pool):
    report = _stored(app_pool)  # the dashboard's and the API's role stores runs (with their audit record)
    rid = report.report_id
    assert _refused(app_pool, "UPDATE generated_reports SET sha256 = %s WHERE report_id = %s", ("00" * 32, rid)) \
        == "42501"
    assert _refused(app_pool, "UPDATE generated_reports SET files = '{}'::jsonb") == "42501"
    assert _refused(app_pool, "DELETE FROM generated_reports WHERE report_id = %s", (rid,)) == "42501"
    assert _refused(app_pool, "TRUNCATE generated_reports") == "42501"
    assert stored_reports.get(pool, rid) == report  # unchanged, and still readable by both
    assert stored_reports.get(app_pool, rid) == report
    with app_pool.connection() as c:  # a WHERE that matches nothing changes nothing and is not an error
        c.execute("DELETE FROM generated_reports WHERE report_id = %s", (uuid.uuid4(),))


def test_the_owner_that_migrates_keeps_the_last_word(pool):
    report = _stored(pool)
    with pool.connection() as c:
        assert c.execute("DELETE FROM generated_reports WHERE report_id = %s", (report.report_id,)).rowcount == 1
