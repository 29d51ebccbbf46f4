"""Rollups: the same assertions on whichever edition runs (native continuous aggregates on the
community edition, watermark-refreshed tables on Apache)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from psycopg import sql

from storage.events import Outcome
from storage.timescale import erasure, rollups
from storage.timescale.rollups import SeriesQuery
from storage.timescale.writer import EventWriter

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
RAW_1M = """
    SELECT time_bucket(INTERVAL '1 minute', "timestamp") AS bucket, event_type, outcome, user_id,
           host(source_ip) AS ip, count(*) AS events
    FROM audit_events GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""
ROLLUP_1M = """
    SELECT bucket, event_type, outcome, user_id, host(source_ip) AS ip, sum(events)::bigint
    FROM events_1m GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""


@pytest.fixture
def traffic(pool, make_event):
    """Three hours of mixed events, the newest a minute before NOW."""
    events = []
    for i in range(600):
        events.append(make_event(
            timestamp=NOW - timedelta(minutes=1) - timedelta(seconds=18 * i),
            event_type=("user_login", "file_download", "data_export")[i % 3],
            outcome=Outcome.FAILURE if i % 7 == 0 else Outcome.SUCCESS,
            user_id=f"user{i % 5}",
            source_ip=f"10.0.{i % 2}.{i % 4 + 1}",
            source_country=(None, "GB", "US", "JP")[i % 4],
        ))
    EventWriter(pool).write(events)
    return events


def _raw_series(conn, step: str, where: str = "TRUE") -> list[tuple]:
    return conn.execute(
        f"SELECT time_bucket(INTERVAL '{step}', \"timestamp\"), event_type, count(*) FROM audit_events "  # noqa: S608
        f"WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2").fetchall()


def _frame_rows(frame: pl.DataFrame) -> list[tuple]:
    return [(r["bucket"], r["event_type"], r["events"]) for r in frame.iter_rows(named=True)]


def test_refresh_materialises_exactly_the_raw_counts(pool, conn, traffic):
    result = rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    assert result.watermark_1m == NOW + timedelta(minutes=1)
    assert conn.execute(ROLLUP_1M).fetchall() == conn.execute(RAW_1M).fetchall()
    hourly = conn.execute("SELECT bucket, event_type, sum(events)::bigint FROM events_1h "
                          "WHERE bucket < %s GROUP BY 1, 2 ORDER BY 1, 2", (result.watermark_1h,)).fetchall()
    raw_hourly = [r for r in _raw_series(conn, "1 hour") if r[0] < result.watermark_1h]
    assert hourly == raw_hourly and hourly
    # The coarse twins (type and outcome only) hold the same counts.
    coarse = conn.execute("SELECT bucket, event_type, sum(events)::bigint FROM events_type_1m "
                          "GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    assert coarse == _raw_series(conn, "1 minute")
    coarse_hourly = conn.execute("SELECT bucket, event_type, sum(events)::bigint FROM events_type_1h "
                                 "WHERE bucket < %s GROUP BY 1, 2 ORDER BY 1, 2", (result.watermark_1h,)).fetchall()
    assert coarse_hourly == raw_hourly
    # The country twins (type, outcome and country) too, a missing country included.
    assert _country(conn, "events_country_1m") == _raw_country(conn, "1 minute")
    assert _country(conn, "events_country_1h", result.watermark_1h) == [
        r for r in _raw_country(conn, "1 hour") if r[0] < result.watermark_1h]


def _country(conn, table: str, before: datetime | None = None) -> list[tuple]:
    return conn.execute(sql.SQL("SELECT bucket, event_type, outcome, coalesce(source_country, '-'), "
                                "sum(events)::bigint FROM {} WHERE bucket < coalesce(%s::timestamptz, 'infinity') "
                                "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4").format(sql.Identifier(table)),
                        (before,)).fetchall()


def _raw_country(conn, step: str) -> list[tuple]:
    return conn.execute("SELECT time_bucket(%s::interval, \"timestamp\"), event_type, outcome, "
                        "coalesce(source_country, '-'), count(*) FROM audit_events GROUP BY 1, 2, 3, 4 "
                        "ORDER BY 1, 2, 3, 4", (step,)).fetchall()


def test_refresh_twice_or_concurrently_changes_nothing(pool, conn, traffic):
    rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    first = conn.execute(ROLLUP_1M).fetchall()
    rows_before = conn.execute("SELECT count(*) FROM events_1m").fetchone()[0]
    errors = []

    def run():
        try:
            rollups.refresh(pool, now=NOW + timedelta(minutes=2))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert conn.execute(ROLLUP_1M).fetchall() == first
    assert conn.execute("SELECT count(*) FROM events_1m").fetchone()[0] == rows_before


@pytest.mark.parametrize("interval,step", [("1m", "1 minute"), ("1h", "1 hour")])
@pytest.mark.parametrize("group_by", [("event_type",), ("event_type", "user_id")])
def test_series_are_current_past_the_watermark(pool, conn, traffic, make_event, interval, step, group_by):
    """From the coarse rollups (type only) and the entity rollups (type and user) alike."""
    rollups.refresh(pool, now=NOW - timedelta(minutes=30))  # leaves the last half hour unmaterialised
    EventWriter(pool).write([make_event(timestamp=NOW - timedelta(seconds=5), event_type="config_change")])
    frame = rollups.series(pool, SeriesQuery(start=NOW - timedelta(hours=4), end=NOW + timedelta(minutes=1),
                                             interval=interval, group_by=group_by))
    frame = frame.group_by("bucket", "event_type").agg(pl.col("events").sum()).sort("bucket", "event_type")
    assert _frame_rows(frame) == _raw_series(conn, step)
    assert frame.schema["bucket"] == pl.Datetime("us", "UTC")


def test_backfilled_history_behind_the_watermark_is_recomputed(pool, conn, traffic, make_event):
    rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    old = [make_event(timestamp=NOW - timedelta(days=3, minutes=i), event_type="password_change")
           for i in range(10)]
    EventWriter(pool).write(old)
    assert conn.execute("SELECT count(*) FROM rollup_invalidations").fetchone()[0] >= 1
    rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    assert conn.execute(ROLLUP_1M).fetchall() == conn.execute(RAW_1M).fetchall()
    frame = rollups.series(pool, SeriesQuery(start=NOW - timedelta(days=4), end=NOW, interval="1h",
                                             event_types=("password_change",)))
    assert frame["events"].sum() == 10


def test_an_erasure_is_reflected_after_refresh(pool, conn, traffic, make_event):
    rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    target = traffic[100]
    erasure.erase_event(pool, target.event_id,
                        lambda erased: make_event(event_type="event_erased", timestamp=NOW - timedelta(seconds=30)))
    rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    assert conn.execute(ROLLUP_1M).fetchall() == conn.execute(RAW_1M).fetchall()
    assert _country(conn, "events_country_1m") == _raw_country(conn, "1 minute")


def test_group_by_and_filters(pool, conn, traffic):
    rollups.refresh(pool, now=NOW - timedelta(minutes=45))
    frame = rollups.series(pool, SeriesQuery(
        start=NOW - timedelta(hours=4), end=NOW + timedelta(minutes=1), interval="1h",
        group_by=("user_id", "source_ip"), outcome="failure", source_ip="10.0.1.0/24"))
    assert frame.columns == ["bucket", "user_id", "source_ip", "events"]
    expected = conn.execute(
        "SELECT count(*) FROM audit_events WHERE outcome = 'failure' AND source_ip <<= '10.0.1.0/24'").fetchone()[0]
    assert frame["events"].sum() == expected > 0
    assert set(frame["source_ip"].to_list()) <= {"10.0.1.2", "10.0.1.4"}
    by_user = frame.group_by("user_id").agg(pl.col("events").sum()).sort("user_id")
    raw = conn.execute("SELECT user_id, count(*) FROM audit_events WHERE outcome = 'failure' AND "
                       "source_ip <<= '10.0.1.0/24' GROUP BY 1 ORDER BY 1").fetchall()
    assert list(by_user.iter_rows()) == raw


def test_an_empty_range_is_an_empty_frame_with_the_right_columns(pool):
    frame = rollups.series(pool, SeriesQuery(start=NOW - timedelta(hours=1), end=NOW, group_by=("outcome",)))
    assert frame.is_empty() and frame.columns == ["bucket", "outcome", "events"]


@pytest.mark.parametrize("bad", [{"interval": "5m"}, {"group_by": ("metadata",)}])
def test_bad_series_arguments_say_what_is_allowed(pool, bad):
    with pytest.raises(ValueError, match="must be one of|cannot group by"):
        rollups.series(pool, SeriesQuery(start=NOW - timedelta(hours=1), end=NOW, **bad))


def test_the_country_rollups_are_filled_from_history_when_they_are_added(pool, conn, traffic):
    """Apache edition: migration 0024 fills the new tables from the raw events up to the watermarks the other
    rollups already stand at, so an existing store's countries are right from the first read (the community
    edition serves history by real-time aggregation instead)."""
    import re

    from storage.timescale import db, migrations

    if db.edition_of(conn) == "timescale":
        pytest.skip("community edition: continuous aggregates, created WITH NO DATA")
    result = rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    expected_1m, expected_1h = _country(conn, "events_country_1m"), _country(conn, "events_country_1h")
    assert expected_1m and expected_1h
    (migration,) = [m for m in migrations.available() if m.name == "country_rollups"]
    fills = re.findall(r"INSERT INTO events_country_1[mh] .*?;", migration.sql, flags=re.S)
    assert len(fills) == 2
    with conn.transaction():
        conn.execute("DELETE FROM events_country_1m")
        conn.execute("DELETE FROM events_country_1h")
        for statement in fills:
            conn.execute(statement)
    assert _country(conn, "events_country_1m") == expected_1m
    assert _country(conn, "events_country_1h") == expected_1h
    assert all(row[0] < result.watermark_1h for row in expected_1h)


def test_reads_need_one_connection_even_on_a_pool_of_one(db_url, traffic):
    """The edition is asked before a read takes its connection: asked inside, on a fresh pool of one, the read
    waited for its own connection until the pool's timeout."""
    from storage.timescale import db

    pool = db.open_pool(db_url, min_size=1, max_size=1, name="pool-of-one", timeout=5)
    try:
        q = SeriesQuery(start=NOW - timedelta(hours=4), end=NOW, interval="1h", group_by=("user_id",))
        assert rollups.series(pool, q)["events"].sum() == len(traffic)
    finally:
        pool.close()
    pool = db.open_pool(db_url, min_size=1, max_size=1, name="pool-of-one", timeout=5)
    try:
        assert rollups.top(pool, [q], "user_id", 2).height == 2
    finally:
        pool.close()


