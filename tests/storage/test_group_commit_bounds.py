"""Issue 14 #11: the group committer's backlog is bounded, and a waiter that gives up withdraws its events
(a writer held inside a transaction stands in for a slow or unreachable database)."""

from __future__ import annotations

import threading

import pytest

from storage.errors import WriteBacklogFull, WriteTimeout
from storage.timescale.writer import GroupCommitter
from tests.storage.conftest import GatedWriter


def _stored(conn, events) -> int:
    return conn.execute("SELECT count(*) FROM audit_events WHERE event_id = ANY(%s)",
                        ([e.event_id for e in events],)).fetchone()[0]


@pytest.fixture
def gated(pool):
    writer = GatedWriter(pool)
    committer = GroupCommitter(writer, threads=1, max_queued_events=10)
    yield writer, committer
    writer.gate.set()
    committer.close()


def test_a_full_backlog_refuses_at_once_and_stores_nothing_of_the_refused(gated, make_event, conn):
    writer, committer = gated
    in_flight = committer.submit([make_event()])
    assert writer.busy.wait(30)
    queued = [[make_event() for _ in range(4)] for _ in range(2)]
    futures = [committer.submit(b) for b in queued]
    assert committer.queued_events == 8
    refused = [make_event() for _ in range(4)]
    with pytest.raises(WriteBacklogFull) as full:
        committer.submit(refused)
    assert full.value.retry_after == 1 and committer.refused == 1
    committer.submit([make_event(), make_event()])  # what still fits is taken
    writer.gate.set()
    assert in_flight.result(30) == [True] and [f.result(30) for f in futures] == [[True] * 4] * 2
    assert _stored(conn, refused) == 0


def test_a_waiter_that_times_out_withdraws_its_events(gated, make_event, conn):
    writer, committer = gated
    blocker = committer.submit([make_event()])
    assert writer.busy.wait(30)
    late = [make_event() for _ in range(3)]
    with pytest.raises(WriteTimeout):
        committer.write(late, timeout=0.2)
    assert committer.cancelled == 1 and committer.queued_events == 0
    writer.gate.set()
    assert blocker.result(30) == [True]
    assert committer.write([make_event()]) == [True]  # the committer goes on
    assert _stored(conn, late) == 0  # told "not stored", and indeed never written


def test_a_waiter_whose_events_a_transaction_holds_gets_its_answer(gated, make_event, conn):
    writer, committer = gated
    held = [make_event() for _ in range(2)]
    answer: list = []
    waiter = threading.Thread(target=lambda: answer.append(committer.write(held, timeout=0.2)))
    waiter.start()
    assert writer.busy.wait(30)
    waiter.join(1.0)
    assert waiter.is_alive()  # past its timeout, still waiting: the transaction decides
    writer.gate.set()
    waiter.join(30)
    assert answer == [[True, True]] and _stored(conn, held) == 2
