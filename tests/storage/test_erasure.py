"""Lawful erasure removes exactly the named event, and stores its own audit record with it."""

from __future__ import annotations

import uuid
from datetime import timedelta

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
