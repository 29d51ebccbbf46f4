"""The worker's rollup-series scoring on a real TimescaleDB: a fresh install's own setup does not page."""

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
SERIES_ONLY = jobs.JobConfig(detectors=("failed_login_burst",), first_run=timedelta(hours=2), series=True)


def _write(pool, events: list[dict]) -> None:
    EventWriter(pool).write(records(from_records(events)))


def _series_anomalies(pool) -> pl.DataFrame:
    stored = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000))
    return stored.filter(pl.col("detector") == "univariate_series")


def test_the_setup_burst_of_a_fresh_store_is_cold_start_not_an_anomaly(pool):
    # `up` on an empty store: the platform registers its users and keys within its first minute, then a
    # config change now and then. Today's code read three hours of zeros before the burst and paged on it.
    setup = NOW - timedelta(minutes=90)
    _write(pool, [event(setup + timedelta(seconds=i), f"u{i:03d}", "config_change") for i in range(45)]
           + [event(setup + timedelta(minutes=m), "admin", "config_change") for m in (20, 47, 71)])
    result = jobs.score_job(pool, now=NOW, config=SERIES_ONLY)
    assert "univariate_series" in result.ranges
    assert _series_anomalies(pool).is_empty()


def test_a_burst_after_a_steady_series_is_still_found(pool):
    start = NOW - timedelta(hours=6)
    steady = [event(start + timedelta(minutes=m, seconds=s), f"u{s:03d}", "file_download")
              for m in range(6 * 60 - 30) for s in range(0, 60, 12)]  # five downloads a minute
    spike = [event(NOW - timedelta(minutes=20, seconds=-i), f"u{i % 50:03d}", "file_download") for i in range(300)]
    _write(pool, steady + spike)
    jobs.score_job(pool, now=NOW, config=SERIES_ONLY)
    found = _series_anomalies(pool)
    assert not found.is_empty()
    assert "event_type=file_download" in found["entity_value"][0]
    assert found["window_start"].min() >= NOW - timedelta(minutes=21)


def test_minutes_that_arrive_after_the_rollups_counted_them_are_read_as_they_are_not_as_zeros(pool):
    """`up`'s demo sends its history's last hour in one go, and the rollups had already counted those minutes
    as empty: read as they stood, the live minutes after an hour of zeros paged as critical spikes (session 25,
    a `make up` run). The scoring job now brings the rollups up to date before it reads the series."""
    start = NOW - timedelta(hours=6)
    arrived_late = NOW - timedelta(hours=1)
    times = [start + timedelta(minutes=m, seconds=s) for m in range(6 * 60) for s in range(0, 60, 3)]
    steady = [(at, event(at, f"u{at.second:03d}", "file_download")) for at in times]  # twenty downloads a minute
    _write(pool, [e for at, e in steady if at < arrived_late])
    rollups.refresh(pool, now=NOW - timedelta(minutes=5))  # counts most of that hour: nothing there yet
    _write(pool, [e for at, e in steady if at >= arrived_late])  # then it arrives

    def minutes() -> list[int]:
        read = rollups.series(pool, rollups.SeriesQuery(start=NOW - timedelta(hours=2), end=NOW - timedelta(minutes=1),
                                                        interval="1m", group_by=("event_type", "outcome")))
        return read["events"].to_list()

    assert len(minutes()) < 119  # what the scorer read before: the late hour's minutes missing (zeros)
    jobs.score_job(pool, now=NOW, config=SERIES_ONLY)
    assert minutes() == [20] * 119
    assert _series_anomalies(pool).is_empty()
