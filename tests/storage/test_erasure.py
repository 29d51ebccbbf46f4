"""Lawful erasure removes exactly the named event and hands it back for the audit record."""

from __future__ import annotations

import uuid
from datetime import timedelta

from storage.timescale import erasure, queries
from storage.timescale.queries import EventQuery
from storage.timescale.writer import EventWriter


def test_erase_event_deletes_only_that_event_and_returns_it(pool, make_event):
    events = [make_event(metadata={"i": i}) for i in range(5)]
    EventWriter(pool).write(events)
    target = events[2]

    erased = erasure.erase_event(pool, target.event_id)
    assert erased == [target]
    assert queries.get(pool, target.event_id) is None
    left = queries.search(pool, EventQuery()).events
    assert {e.event_id for e in left} == {e.event_id for e in events} - {target.event_id}
    assert erasure.erase_event(pool, target.event_id) == []


def test_erase_event_removes_every_row_with_that_id(pool, make_event):
    first = make_event()
    again = make_event(event_id=first.event_id, timestamp=first.timestamp + timedelta(days=3))
    bystander = make_event()
    EventWriter(pool).write([first, again, bystander])

    erased = erasure.erase_event(pool, first.event_id)
    assert sorted(erased, key=lambda e: e.timestamp) == [first, again]
    assert [e.event_id for e in queries.search(pool, EventQuery()).events] == [bystander.event_id]
    assert erasure.erase_event(pool, uuid.uuid4()) == []
