"""Lawful erasure removes exactly the named event, and stores its own audit record with it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from storage.timescale import erasure, queries
from storage.timescale.queries import EventQuery
from storage.timescale.writer import EventWriter


@pytest.fixture
def audit_of(make_event):
    """An audit callback that records what it was handed and returns an event_erased record."""
    seen: list[list] = []

    def audit(erased):
        seen.append(erased)
        return make_event(event_type="event_erased", user_id="apikey:admin",
                          resource_id=str(erased[0].event_id), metadata={"erased": len(erased)})

    audit.seen = seen
    return audit


def test_erase_event_deletes_only_that_event_and_stores_the_audit_record(pool, make_event, audit_of):
    events = [make_event(metadata={"i": i}) for i in range(5)]
    EventWriter(pool).write(events)
    target = events[2]

    erased = erasure.erase_event(pool, target.event_id, audit_of)
    assert erased == [target]
    assert audit_of.seen == [[target]]
    assert queries.get(pool, target.event_id) is None
    left = queries.search(pool, EventQuery()).events
    assert {e.event_id for e in left if e.event_type != "event_erased"} == {e.event_id for e in events} - {
        target.event_id}
    records = queries.search(pool, EventQuery(event_types=("event_erased",))).events
    assert [r.resource_id for r in records] == [str(target.event_id)]
    assert erasure.erase_event(pool, target.event_id, audit_of) == []
    assert len(audit_of.seen) == 1  # nothing erased, nothing recorded


def test_erase_event_removes_every_row_with_that_id(pool, make_event, audit_of):
    first = make_event()
    again = make_event(event_id=first.event_id, timestamp=first.timestamp + timedelta(days=3))
    bystander = make_event()
    EventWriter(pool).write([first, again, bystander])

    erased = erasure.erase_event(pool, first.event_id, audit_of)
    assert sorted(erased, key=lambda e: e.timestamp) == [first, again]
    remaining = [e.event_id for e in queries.search(pool, EventQuery(event_types=("user_login",))).events]
    assert remaining == [bystander.event_id]
    assert erasure.erase_event(pool, uuid.uuid4(), audit_of) == []


def test_a_failing_audit_record_leaves_the_event_in_place(pool, make_event):
    target = make_event()
    EventWriter(pool).write([target])

    def broken(erased):
        raise RuntimeError("audit store unavailable")

    with pytest.raises(RuntimeError):
        erasure.erase_event(pool, target.event_id, broken)
    assert queries.get(pool, target.event_id) == target


# -- legal holds and the cold tier (issue 14 #7) -------------------------------------------------

def test_a_legal_hold_refuses_the_erasure_and_names_the_hold(pool, make_event, audit_of, conn):
    from storage.errors import ErasureHeld
    from storage.timescale import legal_hold, self_audit
    from tests.storage.conftest import T0

    target, other = make_event(user_id="mallory"), make_event(user_id="bob")
    EventWriter(pool).write([target, other])
    hold = legal_hold.place(pool, reason="fraud case FR-9", created_by="apikey:counsel", user_id="mallory",
                            audit=self_audit.auditor("tests", lambda: T0))
    with pytest.raises(ErasureHeld) as refused:
        erasure.erase_event(pool, target.event_id, audit_of)
    assert f"legal hold {hold.hold_id}" in str(refused.value) and "fraud case FR-9" in str(refused.value)
    assert "release the hold" in str(refused.value)
    assert queries.get(pool, target.event_id) == target
    assert audit_of.seen == []  # no record of an erasure that did not happen
    assert conn.execute("SELECT count(*) FROM integrity_tombstones").fetchone()[0] == 0
    assert erasure.erase_event(pool, other.event_id, audit_of) == [other]  # the hold keeps only its events
    legal_hold.release(pool, hold.hold_id, released_by="apikey:counsel", reason="closed",
                       audit=self_audit.auditor("tests", lambda: T0))
    assert erasure.erase_event(pool, target.event_id, audit_of) == [target]


@pytest.fixture
def archived(pool, tmp_path, key):
    """Sealed events on five old days archived to Parquet, a checkpoint, the store and a verify reader."""
    import random

    from storage.cold.store import ColdStore
    from storage.timescale import archive, sealing, verify
    from tests.storage.cold_data import NOW, OLD_DAYS, audit, event

    rng = random.Random(5)
    events = [event((NOW - timedelta(days=d)).replace(hour=1) + timedelta(minutes=7 * i), rng=rng)
              for d in OLD_DAYS for i in range(6)] + [event(NOW - timedelta(hours=2), rng=rng)]
    for i in range(0, len(events), 10):
        EventWriter(pool).write(events[i:i + 10])
    store = ColdStore(tmp_path / "archive")
    assert archive.run(pool, store, now=NOW, hot_days=90, audit=audit()).rows == 6 * len(OLD_DAYS)
    sealing.write_checkpoint(pool, key, now=NOW)
    return events, store, verify.cold_reader(pool, store)


def _everything(pool, store):
    from storage import tiers

    return tiers.events_frame(pool, store, EventQuery())


def test_an_archived_event_is_erased_from_its_parquet_file_and_verify_still_passes(pool, archived, audit_of, check,
                                                                                   conn, key):
    from storage import export, tiers
    from storage.timescale import archive, sealing

    events, store, reader = archived
    target = events[7]
    before = archive.list_files(pool, states=("complete",))
    assert str(target.event_id) in _everything(pool, store).get_column("event_id").to_list()

    erased = erasure.erase_event(pool, target.event_id, audit_of, store=store)
    assert erased == [target]

    # No read path returns it: the tiered frame, the API's tiered page, an export of the hot tier.
    assert str(target.event_id) not in _everything(pool, store).get_column("event_id").to_list()
    page = tiers.search(pool, store, EventQuery(limit=1000))
    assert target.event_id not in {e.event_id for e in page.events}
    assert {e.event_id for e in events} - {target.event_id} <= {e.event_id for e in page.events}
    exported = b"".join(export.lines(queries.stream(pool, EventQuery(), max_rows=10_000), "ndjson"))
    assert str(target.event_id).encode() not in exported.replace(b'"resource_id":"' + str(target.event_id).encode(),
                                                                 b"")
    # The old file is gone from storage and superseded in the catalogue by one without the event.
    after = archive.list_files(pool, states=("complete",))
    old = next(f for f in before if f.archive_id not in {a.archive_id for a in after})
    assert not store.exists(old.path)
    new = next(f for f in after if f.archive_id not in {b.archive_id for b in before})
    assert (new.rows, new.day) == (old.rows - 1, old.day)
    assert conn.execute("SELECT state, superseded_by FROM log_archives WHERE archive_id = %s",
                        (old.archive_id,)).fetchone() == ("superseded", new.archive_id)

    # The erasure is a link of the removal chain, backed by the sealed event_erased record.
    reason, rows, ref = conn.execute("SELECT reason, rows, archive_ref FROM integrity_removals "
                                     "ORDER BY chain_pos DESC LIMIT 1").fetchone()
    assert (reason, rows, ref) == ("erasure", 1, old.path)
    record = queries.search(pool, EventQuery(event_types=("event_erased",))).events[0]
    assert record.metadata["integrity"]["removals"][0]["file"] == old.path
    assert len(record.metadata["integrity"]["erased_leaves"]) == 1

    report = check(cold=reader)
    assert report.ok, report.problems
    assert report.erased == 1
    assert any("erased from " + old.path in note for note in report.notes)
    sealing.write_checkpoint(pool, key, now=datetime.now(UTC))  # the signer accepts the chain that follows
    assert check(cold=reader).ok


def test_verify_still_catches_a_row_deleted_from_a_file_without_an_erasure(pool, archived, check):
    """The erasure link excuses exactly its own rows: the same edit done by hand is reported."""
    import hashlib
    from pathlib import Path

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from storage.timescale import archive

    events, store, reader = archived
    f = archive.list_files(pool, states=("complete",))[1]
    path = Path(store.base) / f.path
    table = pq.read_table(path)
    pq.write_table(table.filter(pc.invert(pc.equal(table.column("event_id"), table.column("event_id")[0]))), path)
    with pool.connection() as conn:
        conn.execute("UPDATE log_archives SET sha256 = %s, bytes = %s, rows = rows - 1 WHERE archive_id = %s",
                     (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size, f.archive_id))
    kinds = {p.kind for p in check(cold=reader).problems}
    assert {"archive_incomplete", "rows_missing"} <= kinds


def test_a_legal_hold_keeps_an_archived_event_from_erasure(pool, archived, audit_of):
    from storage.errors import ErasureHeld
    from storage.timescale import archive, legal_hold
    from tests.storage.cold_data import audit

    events, store, reader = archived
    target = events[3]
    hold = legal_hold.place(pool, reason="regulator inquiry", created_by="apikey:counsel",
                            start_time=target.timestamp, end_time=target.timestamp + timedelta(seconds=1),
                            audit=audit())
    files = archive.list_files(pool, states=("complete",))
    with pytest.raises(ErasureHeld, match=f"legal hold {hold.hold_id}"):
        erasure.erase_event(pool, target.event_id, audit_of, store=store)
    assert archive.list_files(pool, states=("complete",)) == files  # no file rewritten
    assert all(store.exists(f.path) for f in files)
    assert str(target.event_id) in _everything(pool, store).get_column("event_id").to_list()
    assert audit_of.seen == []


def test_an_erasure_link_cannot_excuse_hot_rows(pool, make_event, conn):
    """integrity_erase_archived refuses rows outside every archived range: no way to disguise a hot delete."""
    import psycopg

    target = make_event()
    EventWriter(pool).write([target])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not in an archived range"):
        conn.execute("SELECT * FROM integrity_erase_archived(%s, %s, %s, %s, %s, 'x', now(), 'f.parquet')",
                     (target.event_id, [1], [target.timestamp], [b"\x00" * 32], uuid.uuid4()))
