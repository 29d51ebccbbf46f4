"""EventWriter, copy_direct and GroupCommitter against the real hypertable."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import wait
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from storage.events import EventRecord, Outcome
from storage.timescale import queries, sealing
from storage.timescale import writer as writer_module
from storage.timescale.writer import EventWriter, GroupCommitter, copy_direct, row_of
from tests.storage.conftest import GatedWriter


def _count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]


@pytest.fixture
def writer(pool) -> EventWriter:
    return EventWriter(pool)


@pytest.fixture
def committer(writer):
    group = GroupCommitter(writer, max_group_events=5000, threads=2)
    yield group
    group.close()


# -- EventWriter ----------------------------------------------------------------------------------

def test_write_reports_new_events_and_duplicates(writer, make_event, conn):
    first = [make_event() for _ in range(3)]
    assert writer.write(first) == [True, True, True]
    assert writer.write(first) == [False, False, False]

    fresh = make_event()
    assert writer.write([first[1], fresh, first[0]]) == [False, True, False]
    assert _count(conn) == 4
    assert writer.write([]) == []


def test_a_duplicate_within_one_batch_is_new_only_once(writer, make_event, conn):
    a, b = make_event(), make_event()
    retried = EventRecord(**{**{f: getattr(a, f) for f in a.__dataclass_fields__}, "user_id": "someone-else"})
    assert writer.write([a, b, a, retried, b]) == [True, True, False, False, False]
    assert _count(conn) == 2
    # The first copy won: the stored row is the one written first.
    assert conn.execute("SELECT user_id FROM audit_events WHERE event_id = %s", (a.event_id,)).fetchone() == ("alice",)


def test_the_same_event_id_at_another_time_is_another_event(writer, make_event, conn):
    a = make_event()
    later = EventRecord(**{**{f: getattr(a, f) for f in a.__dataclass_fields__},
                           "timestamp": a.timestamp + timedelta(seconds=1)})
    assert writer.write([a, later]) == [True, True]
    assert _count(conn) == 2


def test_a_timestamp_in_another_zone_is_the_same_instant(writer, make_event):
    a = make_event()
    same_instant = EventRecord(**{**{f: getattr(a, f) for f in a.__dataclass_fields__},
                                  "timestamp": a.timestamp.astimezone(timezone(timedelta(hours=-7)))})
    assert writer.write([a]) == [True]
    assert writer.write([same_instant]) == [False]


def test_every_field_round_trips(writer, pool):
    full = EventRecord(
        event_id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        timestamp=datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        event_type="file_download",
        user_id="zoë@example.org",
        received_at=datetime(2024, 3, 1, 0, 0, 1, 654321, tzinfo=UTC),
        outcome=Outcome.FAILURE,
        source="sftp-gw",
        source_ip="2001:db8::42",
        source_country="NZ",
        source_asn="AS15169",
        user_agent="curl/8.5 (ünïcödé)",
        resource_id="s3://bucket/report.pdf",
        metadata={"name": "Zoë 🚀 日本語", "nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}},
    )
    bare = EventRecord(
        event_id=uuid.uuid4(),
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        event_type="user_logout",
        user_id="bob",
        received_at=datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
        source_ip="10.1.2.3",
    )
    assert writer.write([full, bare]) == [True, True]

    got = queries.get(pool, full.event_id)
    assert got == full
    assert got.timestamp.tzinfo is not None
    assert got.timestamp.microsecond == 123456
    assert got.timestamp == datetime(2024, 2, 29, 18, 29, 59, 123456, tzinfo=UTC)
    assert got.received_at.microsecond == 654321
    assert got.metadata["name"] == "Zoë 🚀 日本語"
    assert isinstance(got.event_id, uuid.UUID)

    got_bare = queries.get(pool, bare.event_id)
    assert got_bare == bare
    assert got_bare.outcome is Outcome.UNKNOWN
    assert (got_bare.source, got_bare.source_country, got_bare.source_asn) == (None, None, None)
    assert (got_bare.user_agent, got_bare.resource_id, got_bare.metadata) == (None, None, {})
    assert got_bare.source_ip == "10.1.2.3"


def test_inet_is_stored_as_inet(writer, make_event, conn):
    event = make_event(source_ip="192.168.7.9")
    writer.write([event])
    row = conn.execute(
        "SELECT source_ip << '192.168.0.0/16'::inet, family(source_ip) FROM audit_events WHERE event_id = %s",
        (event.event_id,),
    ).fetchone()
    assert row == (True, 4)


def test_a_batch_the_database_rejects_stores_nothing(writer, make_event, conn):
    good = make_event()
    bad = make_event(outcome="bogus")
    with pytest.raises(psycopg.errors.CheckViolation):
        writer.write([good, bad])
    assert _count(conn) == 0
    # The writer (and its pooled connection) still works afterwards.
    assert writer.write([good]) == [True]
    assert _count(conn) == 1


def test_many_batches_on_reused_connections(writer, make_event, conn):
    events = [make_event() for _ in range(250)]
    for start in range(0, 250, 50):
        assert writer.write(events[start:start + 50]) == [True] * 50
    assert writer.write(events[::10]) == [False] * 25
    assert _count(conn) == 250


def test_copy_direct_writes_rows_as_they_are(pool, make_event, conn):
    events = [make_event(metadata={"i": i}) for i in range(20)]
    copy_direct(pool, [row_of(e) for e in events])
    assert _count(conn) == 20
    for event in (events[0], events[-1]):
        assert queries.get(pool, event.event_id) == event


def test_the_sealed_copy_stores_what_row_of_stores(writer, pool, make_event, conn):
    """The fast path sends uuid, inet and jsonb pre-encoded; the stored rows are those of row_of's COPY."""
    ips = ["81.2.69.160", "10.0.0.1", "2001:db8::42", "::ffff:192.0.2.7", "fe80::1", "::", None]
    metadata = [{"b": 1, "a": [1.5, 1e300, -0.0, 2**63 - 1, None, True]}, {"zoë": "日本語 🚀", "n": {"x": {}}}, {},
                {"q": "\"quoted\" \\ back"}, {"z": 1, "y": 2, "x": 3}, {"big": -(2**63)}, {"f": 0.1}]
    events = [make_event(source_ip=ip, metadata=m) for ip, m in zip(ips, metadata, strict=True)]
    twins = [EventRecord(**{**{f: getattr(e, f) for f in e.__dataclass_fields__}, "event_id": uuid.uuid4()})
             for e in events]
    assert writer.write(events) == [True] * len(events)
    copy_direct(pool, [row_of(t) for t in twins])
    stored = ("SELECT event_id, timestamp, event_type, user_id, outcome, source, source_ip::text, family(source_ip), "
              "source_country, source_asn, user_agent, resource_id, metadata::text, received_at "
              "FROM audit_events WHERE event_id = %s")
    for event, twin in zip(events, twins, strict=True):
        fast, plain = (conn.execute(stored, (e.event_id,)).fetchone() for e in (event, twin))
        assert (fast[0], plain[0]) == (event.event_id, twin.event_id)
        assert fast[1:] == plain[1:]


