"""The platform's own activity is a population of its own: its setup bursts never reach a paging severity,
and the user detectors neither score its principals nor count their events in a user's series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from analytics import jobs
from analytics.events import from_records
from storage.timescale import anomalies as store
from storage.timescale import rollups
from storage.timescale.writer import EventWriter
from tests.analytics.conftest import event, records

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def _write(pool, events: list[dict]) -> None:
    EventWriter(pool).write(records(from_records(events)))


def _steady_config_changes(start: datetime, hours: int) -> list[dict]:
    """Admins change a setting a few times an hour: the organisation's own config_change series."""
    return [event(start + timedelta(minutes=20 * k + 7), f"admin{k % 3}", "config_change") for k in range(3 * hours)]


def test_registering_300_users_through_the_api_does_not_page(pool):
    _write(pool, _steady_config_changes(NOW - timedelta(hours=30), 30))
    jobs.score_job(pool, now=NOW - timedelta(minutes=30))  # the worker is running: history scored, watermarks set
    # `up`'s demo registers 300 users with the admin key: 300 config_change records within a minute.
    setup = NOW - timedelta(minutes=5)
    _write(pool, [event(setup + timedelta(milliseconds=150 * i), "apikey:local-admin-20260504", "config_change",
                        ip="127.0.0.1", metadata={"change": "user_registered"}) for i in range(300)])
    rollups.refresh(pool, now=NOW)
    jobs.score_job(pool, now=NOW)
    found = store.anomalies_frame(pool, store.AnomalyQuery(start=NOW - timedelta(hours=1), end=NOW))
    paging = found.filter(pl.col("severity").is_in(["high", "critical"]))
    assert paging.is_empty(), paging.select("detector", "entity_value", "score").rows()
    # The burst is still seen, in the platform's own series, below paging severity.
    assert set(found.filter(pl.col("entity_value").str.starts_with(jobs.PLATFORM_SERIES))["severity"]) <= {
        "low", "medium"}
    assert found.filter(pl.col("entity_value").str.starts_with("apikey:")).is_empty()


def test_the_users_series_leaves_the_platform_out(pool):
    _write(pool, _steady_config_changes(NOW - timedelta(hours=3), 3)
           + [event(NOW - timedelta(minutes=30), "apikey:ops", "config_change") for _ in range(5)])
    rollups.refresh(pool, now=NOW)
    q = rollups.SeriesQuery(start=NOW - timedelta(hours=4), end=NOW, group_by=("event_type",))
    total = {p: int(rollups.series(pool, q.__class__(**{**q.__dict__, "population": p}))["events"].sum())
             for p in ("all", "users", "platform")}
    assert total == {"all": 14, "users": 9, "platform": 5}
    # A Unix account called "worker" is a user; the platform's principals are its keys and operators.
    assert jobs.people(from_records([event(NOW, "apikey:ops"), event(NOW, "alice"), event(NOW, "CLI:root"),
                                     event(NOW, "worker")]))["user_id"].to_list() == ["alice", "worker"]
