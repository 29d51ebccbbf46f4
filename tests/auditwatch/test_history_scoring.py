"""`make up`, as the worker lives it: the demo's history is scored, its injected incidents become anomalies,
and nothing pages about the platform's own setup (300 users registered through the API at start)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest

from alerts.dispatch import dispatch
from alerts.engine import evaluate, flush
from analytics.jobs import PLATFORM_SERIES, load, score_job
from auditwatch.alerting import deliver_kwargs, evaluate_kwargs
from auditwatch.worker import analytics_kwargs, score_kwargs
from ingest.demo import DemoTraffic, history_start
from ingest.seed import seed_demo
from storage.auth import Role
from storage.incidents import Incident
from storage.platform import is_platform_principal
from storage.timescale import anomalies, rollups

PAGING = ("high", "critical")


def _platform(entity_value: str) -> bool:
    return is_platform_principal(entity_value) or entity_value.startswith(PLATFORM_SERIES)


def _found(frame: pl.DataFrame, incident: Incident) -> pl.DataFrame:
    return frame.filter(pl.col("entity_value").is_in(sorted(incident.entities))
                        & (pl.col("window_start") <= incident.end) & (pl.col("window_end") > incident.start))


class Worker:
    """The worker's scheduled jobs, called as scheduled with an injected clock."""

    def __init__(self, settings, pool) -> None:
        self.pool = pool
        self.analytics = score_kwargs(settings)  # as scheduled: with the cache kept between runs
        self.evaluate = evaluate_kwargs(settings)["config"]
        self.deliver = deliver_kwargs(settings)

    def tick(self, now: datetime):
        rollups.refresh(self.pool, now=now)
        scored = score_job(self.pool, now=now, **self.analytics)
        evaluate(self.pool, self.evaluate, now=now)
        flush(self.pool, self.evaluate, now=now)
        dispatch(self.pool, self.deliver["notifiers"], now=now, secrets=self.deliver["secrets"])
        return scored


def _sink(settings) -> list[dict]:
    path = settings.resolved_data_dir() / "alerts" / "notifications.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# `up`'s whole first start: 300 registrations, a day of history, and that day learnt an hour at a time (24 fits of
# every detector); minutes on a loaded 2-core machine.
@pytest.mark.timeout(600)
def test_up_scores_the_demo_history_and_pages_nothing_about_the_platform(settings, services, client, make_key):
    pool = services.pool
    admin = make_key(Role.ADMIN, "local-admin-up")
    traffic = DemoTraffic(seed=7, users=300)
    # `up`: the worker starts on an empty store while the demo registers its users through the API ...
    start = datetime.now(UTC)
    worker = Worker(settings, pool)
    worker.tick(start)
    for user in traffic.users:
        response = client.post("/api/v1/users", data=orjson.dumps(user.registration()),
                               headers={**admin, "Content-Type": "application/json"})
        assert response.status_code in (200, 201), response.text
    worker.tick(datetime.now(UTC))
    # ... then sends its day of history (backfilled behind the scoring job's watermark).
    now = datetime.now(UTC)
    begun = history_start(now)  # at a weekend, back to Friday: a quiet weekend alone is too little to learn from
    seeded = seed_demo(pool, start=begun, end=now, now=now)
    assert len(seeded.incidents) >= 4 and seeded.accepted > 15_000
    # The worker ticks every minute; the backfill settles, and is scored once, prequentially.
    scored_history = 0
    for minute in range(1, 5):
        result = worker.tick(now + timedelta(minutes=minute))
        scored_history += result.inserted
    found = anomalies.anomalies_frame(pool, anomalies.AnomalyQuery(start=begun - timedelta(hours=1),
                                                                   end=now + timedelta(hours=1)))
    assert scored_history > 0 and found.height > 0
    # Live scoring no longer uses the models fitted on the empty store at start: they learnt the history.
    live = score_job(pool, now=now + timedelta(minutes=5), **worker.analytics)
    assert worker.analytics["cache"].rows_read > 0  # slow_failures' week of logins came through the cache
    key = worker.analytics["config"].model_key
    for name, version in live.versions.items():
        detector, _ = load(pool, name, version, key=key)
        assert detector.n_events_ > 15_000, name

    # Every injected incident is an anomaly (the dashboard's anomaly widget reads the same frame). One still under
    # way at `now` (the wall clock can fall inside an attack's window) may hold too few of its events to find yet.
    complete = [i for i in seeded.incidents if i.end <= now]
    missed = [i.scenario for i in complete if _found(found, i).is_empty()]
    assert missed == [], f"not found: {missed}; anomalies: {found.select('detector', 'entity_value').rows()}"
    # The first day is learnt an hour at a time from the rest of it: its ordinary sessions are not rare to it
    # (with 12 h learnt in 6 h steps, 20 to 300 sessions of ordinary people were anomalies).
    ordinary = found.filter(pl.col("detector") == "session_chain")
    assert ordinary.height <= 10, ordinary.select("entity_value", "window_start", "severity").rows()
    # One incident, not a window per minute: each (detector, entity) has one row around each attack.
    for incident in complete:
        per_entity = _found(found, incident).group_by("detector", "entity_value").len()
        assert per_entity["len"].max() == 1

    # Nothing about the platform itself reaches a paging severity, and no alert is about it.
    platform = found.filter(pl.col("entity_value").map_elements(_platform, return_dtype=pl.Boolean))
    assert platform.filter(pl.col("severity").is_in(PAGING)).is_empty(), platform.rows()
    paged = [a for n in _sink(settings) for a in n["alerts"] if a["status"] == "firing"]
    about_platform = [a for a in paged if _platform(a["group_values"].get("entity_value")
                                                    or a["group_values"].get("user_id") or "")]
    assert about_platform == []


@pytest.mark.parametrize("hours_ago", [0, 7, 13, 19])
def test_a_store_with_history_is_scored_on_the_first_start(settings, services, hours_ago):
    """Whatever the time of day (where the attacks fall in the warm-up or after it), each is found."""
    pool = services.pool
    now = datetime.now(UTC) - timedelta(hours=hours_ago)
    start = history_start(now)  # as the demo backfills: at least a working day (CI runs at weekends too)
    seeded = seed_demo(pool, start=start, end=now, now=now)
    result = score_job(pool, now=now + timedelta(seconds=30), **analytics_kwargs(settings))
    found = anomalies.anomalies_frame(pool, anomalies.AnomalyQuery(start=start - timedelta(hours=1), end=now))
    assert result.inserted == found.height > 0
    # The whole history was scored, not only its last hour: every attack of the day is an anomaly (those whose
    # window `now` has passed; the labels hold an attack `now` cuts once one of its events is stored).
    missed = [i.scenario for i in seeded.incidents if i.end <= now and _found(found, i).is_empty()]
    assert missed == [], f"not found: {missed}; anomalies: {found.select('detector', 'entity_value').rows()}"
    ordinary = found.filter(pl.col("detector") == "session_chain")
    assert ordinary.height <= 10, ordinary.select("entity_value", "window_start", "severity").rows()
    # A second run over the same store and watermarks changes nothing.
    again = score_job(pool, now=now + timedelta(seconds=30), **analytics_kwargs(settings))
    assert (again.inserted, again.updated) == (0, 0)