# -- exact invalidations (Apache edition): the threshold of migration 0025 ----------------------------------

MINUTE = timedelta(minutes=1)


@pytest.fixture
def apache(conn):
    from storage.timescale import db

    if db.edition_of(conn) == "timescale":
        pytest.skip("community edition: TimescaleDB's own aggregates track their invalidations")


def test_a_refresh_after_a_refresh_recomputes_only_the_new_minutes(apache, pool, traffic):
    first = rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    second = rollups.refresh(pool, now=NOW + timedelta(minutes=5))
    assert second.ranges == [(first.watermark_1m, NOW + timedelta(minutes=4))]
    third = rollups.refresh(pool, now=NOW + timedelta(minutes=5))
    assert third.ranges == []  # nothing new, nothing written behind: nothing recomputed


def test_late_events_are_counted_and_only_their_minutes_recomputed(apache, pool, conn, traffic, make_event):
    """Written by EventWriter 10 min (not late enough for the old note), 45 min (past the old hour's allowance
    on the next run) and 3 days behind the watermark, one batch each."""
    mark = rollups.refresh(pool, now=NOW + timedelta(minutes=2)).watermark_1m
    writer = EventWriter(pool)
    behind = (timedelta(minutes=10), timedelta(minutes=45), timedelta(days=3))
    for lag in behind:
        writer.write([make_event(timestamp=mark - lag + timedelta(seconds=5), event_type="password_change"),
                      make_event(timestamp=mark - lag + timedelta(seconds=40), event_type="password_change")])
    assert rollups.pending(pool, mark - timedelta(days=4), mark) == [
        (mark - lag + timedelta(seconds=5), mark - lag + timedelta(seconds=40, microseconds=1))
        for lag in reversed(behind)]
    result = rollups.refresh(pool, now=NOW + timedelta(minutes=3))
    assert result.ranges == [(mark - lag, mark - lag + MINUTE) for lag in reversed(behind)] + [
        (mark, mark + MINUTE)]
    assert conn.execute(ROLLUP_1M).fetchall() == conn.execute(RAW_1M).fetchall()
    assert _country(conn, "events_country_1m") == _raw_country(conn, "1 minute")
    hourly = conn.execute("SELECT bucket, event_type, sum(events)::bigint FROM events_type_1h WHERE bucket < %s "
                          "GROUP BY 1, 2 ORDER BY 1, 2", (result.watermark_1h,)).fetchall()
    assert hourly == [r for r in _raw_series(conn, "1 hour") if r[0] < result.watermark_1h]
    assert rollups.pending(pool, mark - timedelta(days=4), mark) == []