# -- GroupCommitter ---------------------------------------------------------------------------------

def test_group_commit_under_concurrency(committer, make_event, conn):
    threads_n, per_thread, batch = 8, 10, 5
    batches = [[[make_event() for _ in range(batch)] for _ in range(per_thread)] for _ in range(threads_n)]
    start = threading.Barrier(threads_n)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            start.wait()
            futures = [committer.submit(b) for b in batches[i]]
            firsts = [f.result(30) for f in futures]
            # Then every other batch again, as a client retrying after a lost response would.
            repeats = [committer.submit(b) for b in batches[i][::2]]
            results[i] = firsts + [f.result(30) for f in repeats]
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread below
            errors.append(exc)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors
    for i in range(threads_n):
        firsts, repeats = results[i][:per_thread], results[i][per_thread:]
        assert firsts == [[True] * batch] * per_thread
        assert repeats == [[False] * batch] * len(batches[i][::2])

    assert _count(conn) == threads_n * per_thread * batch
    total_requests = threads_n * per_thread + threads_n * len(batches[0][::2])
    assert committer.requests == total_requests
    assert committer.commits < committer.requests, "no two requests ever shared a transaction"


def test_one_failing_request_does_not_fail_its_group(pool, make_event, conn):
    # One committer thread, held inside its first write while a backlog queues: the backlog is one group.
    gated = GatedWriter(pool)
    committer = GroupCommitter(gated, threads=1)
    try:
        blocker = committer.submit([make_event()])
        assert gated.busy.wait(30)
        good = [[make_event() for _ in range(3)] for _ in range(4)]
        futures = [committer.submit(b) for b in good[:2]]
        bad = committer.submit([make_event(), make_event(outcome="bogus")])
        futures += [committer.submit(b) for b in good[2:]]
        gated.gate.set()

        assert blocker.result(30) == [True]
        with pytest.raises(psycopg.errors.CheckViolation):
            bad.result(30)
        assert [f.result(30) for f in futures] == [[True] * 3] * 4
    finally:
        committer.close()
    # The group of five was tried together, then each request on its own.
    assert gated.calls == [1, 14, 3, 3, 2, 3, 3]
    assert _count(conn) == 1 + 12  # the bad request's valid event was refused with it
    assert (committer.requests, committer.commits) == (5, 5)


