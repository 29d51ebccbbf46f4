"""Live scoring gives each detector the lookback it declares: slow_failures' week, as `analyze` gives it."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import polars as pl
import pytest

from analytics import jobs, lookback, pipeline, scenarios
from analytics.detectors import SlowFailures
from analytics.events import from_records, write_ndjson
from storage.timescale import anomalies as store
from storage.timescale import watermarks
from storage.timescale.writer import EventWriter
from tests.analytics.conftest import event, records

VICTIM = "u00003"


@pytest.fixture(scope="module")
def dataset() -> tuple[pl.DataFrame, datetime, datetime]:
    """Ten quiet days of 40 people; from day 3, one guess a day at VICTIM from a new address (never resolved).

    Returns the events, the baseline end (day 3, the first guess: models know only what came before) and the
    data's end.
    """
    base = scenarios.generate(users=40, days=10, attack_days=1, seed=5, attacks=False, lookalikes=False,
                              hard=False)
    start = base.start + timedelta(days=3)
    guesses = [event(start + timedelta(days=i, minutes=13), VICTIM, outcome="failure", ip=f"45.{i}.7.9",
                     country="NL", asn="AS9009", ua="python-requests/2.31") for i in range(7)]
    frame = pl.concat([base.events, from_records(guesses)]).sort("timestamp")
    return frame, start, base.end


def _key(frame: pl.DataFrame) -> list[tuple]:
    return sorted((r["entity_type"], r["entity_value"], r["window_start"], round(r["score"], 9))
                  for r in frame.iter_rows(named=True))


def test_the_slow_guessing_needs_the_whole_week(dataset):
    """The premise: with the two days the worker used to read, the 7-day horizon undercounts and scores differ."""
    frame, baseline, _ = dataset
    detector = SlowFailures().fit(frame.filter(pl.col("timestamp") < baseline))
    last = baseline + timedelta(days=6)  # the seventh guess
    week = detector.detect(frame.filter(pl.col("timestamp") >= last - timedelta(days=7)), start=last)
    two_days = detector.detect(frame.filter(pl.col("timestamp") >= last - timedelta(days=2)), start=last)
    assert VICTIM in set(week["entity_value"])
    assert _key(week) != _key(two_days)
    assert lookback.reach(detector, bound=timedelta(days=30)) == timedelta(days=7)
    assert lookback.reach(detector, bound=timedelta(days=2)) == timedelta(days=2)  # the setting bounds it


def test_live_scoring_and_analyze_give_the_same_slow_failures(pool, dataset, run, tmp_path):
    frame, baseline, end = dataset
    path = tmp_path / "events.ndjson"
    write_ndjson(frame, path)
    result = run("analyze", str(path), "--out", str(tmp_path / "anomalies.jsonl"),
                 "--baseline-until", baseline.isoformat())
    assert result.exit_code == 0, result.output
    offline = pl.DataFrame([orjson.loads(line) for line in (tmp_path / "anomalies.jsonl").read_bytes().splitlines()])
    offline = offline.filter(pl.col("detector") == "slow_failures").with_columns(
        pl.col("window_start").str.to_datetime(time_zone="UTC"))

    # Live: the model fitted on everything before the baseline (as `analyze --baseline-until` fits it), the
    # job's watermark there, then runs every 6 h as the worker catches up, one cache kept between them.
    config = jobs.JobConfig(detectors=("slow_failures",), series=False, history=timedelta(days=30),
                            merge_gap=pipeline.MERGE_GAP, late=timedelta(hours=1))
    EventWriter(pool).write(records(frame))
    jobs.refit(pool, "slow_failures", now=baseline + config.end_offset, config=config)
    watermarks.advance_job(pool, "score:slow_failures", baseline + config.late)
    cache = lookback.LookbackCache(refresh=timedelta(days=30))
    at = baseline + timedelta(hours=6)
    while at <= end + timedelta(hours=1):
        jobs.score_job(pool, now=at + config.end_offset, config=config, cache=cache)
        at += timedelta(hours=6)
    live = store.anomalies_frame(pool, store.AnomalyQuery(detectors=("slow_failures",), limit=10_000))
    assert VICTIM in set(offline["entity_value"])
    assert _key(live) == _key(offline)

    # A later run reads from the store only what is new for the week's lookback, not the week again.
    logins = frame.filter(pl.col("event_type") == "user_login")
    before = cache.rows_read
    jobs.score_job(pool, now=at + timedelta(minutes=10) + config.end_offset, config=config, cache=cache)
    assert 0 <= cache.rows_read - before < logins.filter(pl.col("timestamp") >= end - timedelta(days=1)).height