def _waiting_for_the_threshold(conn, above: datetime, refresh: threading.Thread, timeout: float = 10.0) -> bool:
    """Whether the refresh has raised the threshold past ``above`` and is still running (waiting for the
    transactions that were writing then), polled up to ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT threshold FROM rollup_thresholds WHERE rollup = 'events_1m'").fetchone()
        if row and row[0] > above:
            time.sleep(0.3)
            return refresh.is_alive()
        time.sleep(0.05)
    return False


def test_a_refresh_waits_for_writers_that_read_the_old_threshold(apache, pool, conn, db_url, traffic, make_event,
                                                                 monkeypatch):
    """Two write transactions open while a refresh starts: an EventWriter batch 10 minutes behind the watermark
    (noted, but not committed) and a batch just past the watermark (not behind the threshold it read, so not
    noted). The refresh's raise of the threshold waits for both; once they commit, that refresh counts both."""
    import psycopg

    from storage.timescale.writer import insert_rows, row_of

    mark = rollups.refresh(pool, now=NOW + timedelta(minutes=2)).watermark_1m
    late = [make_event(timestamp=mark - timedelta(minutes=10, seconds=-5), event_type="password_change")]
    edge = [make_event(timestamp=mark + timedelta(seconds=30), event_type="password_change")]
    written, release = threading.Event(), threading.Event()
    writer = EventWriter(pool)

    def hold(conn_, due):  # the writer's last step before its commit: the transaction stays open here
        written.set()
        assert release.wait(30)

    monkeypatch.setattr(writer._seen, "note", hold)
    late_thread = threading.Thread(target=writer.write, args=(late,))
    late_thread.start()
    assert written.wait(10)
    with psycopg.connect(db_url) as edge_conn:
        with edge_conn.cursor() as cur:
            insert_rows(cur, [row_of(e) for e in edge])  # not committed yet
        results: list = []
        refresh = threading.Thread(target=lambda: results.append(rollups.refresh(pool, now=NOW + timedelta(minutes=4))))
        refresh.start()
        assert _waiting_for_the_threshold(conn, mark, refresh)
        release.set()
        late_thread.join(10)
        assert not late_thread.is_alive()
        refresh.join(0.5)
        assert refresh.is_alive()  # still waiting for the other writer
        edge_conn.commit()
    refresh.join(30)
    (result,) = results
    assert result.ranges == [(mark - timedelta(minutes=10), mark - timedelta(minutes=9)),
                             (mark, mark + timedelta(minutes=2))]
    assert conn.execute(ROLLUP_1M).fetchall() == conn.execute(RAW_1M).fetchall()
    assert _country(conn, "events_country_1m") == _raw_country(conn, "1 minute")


