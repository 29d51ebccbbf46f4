"""Investigation context: an entity's hourly baseline and its rank among peers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from analytics.investigation import hourly_baseline, peer_comparison

T = datetime(2024, 5, 1, tzinfo=UTC)
H = timedelta(hours=1)


def test_hourly_baseline_compares_each_hour_with_the_same_hour_on_earlier_days():
    # Three days: 2 events at 10:00 on the first two days (3 and 1), then 40 on the third; other hours empty.
    hourly = pl.DataFrame({"bucket": [T + 10 * H, T + 34 * H, T + 58 * H, T + 59 * H],
                           "events": [3, 1, 40, 1]})
    result = hourly_baseline(hourly, until=T + 48 * H)
    assert result["bucket"].to_list() == [T + 10 * H + i * H for i in range(50)]  # missing hours filled
    at = {r["bucket"]: r for r in result.iter_rows(named=True)}
    spike = at[T + 58 * H]
    assert (spike["events"], spike["expected"], spike["upper"], spike["above"]) == (40.0, 2.0, 5.0, True)
    quiet = at[T + 59 * H]  # 11:00: never anything before, so one event is above a zero band
    assert (quiet["expected"], quiet["upper"], quiet["above"]) == (0.0, 0.0, True)
    assert at[T + 34 * H]["above"] is False  # 1 against a mean of 2 and a band of 5


def test_hourly_baseline_of_nothing():
    empty = pl.DataFrame(schema={"bucket": pl.Datetime("us", "UTC"), "events": pl.Int64})
    assert hourly_baseline(empty, until=T).columns == ["bucket", "events", "expected", "upper", "above"]


USERS = pl.DataFrame({"user_id": ["ann", "bob", "cyd", "dan", "eve"],
                      "department": ["hr", "hr", "hr", "hr", "legal"]})


def test_peer_comparison_ranks_the_entity_within_its_department():
    counts = pl.DataFrame({"user_id": ["ann", "ann", "bob", "eve"], "events": [30, 20, 5, 900]})
    peers = peer_comparison(counts, USERS, entity="ann")
    assert peers["user_id"].to_list() == ["ann", "bob", "cyd", "dan"]  # eve is in legal
    ann = peers.filter("is_entity").row(0, named=True)
    assert (ann["events"], ann["rank"], ann["percentile"]) == (50, 1, 1.0)
    assert peers.filter(pl.col("user_id") == "cyd")["rank"][0] == 3  # ties share the rank
    with pytest.raises(ValueError, match="not in the user directory"):
        peer_comparison(counts, USERS, entity="mallory")


def test_an_entity_first_seen_in_the_window_has_a_zero_baseline_from_since():
    """An attacker's address has no earlier hours at all: from ``since`` on, its quiet hours count as zero."""
    hourly = pl.DataFrame({"bucket": [T + 62 * H], "events": [60]})
    alone = hourly_baseline(hourly, until=T + 62 * H).row(0, named=True)
    assert alone["expected"] is None and alone["above"] is None  # nothing to compare with
    seen = hourly_baseline(hourly, since=T, until=T + 62 * H)
    window = seen.filter(pl.col("bucket") == T + 62 * H).row(0, named=True)
    assert (window["events"], window["expected"], window["upper"], window["above"]) == (60.0, 0.0, 0.0, True)
    assert seen["bucket"].min() == T
