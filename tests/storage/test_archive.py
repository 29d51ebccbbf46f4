"""Hot → cold archiving: exact round trips, the catalogue, crash safety, rollups and cross-tier reads."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest

from storage.cold.schema import METADATA_KEY
from storage.cold.store import ColdStore
from storage.timescale import archive, queries, rollups, rule_inputs
from storage.timescale.queries import EventQuery
from storage.timescale.writer import EventWriter
from tests.storage.cold_data import (
    NOW,
    OLD_DAYS,
    assert_each_once,
    assert_nothing_lost,
    audit,
    event,
    overwrite,
    read_bytes,
    seed,
    write,
)


def run(pool, store, **kwargs):
    return archive.run(pool, store, now=NOW, hot_days=90, audit=audit(), **kwargs)


def test_old_chunks_go_to_day_partitioned_parquet_and_recent_ones_stay(pool, store):
    events = seed(pool)
    old = [e for e in events if e.timestamp < NOW - timedelta(days=90)]
    result = run(pool, store)

    assert len(result.archived) == len(OLD_DAYS)
    assert result.rows == len(old)
    files = archive.list_files(pool, states=("complete",))
    assert len(files) == len(OLD_DAYS)
    for f in files:
        day = f.day
        assert f.path.startswith(f"year={day:%Y}/month={day:%m}/day={day:%d}/")
        assert store.exists(f.path)
        assert not [p for p in store.listing() if p.endswith(".tmp")]
        assert f.rows and f.bytes and len(f.sha256) == 64 and f.completed_at is not None
        assert f.range_start.date() == day and f.min_time >= f.range_start and f.max_time < f.range_end
        store.verify(f.path, rows=f.rows, sha256=f.sha256)
        metadata = store.read(f.path).schema.metadata
        assert orjson.loads(metadata[METADATA_KEY])["columns"][0] == ["event_id", "uuid"]
    # The hypertable keeps only what is younger than 90 days, plus the archiver's own audit records.
    hot = queries.search(pool, EventQuery(limit=1000)).events
    assert {e.event_id for e in hot if e.event_type != "events_archived"} == {
        e.event_id for e in events if e.timestamp >= NOW - timedelta(days=90)}
    records = [e for e in hot if e.event_type == "events_archived"]
    assert len(records) == len(OLD_DAYS)
    assert sum(r.metadata["rows"] for r in records) == len(old)
    assert {r.user_id for r in records} == {"tests"}
    assert_each_once(pool, store, events)


def test_senders_last_seen_only_in_archived_chunks_are_forgotten(pool, store, conn):
    """``source_last_seen`` (the absence rule's hint) would otherwise keep a row for every sender ever named."""
    rng = random.Random(3)
    EventWriter(pool).write([event(NOW - timedelta(days=100), rng=rng, source="gone"),
                             event(NOW - timedelta(days=99), rng=rng, source="both"),
                             event(NOW - timedelta(hours=2), rng=rng, source="both")])
    assert set(dict(conn.execute("SELECT source, last_seen FROM source_last_seen").fetchall())) == {"gone", "both"}
    run(pool, store)
    assert conn.execute("SELECT source FROM source_last_seen").fetchall() == [("both",)]
    assert rule_inputs.last_seen(pool, field_name="source", values=["gone", "both"], since=NOW - timedelta(days=1),
                                 until=NOW) == {"gone": None, "both": NOW - timedelta(hours=2)}


def test_parquet_holds_every_column_exactly_as_postgresql_stores_it(pool, store, conn):
    import random

    rng = random.Random(1)
    day = NOW - timedelta(days=120)
    tricky = [
        event(day + timedelta(microseconds=123457), rng=rng, source_ip="2001:db8:0:0:0:0:0:1",
              metadata={"z": 1, "a": {"é": "ü\n\"q\""}, "n": 12345678901234567890, "f": 1.5e-7}),
        event(day + timedelta(hours=3), rng=rng, source_ip=None, source=None, user_agent="x" * 500, metadata={}),
        event(day + timedelta(hours=5), rng=rng, source_ip="::ffff:10.1.2.3", metadata={"list": [None, True, 0]}),
    ]
    write(pool, tricky)
    expected = conn.execute(
        'SELECT event_id::text, "timestamp", event_type, user_id, outcome, source, host(source_ip), source_country, '
        "source_asn, user_agent, resource_id, metadata::text, received_at, batch_seq FROM audit_events "
        'ORDER BY event_type COLLATE "C", user_id COLLATE "C", "timestamp", event_id').fetchall()
    run(pool, store)
    [f] = archive.list_files(pool, states=("complete",))
    table = store.read(f.path)
    assert table.column_names == ["event_id", "timestamp", "event_type", "user_id", "outcome", "source",
                                  "source_ip", "source_country", "source_asn", "user_agent", "resource_id",
                                  "metadata", "received_at", "batch_seq"]
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    assert [tuple(r.values()) for r in table.to_pylist()] == [tuple(r) for r in expected]
    assert sorted(table.column("event_id").to_pylist()) == sorted(str(e.event_id) for e in tricky)


def test_a_column_added_to_audit_events_is_carried_into_the_files(pool, store, conn):
    seed(pool, days=(100,), per_day=5, recent=0)
    conn.execute("ALTER TABLE audit_events ADD COLUMN region_id bigint")
    conn.execute("UPDATE audit_events SET region_id = 42")
    run(pool, store)
    [f] = archive.list_files(pool, states=("complete",))
    table = store.read(f.path)
    assert table.column_names[-1] == "region_id" and f.columns[-1] == "region_id"
    assert str(table.schema.field("region_id").type) == "int64"
    assert set(table.column("region_id").to_pylist()) == {42}


def test_a_second_run_changes_nothing(pool, store):
    events = seed(pool)
    run(pool, store)
    before = archive.list_files(pool, states=("complete",))
    again = run(pool, store)
    assert again.archived == [] and again.files == [] and again.repaired == 0
    assert archive.list_files(pool, states=("complete",)) == before
    assert_each_once(pool, store, events)


STEPS = ["claimed", "batch_written", "file_written", "file_renamed", "verified", "before_drop",
         "drop_uncommitted", "dropped"]


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize(("step", "occurrence"), [(s, 1) for s in STEPS] + [
    ("claimed", 2), ("batch_written", 4), ("verified", 2), ("drop_uncommitted", 2)])
def test_a_crash_at_any_step_loses_nothing_and_a_rerun_finishes(pool, store, step, occurrence):
    events = seed(pool, days=(100, 99), per_day=20, recent=3)
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == step:
            seen["n"] += 1
            if seen["n"] == occurrence:
                raise Crash(name)

    try:
        run(pool, store, hook=hook, batch_rows=7)
    except Crash:
        pass
    assert seen["n"] >= 1, f"the run never reached {step}"
    assert_nothing_lost(pool, store, events)
    # No half file is ever in the catalogue as live, and pending rows own no file yet.
    with pool.connection() as c:
        for f in archive.files(c, states=("pending",)):
            assert not store.exists(f.path) or step in ("file_renamed",)

    result = run(pool, store)
    assert_nothing_lost(pool, store, events)
    assert_each_once(pool, store, events)
    assert len(archive.list_files(pool, states=("complete",))) == 2
    assert result.skipped == []


def test_a_backfill_into_an_exported_chunk_is_re_exported_before_the_drop(pool, store):
    import random

    events = seed(pool, days=(100,), per_day=10, recent=0)
    late = event(NOW - timedelta(days=100, hours=-1), rng=random.Random(3))
    landed = {"done": False}

    def hook(name: str) -> None:
        if name == "before_drop" and not landed["done"]:
            landed["done"] = True
            write(pool, [late])

    first = run(pool, store, hook=hook)
    # The backfill landed behind the rollups too (every write notes that), so the re-exported chunk waits for a
    # refresh to count it before its raw rows leave.
    assert [why for _, why in first.skipped] == [
        "the rollups have not yet materialised this range; run `auditwatch storage refresh`"]
    rollups.refresh(pool, now=NOW)
    run(pool, store)
    [f] = archive.list_files(pool, states=("complete",))
    assert f.rows == 11
    failed = archive.list_files(pool, states=("failed",))
    assert len(failed) == 1 and "changed" in failed[0].note
    assert_each_once(pool, store, [*events, late])


def test_two_runs_at_once_do_not_both_archive(pool, store):
    seed(pool, days=(100,), per_day=5, recent=0)
    with pool.connection() as conn:
        conn.autocommit = True
        conn.execute("SELECT pg_advisory_lock(%s)", (archive.ARCHIVE_LOCK,))
        try:
            with pytest.raises(archive.ArchiveBusy, match="in progress"):
                run(pool, store)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (archive.ARCHIVE_LOCK,))
            conn.autocommit = False