def test_writers_do_not_wait_for_a_refresh_that_waits_for_an_open_transaction(apache, pool, conn, db_url, traffic,
                                                                             make_event):
    """A writing transaction left open (a slow client, a long self-audited block) holds the refresh back, and only
    the refresh: other batches are stored meanwhile, at once."""
    import psycopg

    from storage.timescale.writer import insert_rows, row_of

    mark = rollups.refresh(pool, now=NOW + timedelta(minutes=2)).watermark_1m
    with psycopg.connect(db_url) as held:
        with held.cursor() as cur:
            insert_rows(cur, [row_of(make_event(timestamp=mark + timedelta(seconds=10), event_type="password_change"))])
        results: list = []
        refresh = threading.Thread(target=lambda: results.append(rollups.refresh(pool, now=NOW + timedelta(minutes=4))))
        refresh.start()
        assert _waiting_for_the_threshold(conn, mark, refresh)
        others = [make_event(timestamp=mark - timedelta(minutes=3), event_type="password_change"),
                  make_event(timestamp=mark + timedelta(seconds=40), event_type="password_change")]
        stored: list = []
        writer = threading.Thread(target=lambda: stored.append(EventWriter(pool).write(others)))
        writer.start()
        writer.join(10)
        assert not writer.is_alive() and stored == [[True, True]]
        assert refresh.is_alive()
        held.commit()
    refresh.join(30)
    assert results  # it claimed the late batch's note after the wait: all three batches are counted
    assert conn.execute(ROLLUP_1M).fetchall() == conn.execute(RAW_1M).fetchall()


