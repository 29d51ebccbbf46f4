"""Widget aggregates: rollups and raw tail agree with the raw events; raw windows are capped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from storage.events import Outcome
from storage.timescale import anomalies, rollups
from storage.timescale import widgets_queries as wq
from storage.timescale.anomalies import AnomalyQuery
from storage.timescale.writer import EventWriter

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def events(pool, make_event):
    """Two days of events; failures concentrated on one user and IP; half before the rollup watermark."""
    made = []
    for i in range(400):
        made.append(make_event(
            timestamp=NOW - timedelta(minutes=7 * i + 1), user_id="mallory" if i % 5 == 0 else f"user{i % 4}",
            event_type=("user_login", "file_download")[i % 2],
            outcome=Outcome.FAILURE if i % 5 == 0 else Outcome.SUCCESS,
            source_ip="203.0.113.9" if i % 5 == 0 else f"10.0.0.{i % 3 + 1}",
            source_country="US" if i % 5 == 0 else "GB",
            received_at=NOW - timedelta(minutes=7 * i + 1) + timedelta(seconds=2)))
    EventWriter(pool).write(made)
    rollups.refresh(pool, now=NOW - timedelta(hours=12))
    return made


def test_totals_and_top_values_match_the_raw_events(pool, events):
    start = NOW - timedelta(hours=30)
    in_range = [e for e in events if e.timestamp >= start]
    assert wq.total(pool, start, NOW) == len(in_range)
    top = wq.top_values(pool, "user_id", start, NOW, outcome="failure", limit=3)
    assert top.rows() == [("mallory", sum(1 for e in in_range if e.outcome == Outcome.FAILURE))]
    by_ip = wq.top_values(pool, "source_ip", start, NOW, limit=2)
    assert by_ip.height == 2 and by_ip["events"].to_list() == sorted(by_ip["events"].to_list(), reverse=True)
    # The cross-filter narrows; a widget's own type filter and the cross-filter can exclude each other.
    only = wq.Filters(user_id="mallory")
    assert wq.total(pool, start, NOW, only) == sum(1 for e in in_range if e.user_id == "mallory")
    assert wq.total(pool, start, NOW, wq.Filters(event_type="user_login"), event_types=("file_download",)) == 0


@pytest.mark.parametrize("dimension", ["user_id", "source_ip"])
@pytest.mark.parametrize("outcome", [None, "failure", "success"])
def test_top_values_rank_exactly_like_the_raw_events_across_rollup_edges_and_tail(pool, events, dimension, outcome):
    """Counted in the database over minute edges, whole hours and the raw tail past the watermark: the same
    counts, most first, ties by the value's text (bytewise), as counting the raw events here."""
    start = NOW - timedelta(hours=30, minutes=17)  # not on an hour: a minute edge at each end
    counts: dict[str, int] = {}
    for e in events:
        if e.timestamp >= start and (outcome is None or e.outcome.value == outcome):
            value = getattr(e, dimension)
            counts[str(value)] = counts.get(str(value), 0) + 1
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].encode()))
    for limit in (1, 3, 100):
        got = wq.top_values(pool, dimension, start, NOW, outcome=outcome, limit=limit)
        assert got.rows() == expected[:limit]
    assert wq.top_values(pool, dimension, NOW - timedelta(days=90), NOW - timedelta(days=60)).height == 0


def test_top_refuses_what_it_cannot_rank(pool):
    q = rollups.SeriesQuery(start=NOW - timedelta(hours=1), end=NOW, group_by=("user_id",))
    with pytest.raises(ValueError, match="cannot rank by"):
        rollups.top(pool, [q], "metadata", 10)
    with pytest.raises(ValueError, match="limit must be"):
        rollups.top(pool, [q], "user_id", 0)
    with pytest.raises(ValueError, match="group by .source_ip. alone"):
        rollups.top(pool, [q], "source_ip", 10)


def test_hour_of_week_buckets_by_weekday_and_hour(pool, events):
    start = NOW - timedelta(days=3)
    frame = wq.hour_of_week(pool, start, NOW)
    assert int(frame["events"].sum()) == sum(1 for e in events if e.timestamp >= start.replace(minute=0))
    expected = {}
    for e in events:
        key = (e.timestamp.isoweekday(), e.timestamp.hour)
        expected[key] = expected.get(key, 0) + 1
    assert {(w, h): n for w, h, n in frame.iter_rows()} == expected


@pytest.mark.parametrize("days", [1, 3, 30])
def test_countries_over_any_range_match_the_raw_events(pool, events, days):
    """From the country rollups, exact to the minute (edges, whole hours, the raw tail past the watermark)."""
    start = NOW - timedelta(days=days, minutes=13)
    frame, used = wq.countries(pool, start, NOW)
    assert used == start
    in_range = [e for e in events if e.timestamp >= start]
    assert frame.rows() == sorted(
        [(c, sum(1 for e in in_range if e.source_country == c),
          sum(1 for e in in_range if e.source_country == c and e.outcome == Outcome.FAILURE)) for c in ("GB", "US")],
        key=lambda row: -row[1])
    by_type = wq.countries(pool, start, NOW, wq.Filters(event_type="file_download", outcome="success"))[0]
    assert dict((c, n) for c, n, _ in by_type.iter_rows()) == {
        "GB": sum(1 for e in in_range if e.event_type == "file_download" and e.outcome == Outcome.SUCCESS)}


def test_countries_under_a_user_or_address_filter_read_at_most_a_day_of_raw_events(pool, events):
    for filters in (wq.Filters(user_id="mallory"), wq.Filters(source_ip="203.0.113.0/24")):
        frame, used = wq.countries(pool, NOW - timedelta(days=30), NOW, filters)
        assert used == NOW - wq.RAW_WINDOW_CAP
        day = [e for e in events if e.timestamp >= used and e.user_id == "mallory"]
        assert frame.rows() == [("US", len(day), len(day))]
    assert wq.countries(pool, NOW - timedelta(days=30), NOW, wq.Filters(user_id="nobody"))[0].height == 0


def test_ingest_lag_over_the_recent_window(pool, events):
    lag = wq.ingest_lag(pool, now=NOW)
    assert lag.events == 1 and lag.p95_seconds == pytest.approx(2.0)
    assert wq.ingest_lag(pool, now=NOW + timedelta(days=1)).events == 0


def test_anomalies_are_read_in_the_0007_shape(pool, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        for score, entity in ((0.9, "mallory"), (0.4, "bob")):
            conn.execute(
                "INSERT INTO anomalies (detector, detector_version, entity_type, entity_value, window_start, "
                "window_end, score, severity, explanation, sample_event_ids) VALUES "
                "('volume', '3', 'user', %s, %s, %s, %s, 'high', %s, %s)",
                (entity, NOW - timedelta(hours=1), NOW, score, Jsonb({"summary": f"{entity} is odd"}),
                 [uuid.uuid4()]))
    def query(**narrow):
        return anomalies.list_anomalies(pool, AnomalyQuery(start=NOW - timedelta(days=1), end=NOW, order="score",
                                                           **narrow))

    found = query()
    assert [a.entity_value for a in found] == ["mallory", "bob"]
    assert found[0].explanation["summary"] == "mallory is odd" and len(found[0].sample_event_ids) == 1
    assert [a.entity_value for a in query(min_score=0.5)] == ["mallory"]
    assert [a.entity_value for a in query(entity_value="bob")] == ["bob"]
    assert anomalies.get_anomaly(pool, found[1].anomaly_id) == found[1]
    assert anomalies.anomaly_count(pool, AnomalyQuery(start=NOW - timedelta(days=1), end=NOW)) == 2