def test_rollups_keep_the_counts_of_archived_days(pool, store):
    seed(pool)
    start = NOW - timedelta(days=101)
    series = rollups.SeriesQuery(start=start, end=NOW - timedelta(days=90), interval="1h", group_by=("event_type",))
    rollups.refresh(pool, now=NOW, span=timedelta(days=1))
    before = rollups.series(pool, series)
    assert before.get_column("events").sum() == 30 * len(OLD_DAYS)
    run(pool, store)
    rollups.refresh(pool, now=NOW + timedelta(minutes=5), span=timedelta(days=1))
    after = rollups.series(pool, series)
    assert after.equals(before)


def test_rollups_are_materialised_before_the_drop_even_if_never_refreshed(pool, store):
    seed(pool, days=(100,), per_day=12, recent=0)
    run(pool, store)  # no refresh before: the archiver must materialise the range itself
    frame = rollups.series(pool, rollups.SeriesQuery(start=NOW - timedelta(days=101), end=NOW - timedelta(days=99),
                                                     interval="1h", group_by=()))
    assert frame.get_column("events").sum() == 12


def test_an_archive_root_url_that_cannot_be_used_says_what_to_do(tmp_path):
    from storage.cold.errors import ArchiveError

    with pytest.raises(ArchiveError, match="archive_url"):
        ColdStore("")
    with pytest.raises(ArchiveError, match="s3://"):
        ColdStore("nosuchscheme://bucket/x")