def test_a_refresh_held_back_too_long_is_deferred_and_changes_nothing(apache, pool, conn, db_url, traffic, make_event,
                                                                      monkeypatch, caplog):
    """Past ``WRITERS_TIMEOUT`` the refresh gives up for this run: the watermark and the noted ranges stay, the
    scheduled job says so as a warning, and the next run, once the transaction has ended, counts everything."""
    import logging

    import psycopg

    from storage.timescale.writer import insert_rows, row_of

    mark = rollups.refresh(pool, now=NOW + timedelta(minutes=2)).watermark_1m
    EventWriter(pool).write([make_event(timestamp=mark - timedelta(minutes=20), event_type="password_change")])
    noted = rollups.pending(pool, mark - timedelta(hours=1), mark)
    assert noted
    monkeypatch.setattr(rollups, "WRITERS_TIMEOUT", 0.3)
    with psycopg.connect(db_url) as held:
        with held.cursor() as cur:
            insert_rows(cur, [row_of(make_event(timestamp=mark + timedelta(seconds=10), event_type="password_change"))])
        with pytest.raises(rollups.RefreshDeferred, match="still open"):
            rollups.refresh(pool, now=NOW + timedelta(minutes=4))
        with caplog.at_level(logging.WARNING, logger="storage.timescale.rollups"):
            assert rollups.refresh_job(pool, now=NOW + timedelta(minutes=4)) is None
        assert "rollup refresh deferred" in caplog.text
        assert [r.watermark for r in rollups.status(pool) if r.rollup == "events_1m"] == [mark]
        assert rollups.pending(pool, mark - timedelta(hours=1), mark) == noted
        held.commit()
    result = rollups.refresh(pool, now=NOW + timedelta(minutes=4))
    assert result.watermark_1m > mark
    assert conn.execute(ROLLUP_1M).fetchall() == conn.execute(RAW_1M).fetchall()


def test_a_write_after_the_threshold_moved_is_noted(apache, pool, conn, traffic, make_event):
    """A batch written while a refresh recomputes, into the minutes that refresh has just counted: it read the
    raised threshold, so it is noted, and the next refresh recomputes its minute."""
    mark = rollups.refresh(pool, now=NOW + timedelta(minutes=2)).watermark_1m
    during = make_event(timestamp=mark + timedelta(seconds=20), event_type="password_change")

    def write_behind(low, high):
        assert low <= during.timestamp < high
        EventWriter(pool).write([during])

    result = rollups.refresh(pool, now=NOW + timedelta(minutes=3), progress=write_behind)
    assert result.ranges == [(mark, mark + MINUTE)]
    assert rollups.pending(pool, mark, result.watermark_1m) == [
        (during.timestamp, during.timestamp + timedelta(microseconds=1))]
    assert conn.execute(ROLLUP_1M).fetchall() != conn.execute(RAW_1M).fetchall()  # not counted yet
    after = rollups.refresh(pool, now=NOW + timedelta(minutes=3))
    assert after.ranges == [(mark, mark + MINUTE)]
    assert conn.execute(ROLLUP_1M).fetchall() == conn.execute(RAW_1M).fetchall()