def test_close_drains_every_queued_request(writer, make_event, conn):
    committer = GroupCommitter(writer, threads=2)
    futures = [committer.submit([make_event() for _ in range(10)]) for _ in range(40)]
    committer.close()
    done, not_done = wait(futures, timeout=0)
    assert not not_done
    assert all(f.result() == [True] * 10 for f in done)
    assert _count(conn) == 400
    with pytest.raises(RuntimeError, match="closed"):
        committer.submit([make_event()])


def test_write_is_submit_and_wait(committer, make_event):
    event = make_event()
    assert committer.write([event]) == [True]
    assert committer.write([event, make_event()]) == [False, True]


def _burst(pool, make_event, monkeypatch, *, groups: int, link_every: float) -> tuple[int, list[int]]:
    """One committer thread held in its first write while ``groups`` more requests queue (a group each), then
    released: (commits, one entry per chain link)."""
    links: list[int] = []
    link = sealing.link_committed
    monkeypatch.setattr(sealing, "link_committed", lambda c: (links.append(1), link(c))[1])
    monkeypatch.setattr(writer_module, "LINK_AT_LEAST_EVERY", link_every)
    gated = GatedWriter(pool)
    committer = GroupCommitter(gated, max_group_events=5, threads=1)
    try:
        futures = [committer.submit([make_event() for _ in range(5)])]
        assert gated.busy.wait(30)
        futures += [committer.submit([make_event() for _ in range(5)]) for _ in range(groups)]
        gated.gate.set()
        assert [f.result(30) for f in futures] == [[True] * 5] * (groups + 1)
    finally:
        committer.close()
    return committer.commits, links


def test_a_burst_of_group_commits_links_the_chain_once_at_its_end(pool, make_event, conn, monkeypatch):
    """Linking costs two round trips after a commit; while more commits wait behind it, the next one's link
    takes it along. So a burst links once, after its last commit, and leaves nothing unlinked."""
    # 60 s: a slow machine's burst is still one burst
    commits, links = _burst(pool, make_event, monkeypatch, groups=20, link_every=60.0)
    assert (commits, len(links)) == (21, 1)
    assert conn.execute("SELECT count(*) FROM integrity_seals WHERE linked_pos IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT events FROM integrity_head").fetchone()[0] == 105
    alone = EventWriter(pool)
    alone.write([make_event()])  # with nothing queued, a write links before it returns, as before
    assert len(links) == 2
    assert conn.execute("SELECT count(*) FROM integrity_seals WHERE linked_pos IS NULL").fetchone()[0] == 0


def test_a_burst_that_never_ends_still_links_at_least_every_so_often(pool, make_event, monkeypatch):
    """A sustained load keeps the backlog full: the deferral is bounded in time (here 0 s: every commit links)."""
    commits, links = _burst(pool, make_event, monkeypatch, groups=9, link_every=0.0)
    assert (commits, len(links)) == (10, 10)