def test_a_tampered_verified_file_is_re_exported_not_trusted(pool, store):
    events = seed(pool, days=(100,), per_day=10, recent=0)

    def hook(name: str) -> None:
        if name == "before_drop":
            raise Crash(name)

    with pytest.raises(Crash):
        run(pool, store, hook=hook)
    [f] = archive.list_files(pool, states=("verified",))
    overwrite(store, f.path, read_bytes(store, f.path)[:-10])  # truncated after verification
    run(pool, store)
    assert archive.list_files(pool, states=("failed",))[0].archive_id == f.archive_id
    assert_each_once(pool, store, events)


def test_cross_tier_frame_marks_each_row_with_its_tier(pool, store):
    from storage import tiers

    events = seed(pool)
    run(pool, store)
    frame = tiers.events_frame(pool, store, EventQuery(event_types=("user_login", "data_export")))
    wanted = [e for e in events if e.event_type in ("user_login", "data_export")]
    assert sorted(frame.get_column("event_id").to_list()) == sorted(str(e.event_id) for e in wanted)
    by_id = dict(zip(frame.get_column("event_id"), frame.get_column("tier"), strict=True))
    for e in wanted:
        assert by_id[str(e.event_id)] == ("cold" if e.timestamp < NOW - timedelta(days=90) else "hot")
    assert frame.get_column("timestamp").is_sorted(descending=True)
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    limited = tiers.events_frame(pool, store, EventQuery(), limit=5)
    assert limited.height == 5


@pytest.mark.parametrize("filters", [
    {},
    {"user_id": "bob"},
    {"event_types": ("config_change",), "outcome": "failure"},
    {"source_ip": "10.0.0.0/8"},
    {"source_ip": "2001:db8::/32"},
    {"metadata": {"bucket": "hr"}},
    {"metadata": {"nested": {"a": [{"b": "é"}]}}},
    {"start_time": NOW - timedelta(days=99, hours=5), "end_time": NOW - timedelta(hours=3)},
], ids=["all", "user", "type+outcome", "ipv4-cidr", "ipv6-cidr", "metadata", "nested-metadata", "range"])
def test_paging_across_tiers_returns_exactly_what_the_hot_table_did(pool, store, filters):
    """Page through a query before and after archiving: the same events, in the same order."""
    from storage import tiers

    seed(pool)
    query = EventQuery(limit=7, **filters)

    def pages() -> tuple[list, list]:
        got, marks, after = [], [], None
        while True:
            page = tiers.search(pool, store, query, after=after, with_total=not got)
            if not got:
                total = page.total
            got += [e for e in page.events]
            marks += page.tiers
            if page.next is None:
                break
            after = page.next
        assert total == len(got)
        return got, marks

    before, marks_before = pages()
    assert set(marks_before) <= {"hot"}
    run(pool, store)
    after, marks_after = pages()
    assert [e for e in after if e.event_type != "events_archived"] == before
    expected_marks = ["cold" if e.timestamp < NOW - timedelta(days=90) else "hot" for e in before]
    assert [m for e, m in zip(after, marks_after, strict=True) if e.event_type != "events_archived"] == expected_marks


def test_eligible_lists_chunks_past_hot_retention(pool):
    seed(pool, days=(100, 91, 89), per_day=2, recent=1)
    days = [c.range_start.date() for c in archive.eligible(pool, now=NOW, hot_days=90)]
    assert days == [(NOW - timedelta(days=100)).date(), (NOW - timedelta(days=91)).date()]


def test_day_slices_cut_a_multi_day_chunk_at_midnight():
    start = datetime(2024, 1, 1, 6, tzinfo=UTC)
    chunk = archive.Chunk("x.y", "x", "y", start, start + timedelta(days=2))
    slices = archive.day_slices(chunk)
    assert [(d.isoformat(), lo.hour, hi.hour) for d, lo, hi in slices] == [
        ("2024-01-01", 6, 0), ("2024-01-02", 0, 0), ("2024-01-03", 0, 6)]