def test_each_way_of_writing_events_notes_a_batch_behind_the_threshold(apache, pool, conn, db_url, make_event):
    """insert_rows, insert_rows_sealed and copy_direct (EventWriter's two paths are tested above and in
    test_writer): behind the threshold a batch is noted, at or past it nothing is."""
    import psycopg

    from storage.timescale.writer import copy_direct, insert_rows, insert_rows_sealed, row_of

    assert rollups.refresh(pool, now=NOW).watermark_1m == NOW - MINUTE  # no events: the threshold is set
    behind, ahead = NOW - timedelta(minutes=5), NOW
    for at in (behind, ahead):
        with psycopg.connect(db_url) as c:
            with c.cursor() as cur:
                insert_rows(cur, [row_of(make_event(timestamp=at))])
            insert_rows_sealed(c, [row_of(make_event(timestamp=at + timedelta(seconds=1)))])
        copy_direct(pool, [row_of(make_event(timestamp=at + timedelta(seconds=2)))])
    assert conn.execute("SELECT low - %s, high - %s FROM rollup_invalidations ORDER BY low, high",
                        (behind, behind)).fetchall() == [
        (timedelta(0), timedelta(0)), (timedelta(seconds=1), timedelta(seconds=1)),
        (timedelta(seconds=2), timedelta(seconds=2))]


def test_an_upgraded_store_starts_its_threshold_at_the_watermark(empty_db_url, make_event, old_writes):
    """Migration 0025 on a store an older release refreshed: the threshold starts at the events_1m watermark, and
    the first refresh recomputes the hour the old late allowance would have, where the old writer left events
    up to 30 minutes late unnoted."""
    import psycopg

    from storage.timescale import db, migrations
    from tests.storage.conftest import migrate_up_to

    mark = NOW - timedelta(minutes=5)
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        if db.edition_of(c) == "timescale":
            pytest.skip("community edition: no watermark, no threshold")
        migrate_up_to(c, 24)
        # What the last refresh of the old release left: the rollups up to the watermark ...
        c.execute("INSERT INTO rollup_watermarks (rollup, watermark) VALUES ('events_1m', %s), ('events_1h', %s)",
                  (mark, mark.replace(minute=0)))
    upgraded = db.open_pool(empty_db_url, min_size=1, max_size=4)
    try:
        with old_writes():  # ... and events that arrived after it, behind the watermark, unnoted
            EventWriter(upgraded).write([make_event(timestamp=mark - timedelta(minutes=m, seconds=10))
                                         for m in (1, 20, 50)])
        with psycopg.connect(empty_db_url, autocommit=True) as c:
            migrations.migrate(c)
            assert c.execute("SELECT rollup, threshold FROM rollup_thresholds").fetchall() == [("events_1m", mark)]
            assert c.execute("SELECT low, high FROM rollup_invalidations").fetchall() == [
                (mark - timedelta(hours=1), mark - timedelta(microseconds=1))]
            result = rollups.refresh(upgraded, now=NOW)
            assert result.ranges == [(mark - timedelta(hours=1), NOW - MINUTE)]
            assert c.execute(ROLLUP_1M).fetchall() == c.execute(RAW_1M).fetchall()
            assert c.execute("SELECT threshold FROM rollup_thresholds").fetchone()[0] == NOW - MINUTE
    finally:
        upgraded.close()


# -- every rollup against the raw events (Apache edition) ---------------------------------------------------------

HOUR = timedelta(hours=1)
_DIMENSIONS = {"events_1m": rollups.DIMENSIONS, "events_type_1m": rollups.TYPE_DIMENSIONS,
               "events_country_1m": rollups.COUNTRY_DIMENSIONS}


def _assert_every_rollup_is_the_raw_count(conn) -> None:
    """Each of the six rollups up to its watermark, row by row, is the raw events counted the same way: no row
    missing or extra, none at 0, no key twice, a NULL address or country included."""
    marks = dict(conn.execute("SELECT rollup, watermark FROM rollup_watermarks").fetchall())
    for minutes, hours in rollups.PAIRS:
        columns = sql.SQL(", ").join(map(sql.Identifier, _DIMENSIONS[minutes]))
        for table, step, mark in ((minutes, "1 minute", marks["events_1m"]), (hours, "1 hour", marks["events_1h"])):
            stored = conn.execute(sql.SQL("SELECT bucket, {c}, events FROM {t} WHERE bucket < %s "
                                          "ORDER BY 1, {c}").format(c=columns, t=sql.Identifier(table)),
                                  (mark,)).fetchall()
            raw = conn.execute(sql.SQL('SELECT time_bucket(%s::interval, "timestamp"), {c}, count(*) FROM audit_events '
                                       'WHERE "timestamp" < %s GROUP BY 1, {c} ORDER BY 1, {c}').format(c=columns),
                               (step, mark)).fetchall()
            assert stored == raw, table


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# -- an hour the hourly rollups hold, updated by a late minute's difference (Apache edition) ----------------------


