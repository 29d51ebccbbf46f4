"""A close's third day, scored by a model refitted during the close (as the worker does every 6 hours).

The first two days of the close are in the history. Learned as ordinary behaviour, they lift every member's
baseline: on the third day fewer members look moved, the cohort shift goes unseen, and members are judged on
baselines the close has half absorbed. The detector learns its baselines without the history's cohort shifts.
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
