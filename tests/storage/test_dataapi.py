"""The Python data API: the query API's filters over COPY into Polars, read-only by default."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import psycopg
import pytest
from psycopg.types.json import Jsonb

from storage.dataapi import AuditData, connect
from storage.errors import InvalidFilter, TooManyRows
from storage.events import COLUMNS, Outcome
from storage.timescale import queries, rollups
from storage.timescale.queries import EventQuery
from storage.timescale.writer import EventWriter

from .conftest import T0

START, END = T0 - timedelta(hours=6), T0 + timedelta(hours=1)


@pytest.fixture
def aw(db_url):
    with connect(db_url) as data:
        yield data


@pytest.fixture
def stored(pool, make_event):
    """Six hours of mixed events, with awkward text in a few of them."""
    events = []
    for i in range(360):
        events.append(make_event(
            timestamp=T0 - timedelta(minutes=i, seconds=7),
            event_type=("user_login", "file_download", "data_export")[i % 3],
            outcome=Outcome.FAILURE if i % 5 == 0 else Outcome.SUCCESS,
            user_id=f"user{i % 4}",
            source_ip=("10.0.0.1", "10.0.1.9", "2001:db8::7", "81.2.69.142")[i % 4],
            metadata={"dataset": ("crm", "hr")[i % 2], "rows": i},
            resource_id=f"doc-{i}" if i % 6 else None,
        ))
    events.append(make_event(
        timestamp=T0 - timedelta(seconds=1), user_id="mallory", user_agent='curl/8, "quoted"\nnext line',
        metadata={"note": 'comma, "quote", newline\n, tab\t, unicode é☃', "nested": {"a": [1, None, "x"]}},
        resource_id="", source="",
    ))
    EventWriter(pool).write(events)
    return events


def _ids(frame: pl.DataFrame) -> list[str]:
    return frame["event_id"].to_list()


def _search_ids(pool, **filters) -> list[str]:
    """What GET /api/v1/logs returns for the same filters (newest first), oldest first."""
    page = queries.search(pool, EventQuery(limit=1000, **filters))
    return [str(e.event_id) for e in reversed(page.events)]


FILTERS = [
    ({}, {}),
    ({"start": START + timedelta(hours=2), "end": START + timedelta(hours=3)},
     {"start_time": START + timedelta(hours=2), "end_time": START + timedelta(hours=3)}),
    ({"user_id": "user1"}, {"user_id": "user1"}),
    ({"event_type": ["user_login", "data_export"]}, {"event_types": ("user_login", "data_export")}),
    ({"event_type": "file_download"}, {"event_types": ("file_download",)}),
    ({"outcome": "failure"}, {"outcome": Outcome.FAILURE}),
    ({"source_ip": "10.0.0.0/16"}, {"source_ip": "10.0.0.0/16"}),
    ({"source_ip": "2001:db8::7"}, {"source_ip": "2001:db8::7/128"}),
    ({"metadata": {"dataset": "hr"}}, {"metadata": {"dataset": "hr"}}),
    ({"metadata": {"nested": {"a": ["x"]}}}, {"metadata": {"nested": {"a": ["x"]}}}),
    ({"user_id": "user2", "outcome": "success", "event_type": "data_export", "source_ip": "2001:db8::/32"},
     {"user_id": "user2", "outcome": Outcome.SUCCESS, "event_types": ("data_export",),
      "source_ip": "2001:db8::/32"}),
]


@pytest.mark.parametrize(("api_filters", "query_filters"), FILTERS)
def test_events_match_the_query_api_for_the_same_filters(aw, pool, stored, api_filters, query_filters):
    frame = aw.events(**api_filters)
    expected = _search_ids(pool, **query_filters)
    assert expected, "each filter should match something in the fixture"
    assert _ids(frame) == expected
    assert frame["timestamp"].is_sorted()


def test_events_round_trip_every_column_with_its_type(aw, stored):
    frame = aw.events()
    assert frame.columns == [*COLUMNS, "tier"] and frame["tier"].unique().to_list() == ["hot"]
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert frame.schema["received_at"] == pl.Datetime("us", "UTC")
    by_id = {r["event_id"]: r for r in frame.iter_rows(named=True)}
    assert len(by_id) == len(stored)
    for event in stored:
        row = by_id[str(event.event_id)]
        assert row["timestamp"] == event.timestamp
        assert row["received_at"] == event.received_at
        assert (row["event_type"], row["user_id"], row["outcome"]) == (event.event_type, event.user_id,
                                                                      str(event.outcome))
        assert row["source_ip"] == event.source_ip
        assert row["user_agent"] == event.user_agent
        assert row["resource_id"] == event.resource_id
        assert row["source"] == event.source
        assert orjson.loads(row["metadata"]) == event.metadata


def test_metadata_is_queryable_with_polars_json_expressions(aw, stored):
    rows = aw.events(metadata={"dataset": "crm"}).select(
        pl.col("metadata").str.json_path_match("$.rows").cast(pl.Int64).alias("rows"))
    assert rows["rows"].to_list() == sorted((i for i in range(360) if i % 2 == 0), reverse=True)


def test_columns_subset_and_unknown_columns(aw, stored):
    frame = aw.events(columns=["timestamp", "user_id"], user_id="mallory")
    assert frame.columns == ["timestamp", "user_id", "tier"] and frame.height == 1
    with pytest.raises(ValueError, match="unknown event columns"):
        aw.events(columns=["timestamp", "password"])


def test_lazy_frames_and_the_row_ceiling(aw, stored):
    lazy = aw.events(lazy=True)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.filter(pl.col("user_id") == "mallory").collect().height == 1
    assert aw.events(max_rows=len(stored)).height == len(stored)
    with pytest.raises(TooManyRows, match="narrow the time range"):
        aw.events(max_rows=len(stored) - 1)
    assert aw.events(max_rows=None).height == len(stored)


def test_empty_results_keep_their_schema(aw):
    frame = aw.events()
    assert frame.height == 0 and frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert aw.anomalies().height == 0
    empty = aw.time_range()
    assert (empty.first, empty.last, empty.events) == (None, None, 0)


def test_time_range_finds_the_data(aw, stored):
    found = aw.time_range()
    assert found.events == len(stored)
    assert found.first == min(e.timestamp for e in stored)
    assert found.last == max(e.timestamp for e in stored)
    # In datetime.UTC, not the session's Etc/UTC: Polars refuses to compare across zone names.
    assert found.first.tzinfo is UTC and found.last.tzinfo is UTC
    assert aw.events().filter(pl.col("timestamp") <= found.last).height == len(stored)


def test_rollup_equals_counting_the_events(aw, pool, stored):
    rollups.refresh(pool, now=T0 + timedelta(minutes=2))
    series = aw.rollup(START, END, interval="1h", group_by=("event_type", "outcome"))
    counted = (aw.events(START, END).drop("tier")
               .group_by(pl.col("timestamp").dt.truncate("1h").alias("bucket"), "event_type", "outcome")
               .agg(pl.len().cast(pl.Int64).alias("events"))
               .sort("bucket", "event_type", "outcome"))
    assert series.sort("bucket", "event_type", "outcome").equals(counted)
    one_user = aw.rollup(START, END, interval="1m", group_by=("user_id",), user_id="user3", outcome="failure")
    assert one_user["events"].sum() == aw.events(START, END, user_id="user3", outcome="failure").height > 0


def _anomaly(conn, **fields):
    row = {"detector": "volume", "detector_version": "1", "entity_type": "user", "entity_value": "user1",
           "window_start": T0 - timedelta(hours=1), "window_end": T0, "score": 0.5, "severity": "medium",
           "explanation": Jsonb({"summary": "more logins than usual"}), "sample_event_ids": [uuid.uuid4()],
           **fields}
    conn.execute("INSERT INTO anomalies (detector, detector_version, entity_type, entity_value, window_start, "
                 "window_end, score, severity, explanation, sample_event_ids) VALUES (%(detector)s, "
                 "%(detector_version)s, %(entity_type)s, %(entity_value)s, %(window_start)s, %(window_end)s, "
                 "%(score)s, %(severity)s, %(explanation)s, %(sample_event_ids)s)", row)
    return row


def test_anomalies_with_their_filters(aw, conn):
    first = _anomaly(conn)
    _anomaly(conn, detector="spray", entity_type="source_ip", entity_value="185.220.101.7", score=0.97,
             severity="critical", window_start=T0 - timedelta(hours=3), window_end=T0 - timedelta(hours=2),
             sample_event_ids=[])
    _anomaly(conn, entity_value="user2", score=0.2, severity="low", window_start=T0 + timedelta(hours=1),
             window_end=T0 + timedelta(hours=2))
    frame = aw.anomalies()
    assert frame["entity_value"].to_list() == ["185.220.101.7", "user1", "user2"]
    assert frame.schema["window_start"] == pl.Datetime("us", "UTC")
    assert frame.schema["sample_event_ids"] == pl.List(pl.String)
    user1 = frame.row(1, named=True)
    assert user1["sample_event_ids"] == [str(first["sample_event_ids"][0])]
    assert orjson.loads(user1["explanation"]) == {"summary": "more logins than usual"}
    assert frame.row(0, named=True)["sample_event_ids"] == []
    assert aw.anomalies(min_severity="high")["detector"].to_list() == ["spray"]
    assert aw.anomalies(min_score=0.4)["entity_value"].to_list() == ["185.220.101.7", "user1"]
    assert aw.anomalies(detector=["volume"], entity_type="user")["entity_value"].to_list() == ["user1", "user2"]
    # Overlap: a window that ends exactly at `start` is outside; one that started before it is in.
    assert aw.anomalies(start=T0, end=T0 + timedelta(minutes=90))["entity_value"].to_list() == ["user2"]
    assert aw.anomalies(start=T0 - timedelta(minutes=30), end=T0)["entity_value"].to_list() == ["user1"]
    with pytest.raises(TooManyRows):
        aw.anomalies(max_rows=2)


def test_alerts_as_the_alerting_engine_stores_them(aw, pool, conn):
    from alerts.engine import AlertConfig, evaluate
    from alerts.routing import load_routing
    from storage.timescale import alerts as alert_store

    now = datetime.now(UTC).replace(microsecond=0)
    _anomaly(conn, entity_value="bob", score=0.99, severity="critical", window_start=now - timedelta(minutes=6),
             window_end=now - timedelta(minutes=5))
    evaluate(pool, AlertConfig(routing=load_routing(None)), now=now)
    stored = alert_store.list_alerts(pool)
    frame = aw.alerts()
    # The same alerts; the orders differ by design once states mix (list_alerts puts firing first, the data API
    # sorts by updated_at), as they do here with the pending worker_leader_missing health alert.
    assert stored and sorted(frame["fingerprint"].to_list()) == sorted(a.fingerprint for a in stored)
    row = frame.filter(rule_id="critical_anomaly").row(0, named=True)
    assert row["group_values"] and orjson.loads(row["group_values"]) == {"entity_type": "user",
                                                                         "entity_value": "bob"}
    assert row["state"] in ("pending", "firing") and row["started_at"].tzinfo is not None
    assert frame.schema["flapping"] == pl.Boolean and row["flapping"] is False
    assert aw.alerts(state="resolved").is_empty()
    assert aw.alerts(state=["pending", "firing"], rule_id="critical_anomaly").height == 1
    assert aw.alerts(since=now + timedelta(hours=1)).is_empty()
    with pytest.raises(InvalidFilter, match="pending, firing, resolved"):
        aw.alerts(state="open")


def test_users_frame(aw, users):
    users("alice", "bob")
    frame = aw.users()
    assert frame["user_id"].to_list() == ["alice", "bob"]
    assert frame.schema["created_at"] == pl.Datetime("us", "UTC")
    assert frame["disabled_at"].is_null().all()


def test_the_connection_is_read_only_by_default(aw, pool, stored):
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), aw.pool.connection() as conn:
        conn.execute("INSERT INTO settings (key, value, updated_by) VALUES ('x', '1', 'notebook')")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), aw.pool.connection() as conn:
        conn.execute("DELETE FROM audit_events")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        EventWriter(aw.pool).write(stored[:1])
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        rollups.refresh(aw.pool, now=T0)
    assert aw.read_only
    assert aw.events().height == len(stored)  # the pool is still usable after the refusals


def test_read_write_when_asked(db_url):
    with connect(db_url, read_only=False) as writable:
        assert isinstance(writable, AuditData) and not writable.read_only
        with writable.pool.connection() as conn:
            conn.execute("INSERT INTO settings (key, value, updated_by) VALUES ('x', '1', 'notebook')")
            assert conn.execute("SELECT value FROM settings WHERE key = 'x'").fetchone() == (1,)


@pytest.mark.parametrize(("call", "message"), [
    (lambda aw: aw.events(datetime(2024, 5, 1)), "no time zone"),
    (lambda aw: aw.events("yesterday"), "ISO 8601"),
    (lambda aw: aw.events(42), "datetime or an ISO 8601 string"),
    (lambda aw: aw.events(END, START), "before `end`"),
    (lambda aw: aw.events(outcome="maybe"), "success, failure or unknown"),
    (lambda aw: aw.events(source_ip="10.0.0.300"), "CIDR block"),
    (lambda aw: aw.events(source_ip="'; DROP TABLE audit_events; --"), "CIDR block"),
    (lambda aw: aw.events(metadata='{"a": 1}'), "must be a dict"),
    (lambda aw: aw.rollup(START, None), "needs both"),
    (lambda aw: aw.rollup(START, END, interval="5m"), "interval must be one of"),
    (lambda aw: aw.rollup(START, END, group_by=("password",)), "cannot group by"),
    (lambda aw: aw.anomalies(min_severity="urgent"), "low, medium, high, critical"),
    (lambda aw: aw.anomalies(min_score=7), "between 0 and 1"),
])
def test_bad_filters_say_what_to_fix(aw, call, message):
    with pytest.raises(InvalidFilter, match=message):
        call(aw)


def test_iso_strings_are_accepted(aw, stored):
    start = (T0 - timedelta(minutes=10)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert aw.events(start).height == aw.events(T0 - timedelta(minutes=10)).height == 11


# -- across the hot and cold tiers ----------------------------------------------------------------------

@pytest.fixture
def archived(pool, tmp_path):
    """Events on five days past hot retention, archived to Parquet, plus recent hot ones."""
    from storage.cold.store import ColdStore
    from storage.timescale import archive
    from tests.storage.cold_data import NOW, audit, seed

    events = seed(pool)
    archive.run(pool, ColdStore(tmp_path / "archive"), now=NOW, hot_days=90, audit=audit())
    return events, tmp_path / "archive", NOW


@pytest.mark.parametrize("filters", [
    {},
    {"user_id": "bob"},
    {"event_type": ["config_change", "user_login"], "outcome": "failure"},
    {"source_ip": "10.0.0.0/8"},
    {"source_ip": "2001:db8::/32"},
    {"metadata": {"bucket": "hr"}},
    {"metadata": {"nested": {"a": [{"b": "é"}]}}},
], ids=["all", "user", "types+outcome", "ipv4-cidr", "ipv6-cidr", "metadata", "nested-metadata"])
def test_events_read_both_tiers_exactly_like_the_tiered_reader(db_url, pool, archived, filters):
    from storage import tiers
    from storage.cold.store import ColdStore

    events, root, now = archived
    query = EventQuery(user_id=filters.get("user_id"), event_types=tuple(filters.get("event_type", ())),
                       outcome=Outcome(filters["outcome"]) if "outcome" in filters else None,
                       source_ip=filters.get("source_ip"), metadata=filters.get("metadata"))
    reference = tiers.events_frame(pool, ColdStore(root), query).sort("timestamp", "event_id")
    with connect(db_url, archive=root) as aw:
        frame = aw.events(**filters)
    assert frame.height == reference.height > 0
    assert frame["tier"].to_list() == reference["tier"].to_list()
    assert frame.select(COLUMNS).equals(reference.select(COLUMNS).cast(frame.select(COLUMNS).schema))
    assert frame["timestamp"].is_sorted()


def test_both_tiers_lazily_with_a_range_and_the_row_ceiling(db_url, archived):
    events, root, now = archived
    with connect(db_url, archive=root) as aw:
        everything = aw.events()
        # 150 archived, the 10 recent ones hot, and the archiver's own audit events (hot, at `now`).
        assert everything.filter(tier="cold").height == 150
        assert {str(e.event_id) for e in events} <= set(everything["event_id"])
        assert everything.filter(pl.col("timestamp") < now - timedelta(minutes=1)).height == 160
        # A range that cuts across a cold day and the hot tail.
        low, high = now - timedelta(days=97, hours=12), now - timedelta(hours=4)
        ranged = aw.events(low, high)
        assert sorted(ranged["event_id"].to_list()) == sorted(
            str(e.event_id) for e in events if low <= e.timestamp < high)
        lazy = aw.events(lazy=True)
        assert isinstance(lazy, pl.LazyFrame)
        assert lazy.filter(pl.col("tier") == "cold").select(pl.len()).collect().item() == 150
        with pytest.raises(TooManyRows, match="across the hot and cold tiers"):
            aw.events(max_rows=100)
        assert aw.events(max_rows=everything.height).height == everything.height
    with connect(db_url) as hot_only:  # without the archive root, only the hot tier
        assert hot_only.events()["tier"].unique().to_list() == ["hot"]
