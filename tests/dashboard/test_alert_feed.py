"""The alert feed against the real alerts package (runs once alerts/ is merged; skipped before).

The seeded data holds a 60-failure login burst from one IP in 20 minutes. The alerts package's
scheduled jobs (the "alerts." entries of auditwatch.worker.JOBS) are run once over it, which must
fire at least one alert; then viewers see it and admins acknowledge and silence it from the feed.
"""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, datetime, timedelta

import pytest

actions = pytest.importorskip("alerts.actions")

from apscheduler.util import ref_to_obj  # noqa: E402

from auditwatch import worker  # noqa: E402
from auditwatch.settings import load  # noqa: E402
from storage.auth import Role  # noqa: E402
from storage.events import EventRecord, Outcome  # noqa: E402
from storage.timescale import catalog, db  # noqa: E402
from storage.timescale.writer import EventWriter  # noqa: E402
from tests.conftest import fresh_database, start_server  # noqa: E402
from tests.dashboard import alert_feed_scenario  # noqa: E402
from tests.dashboard.conftest import seed_database  # noqa: E402


def test_the_contract_the_feed_relies_on():
    fields = set(actions.AlertView.__dataclass_fields__)
    assert {"fingerprint", "rule_id", "title", "severity", "state", "labels", "group_values", "started_at",
            "updated_at", "resolved_at", "count", "acknowledged_by", "acknowledged_until", "silenced",
            "runbook_url"} <= fields
    assert {"states", "since", "limit"} <= set(inspect.signature(actions.list_alerts).parameters)
    assert {"by", "comment", "until", "audit", "now"} <= set(inspect.signature(actions.acknowledge).parameters)
    assert {"matchers", "starts_at", "ends_at", "created_by", "comment", "audit"} <= set(
        inspect.signature(actions.create_silence).parameters)


# This module gets its own seeded database and server: the fresh burst below must not change the counts
# that the other dashboard modules assert on their shared, session-wide one.
@pytest.fixture(scope="module")
def seeded(server_url, template_db):
    with fresh_database(server_url, template_db) as url:
        yield seed_database(url)


@pytest.fixture(scope="module")
def keys(seeded):
    pool = db.open_pool(seeded.url, min_size=1, max_size=2, name="alert-feed-keys")
    try:
        return {role.value: catalog.create_key(pool, f"dash-{role.value}", role, "tests")[1] for role in Role}
    finally:
        pool.close()


@pytest.fixture(scope="module")
def live(seeded, keys, tmp_path_factory):
    server = start_server(seeded.url, tmp_path_factory.mktemp("alert-feed-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fired(seeded, tmp_path_factory):
    """Run the worker's alerts jobs once, as it schedules them, over the seeded data; a fired alert's title."""
    settings = load(config_file=None, environ={}, overrides={
        "database_url": seeded.url, "data_dir": str(tmp_path_factory.mktemp("alert-feed"))})
    pool = db.open_pool(seeded.url, min_size=1, max_size=4, name="alert-feed")
    try:
        # A burst happening now: 12 failed logins for one user in the last half minute.
        now = datetime.now(UTC)
        EventWriter(pool).write([EventRecord(
            event_id=uuid.uuid4(), timestamp=now - timedelta(seconds=30 - 2 * i), received_at=now,
            event_type="user_login", user_id="mallory", outcome=Outcome.FAILURE, source_ip="203.0.113.66")
            for i in range(12)])
        jobs = [job for job in worker.build_scheduler(pool, settings).get_jobs() if job.id.startswith("alerts_")]
        assert jobs, "auditwatch.worker.JOBS has no alerts job to evaluate the rules"
        for job in jobs:
            ref_to_obj(job.func_ref)(**job.kwargs)
        found = actions.list_alerts(pool, states=["firing", "pending"])
        assert found, "no alert fired for a 60-failure login burst from one IP; check the default rules"
        return found[0].title
    finally:
        pool.close()


def test_viewers_see_real_alerts_and_admins_acknowledge_and_silence_them(browser, live, keys, seeded, fired):
    alert_feed_scenario.run(browser, live, keys, seeded, title=fired, screenshot="12-alert-feed-real")