def test_late_events_in_an_earlier_hour_leave_every_rollup_the_raw_count(apache, pool, conn, traffic, make_event):
    """Events written behind the hourly watermark, into a minute of an hour the hourly rollups hold: keys that
    hour has and keys it lacks, a NULL address and country among them."""
    first = rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    earlier = first.watermark_1h - 2 * HOUR  # wholly within the traffic
    late = earlier + timedelta(minutes=17)
    EventWriter(pool).write([
        make_event(timestamp=late + timedelta(seconds=5), event_type="user_login", user_id="user0",
                   source_ip="10.0.0.1", source_country=None),
        make_event(timestamp=late + timedelta(seconds=6), event_type="user_login", user_id="late-user",
                   source_ip=None, source_country=None),
        make_event(timestamp=late + timedelta(seconds=7), event_type="password_change", user_id="user1",
                   outcome=Outcome.FAILURE, source_ip="10.0.1.2", source_country="GB")])
    EventWriter(pool).write([make_event(timestamp=late + timedelta(minutes=20), event_type="password_change",
                                        user_id="user1", source_ip=None, source_country="FR")])
    result = rollups.refresh(pool, now=NOW + timedelta(minutes=3))
    assert result.ranges[:2] == [(late, late + MINUTE), (late + timedelta(minutes=20), late + timedelta(minutes=21))]
    _assert_every_rollup_is_the_raw_count(conn)


def test_an_erasure_in_an_earlier_hour_removes_the_rows_it_empties(apache, pool, conn, traffic, make_event):
    """The only event of its type, user, address (NULL) and country (NULL) in an hour the hourly rollups hold,
    erased: its rows go from every rollup, they are not left at 0."""
    solo = make_event(timestamp=_floor_hour(NOW) - 2 * HOUR + timedelta(minutes=25, seconds=10),
                      event_type="solo_login", user_id="solo", outcome=Outcome.FAILURE, source_ip=None,
                      source_country=None)
    EventWriter(pool).write([solo])
    rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    counted = "SELECT count(*) FROM {} WHERE event_type = 'solo_login'"
    for table in (t for pair in rollups.PAIRS for t in pair):
        assert conn.execute(sql.SQL(counted).format(sql.Identifier(table))).fetchone()[0] == 1, table
    erasure.erase_event(pool, solo.event_id,
                        lambda erased: make_event(event_type="event_erased", timestamp=NOW - timedelta(seconds=30)))
    rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    for table in (t for pair in rollups.PAIRS for t in pair):
        assert conn.execute(sql.SQL(counted).format(sql.Identifier(table))).fetchone()[0] == 0, table
    _assert_every_rollup_is_the_raw_count(conn)


def test_an_earlier_hour_is_updated_by_the_late_minute_not_recomputed(apache, pool, conn, traffic, make_event):
    """The late minute's difference is added to the hour: an hourly row it does not change is not rewritten
    (here one made wrong on purpose stays wrong, where a recompute of the hour from its minutes would mend it)."""
    first = rollups.refresh(pool, now=NOW + timedelta(minutes=2))
    earlier = first.watermark_1h - 2 * HOUR
    untouched = "SELECT events FROM events_type_1h WHERE bucket = %s AND event_type = 'file_download' AND outcome = 'success'"
    right = conn.execute(untouched, (earlier,)).fetchone()[0]
    conn.execute("UPDATE events_type_1h SET events = events + 1000 WHERE bucket = %s AND event_type = 'file_download' "
                 "AND outcome = 'success'", (earlier,))
    EventWriter(pool).write([make_event(timestamp=earlier + timedelta(minutes=33), event_type="user_login")])
    rollups.refresh(pool, now=NOW + timedelta(minutes=3))
    assert conn.execute(untouched, (earlier,)).fetchone()[0] == right + 1000
    hourly = "SELECT events FROM events_type_1h WHERE bucket = %s AND event_type = 'user_login' AND outcome = 'success'"
    assert conn.execute(hourly, (earlier,)).fetchone()[0] == conn.execute(
        "SELECT count(*) FROM audit_events WHERE \"timestamp\" >= %s AND \"timestamp\" < %s AND event_type = 'user_login' "
        "AND outcome = 'success'", (earlier, earlier + HOUR)).fetchone()[0]


