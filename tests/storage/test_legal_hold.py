"""Legal holds: validated, audited in the same transaction, and honoured by archiving."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from storage.errors import HoldNotFound, LegalHoldError
from storage.timescale import archive, legal_hold, queries
from storage.timescale.queries import EventQuery
from tests.storage.cold_data import NOW, audit, event, seed, write


def place(pool, **kwargs):
    return legal_hold.place(pool, created_by="cli:counsel", audit=audit(), **{"reason": "litigation", **kwargs})


def test_placing_and_releasing_a_hold_is_recorded_and_audited(pool):
    hold = place(pool, user_id="bob", case_id="LIT-7")
    assert hold.active and hold.created_by == "cli:counsel" and hold.reason == "litigation"
    assert legal_hold.list_holds(pool) == [hold]
    released = legal_hold.release(pool, hold.hold_id, released_by="cli:counsel", reason="settled", audit=audit())
    assert not released.active and released.release_reason == "settled"
    assert legal_hold.list_holds(pool) == []
    assert legal_hold.list_holds(pool, include_released=True) == [released]
    records = queries.search(pool, EventQuery(event_types=("legal_hold",))).events
    assert sorted(r.metadata["action"] for r in records) == ["placed", "released"]
    assert {r.resource_id for r in records} == {str(hold.hold_id)}
    assert all(r.metadata["case_id"] == "LIT-7" for r in records)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "hold on nothing"),
    ({"start_time": NOW, "end_time": NOW}, "before its end"),
    ({"start_time": NOW, "end_time": NOW - timedelta(days=1)}, "before its end"),
    ({"start_time": datetime(2024, 1, 1)}, "time zone"),
    ({"user_id": "bob", "reason": "  "}, "reason"),
    ({"user_id": "x" * 300}, "256"),
])
def test_bad_holds_are_refused_with_a_reason(pool, kwargs, message):
    with pytest.raises(LegalHoldError, match=message):
        place(pool, **kwargs)
    assert legal_hold.list_holds(pool, include_released=True) == []
    assert queries.search(pool, EventQuery(event_types=("legal_hold",))).events == []


def test_releasing_an_unknown_or_released_hold_says_so(pool):
    with pytest.raises(HoldNotFound, match="no legal hold has id 999"):
        legal_hold.release(pool, 999, released_by="x", reason="r", audit=audit())
    hold = place(pool, user_id="bob")
    legal_hold.release(pool, hold.hold_id, released_by="x", reason="r", audit=audit())
    with pytest.raises(LegalHoldError, match="already released"):
        legal_hold.release(pool, hold.hold_id, released_by="x", reason="r", audit=audit())


@pytest.mark.parametrize("scope", ["user", "case", "time"])
def test_a_hold_keeps_matching_chunks_hot_until_released(pool, store, scope):
    events = seed(pool, days=(100, 99), per_day=20, recent=0)
    held_day = (NOW - timedelta(days=100)).date()
    if scope == "user":
        target = next(e for e in events if e.timestamp.date() == held_day)
        hold = place(pool, user_id=target.user_id, end_time=NOW - timedelta(days=99, hours=12))
    elif scope == "case":
        tagged = event(NOW - timedelta(days=100, hours=-2), rng=random.Random(5), metadata={"case_id": "LIT-9"})
        write(pool, [tagged])
        hold = place(pool, case_id="LIT-9")
    else:
        hold = place(pool, start_time=NOW - timedelta(days=100), end_time=NOW - timedelta(days=99, hours=23))
    result = archive.run(pool, store, now=NOW, hot_days=90, audit=audit())
    assert len(result.held) == 1 and len(result.archived) == 1
    assert [f.day for f in archive.list_files(pool, states=("complete",))] == [(NOW - timedelta(days=99)).date()]
    hot_days = {e.timestamp.date() for e in queries.search(pool, EventQuery(limit=1000)).events}
    assert held_day in hot_days

    legal_hold.release(pool, hold.hold_id, released_by="x", reason="closed", audit=audit())
    result = archive.run(pool, store, now=NOW, hot_days=90, audit=audit())
    assert len(result.archived) == 1 and result.held == []


def test_a_hold_placed_during_the_export_stops_the_drop(pool, store):
    seed(pool, days=(100,), per_day=10, recent=0)

    def hook(step: str) -> None:
        if step == "before_drop":
            place(pool, user_id="alice")

    result = archive.run(pool, store, now=NOW, hot_days=90, audit=audit(), hook=hook)
    assert result.archived == [] and len(result.held) == 1
    # The verified file waits; once the hold is released the next run reuses it and drops the chunk.
    [waiting] = archive.list_files(pool, states=("verified",))
    legal_hold.release(pool, legal_hold.list_holds(pool)[0].hold_id, released_by="x", reason="r", audit=audit())
    result = archive.run(pool, store, now=NOW, hot_days=90, audit=audit())
    assert [f.archive_id for f in result.files] == [waiting.archive_id]
