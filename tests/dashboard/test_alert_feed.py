"""The alert feed against the real alerts package (runs once alerts/ is merged; skipped before).

The seeded data holds a 60-failure login burst from one IP in 20 minutes. The alerts package's
scheduled jobs (the "alerts." entries of auditwatch.worker.JOBS) are run once over it, which must
fire at least one alert; then viewers see it and admins acknowledge and silence it from the feed.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

actions = pytest.importorskip("alerts.actions")

from auditwatch import worker  # noqa: E402
from storage.timescale import db  # noqa: E402
from tests.dashboard import alert_feed_scenario  # noqa: E402


def test_the_contract_the_feed_relies_on():
    fields = set(actions.AlertView.__dataclass_fields__)
    assert {"fingerprint", "rule_id", "title", "severity", "state", "labels", "group_values", "started_at",
            "updated_at", "resolved_at", "count", "acknowledged_by", "acknowledged_until", "silenced",
            "runbook_url"} <= fields
    assert {"states", "since", "limit"} <= set(inspect.signature(actions.list_alerts).parameters)
    assert {"by", "comment", "until", "audit", "now"} <= set(inspect.signature(actions.acknowledge).parameters)
    assert {"matchers", "starts_at", "ends_at", "created_by", "comment", "audit"} <= set(
        inspect.signature(actions.create_silence).parameters)


@pytest.fixture(scope="module")
def fired(seeded):
    """Run every alerts job once over the seeded burst; the title of an alert it fired."""
    pool = db.open_pool(seeded.url, min_size=1, max_size=4, name="alert-feed")
    try:
        jobs = [target for _, target, *_ in worker.JOBS if target.startswith("alerts.")]
        assert jobs, "auditwatch.worker.JOBS has no alerts job to evaluate the rules"
        for target in jobs:
            module, name = target.split(":")
            getattr(importlib.import_module(module), name)(pool)
        found = actions.list_alerts(pool, states=["firing", "pending"])
        assert found, "no alert fired for a 60-failure login burst from one IP; check the default rules"
        return found[0].title
    finally:
        pool.close()


def test_viewers_see_real_alerts_and_admins_acknowledge_and_silence_them(browser, live, keys, seeded, fired):
    alert_feed_scenario.run(browser, live, keys, seeded, title=fired, screenshot="12-alert-feed-real")
