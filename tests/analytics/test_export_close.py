"""Cohort shifts in ``export_volume``: what makes one, and what it must not hide.

A close's third day, scored by a model refitted during the close (as the worker does every 6 hours): the first
two days of the close are in the history. Learned as ordinary behaviour, they lift every member's baseline: on
the third day fewer members look moved, the cohort shift goes unseen, and members are judged on baselines the
close has half absorbed. The detector learns its baselines without the history's cohort shifts.

And a lone member's afternoon of exports in a small department is not a cohort shift, however many windows it
fills: otherwise the thief's own windows become the "peers who moved" that each of them is judged among.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from analytics.detectors import ExportVolume
from tests.analytics.conftest import event, frame

START = datetime(2024, 5, 6, tzinfo=UTC)  # a Monday
DAYS = 15
CLOSE = (12, 13, 14)  # the last three days
FINANCE = [f"fin{i:02d}" for i in range(40)]
SALES = [f"sal{i:02d}" for i in range(60)]
THIEF = "fin07"
THEFT_AT = START + timedelta(days=14, hours=13)


@pytest.fixture(scope="module")
def month() -> pl.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for day in range(DAYS):
        for hour in range(8, 17):
            at = START + timedelta(days=day, hours=hour)
            for user in FINANCE + SALES:
                closing = day in CLOSE and user in FINANCE
                if rng.random() < (0.6 if closing else 0.15):
                    for _ in range(int(rng.integers(1, 4 if closing else 2))):
                        size = rng.lognormal(10.5 if closing else 8.0, 0.7)
                        rows.append(event(at + timedelta(minutes=float(rng.uniform(0, 59))), user, "data_export",
                                          metadata={"rows": round(size)}))
    # Taken under cover of the close: six exports in an hour, each far beyond the close's own.
    rows += [event(THEFT_AT + timedelta(minutes=8 * i), THIEF, "data_export", metadata={"rows": 2_500_000})
             for i in range(6)]
    return frame(*rows).sort("timestamp")


@pytest.fixture(scope="module")
def scored(month) -> tuple[ExportVolume, pl.DataFrame]:
    groups = {u: "finance" for u in FINANCE} | {u: "sales" for u in SALES}
    third = START + timedelta(days=CLOSE[-1])
    detector = ExportVolume(peer_groups=groups).fit(month.filter(pl.col("timestamp") < third))
    return detector, detector.score_frame(month.filter(pl.col("timestamp") >= third), start=third)


def test_the_historys_close_days_are_left_out_of_the_baselines(scored):
    detector, _ = scored
    assert detector.shifted_.rows() == [(START + timedelta(days=d), "finance") for d in CLOSE[:2]]


def test_the_third_day_of_a_close_is_still_a_cohort_shift_in_every_window(scored):
    _, found = scored
    finance = found.filter(pl.col("peer_group") == "finance")
    assert set(finance["window"]) == {"10m", "1h", "4h"}
    assert finance.group_by("window").agg(pl.col("cohort").min())["cohort"].min() > 0


def test_members_closing_are_not_flagged_and_the_theft_under_cover_of_the_close_is(scored):
    _, found = scored
    flagged = found.filter(pl.col("score") >= 0.6)
    assert set(flagged["entity_value"]) == {THIEF}, flagged.select("entity_value", "window", "window_start", "score")
    assert flagged["window_start"].min() <= THEFT_AT + timedelta(hours=1)


def test_one_members_afternoon_of_exports_is_not_a_cohort_shift_that_hides_it():
    """Eight people in operations; one exports 45 files, each ten times their usual, over six hours. Every
    window of that afternoon is above their baseline, more than ``min_cohort`` of them, but it is one person."""
    rng = np.random.default_rng(5)
    ops = [f"ops{i}" for i in range(8)]
    rows = []
    for day in range(10):
        for hour in range(8, 17):
            for user in ops + SALES:
                if rng.random() < 0.15:
                    rows.append(event(START + timedelta(days=day, hours=hour, minutes=float(rng.uniform(0, 59))),
                                      user, "data_export", metadata={"rows": round(rng.lognormal(8.0, 0.7))}))
    taken = START + timedelta(days=9, hours=10)
    rows += [event(taken + timedelta(minutes=8 * i), "ops3", "data_export",
                   metadata={"rows": round(rng.lognormal(10.5, 0.5))}) for i in range(45)]
    month = frame(*rows).sort("timestamp")
    last = START + timedelta(days=9)
    detector = ExportVolume(peer_groups={u: "ops" for u in ops} | {u: "sales" for u in SALES})
    found = detector.fit(month.filter(pl.col("timestamp") < last)).score_frame(
        month.filter(pl.col("timestamp") >= last), start=last)
    thief = found.filter(pl.col("entity_value") == "ops3")
    assert thief["cohort"].max() == 0
    assert thief["score"].max() >= 0.6
    assert set(found.filter(pl.col("score") >= 0.6)["entity_value"]) == {"ops3"}