# -- a refresh that dies half-way (Apache edition) ----------------------------------------------------------------

_REFRESH = """
import sys
from datetime import datetime

from storage.timescale import db, rollups

pool = db.open_pool(sys.argv[1], min_size=1, max_size=2)
rollups.refresh(pool, now=datetime.fromisoformat(sys.argv[2]))
"""


def _killed_while_blocked_on(db_url: str, table: str, now: datetime, log) -> None:
    """Run a refresh in a process of its own until it waits for ``table`` (locked meanwhile), then SIGKILL it and
    wait until its database session has ended."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psycopg

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with psycopg.connect(db_url, autocommit=True) as holder, psycopg.connect(db_url, autocommit=True) as watcher:
        holder.execute("BEGIN")
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(table)))
        process = subprocess.Popen([sys.executable, "-c", _REFRESH, db_url, now.isoformat()], env=env,
                                   stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not (blocked := watcher.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s "
                    "AND wait_event_type = 'Lock' AND query ILIKE %s", (holder.info.backend_pid, f"%{table}%"),
            ).fetchall()):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"the refresh never waited for {table}:\n{log.read_text()}"
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        holder.execute("ROLLBACK")
        deadline = time.monotonic() + 60
        while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (blocked[0][0],)).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed refresh's session never ended"
            time.sleep(0.05)


@pytest.mark.parametrize("table", ["events_1m", "rollup_watermarks"], ids=["before-the-minutes", "before-the-marks"])
def test_noted_ranges_survive_a_refresh_killed_half_way(apache, pool, conn, db_url, traffic, make_event, tmp_path,
                                                        table):
    """A late event in an earlier hour is noted; the refresh that would count it is SIGKILLed before it recomputes
    anything, or once it has added the late minute to its hour but before its watermarks move: the note is still
    there, and the next refresh counts the event once."""
    hour = _floor_hour(NOW)
    rollups.refresh(pool, now=hour - timedelta(minutes=29))
    late = make_event(timestamp=hour - 2 * HOUR + timedelta(minutes=10, seconds=5), event_type="password_change")
    EventWriter(pool).write([late])
    noted = rollups.pending(pool, hour - 3 * HOUR, hour)
    assert noted == [(late.timestamp, late.timestamp + timedelta(microseconds=1))]
    _killed_while_blocked_on(db_url, table, hour + MINUTE, tmp_path / "refresh.log")
    assert rollups.pending(pool, hour - 3 * HOUR, hour) == noted
    counted = conn.execute("SELECT coalesce(sum(events), 0) FROM events_type_1h WHERE event_type = 'password_change'"
                           ).fetchone()[0]
    assert counted == (1 if table == "rollup_watermarks" else 0)  # the late minute already added to its hour, or not
    rollups.refresh(pool, now=hour + MINUTE)
    assert rollups.pending(pool, hour - 3 * HOUR, hour) == []
    _assert_every_rollup_is_the_raw_count(conn)


def test_a_refresh_killed_after_its_minutes_leaves_no_hour_behind(apache, pool, conn, db_url, traffic, tmp_path):
    """SIGKILLed after recomputing minutes up to an hour's end, before the hourly rollups: the next refresh at the
    same moment still counts that hour."""
    hour = _floor_hour(NOW)
    rollups.refresh(pool, now=hour - timedelta(minutes=29))
    _killed_while_blocked_on(db_url, "events_1h", hour + MINUTE, tmp_path / "refresh.log")
    result = rollups.refresh(pool, now=hour + MINUTE)
    assert result.watermark_1h == hour
    _assert_every_rollup_is_the_raw_count(conn)
