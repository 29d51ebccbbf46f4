"""Each sender's last-seen time (migration 0022): an absence rule reads a slice of the time index, not hours of it.

`rule_inputs.last_seen` must answer exactly what a walk down the time index answers, whatever the writers,
their timing and an insider with the app role do; the bench (`python -m bench.absence`) measures the cost.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import psycopg
import pytest

from storage.timescale import rule_inputs
from storage.timescale.writer import SEEN_EVERY, EventWriter
from tests.storage.conftest import T0

_SCAN = ("SELECT v, (SELECT \"timestamp\" FROM audit_events WHERE source = v AND \"timestamp\" >= %(since)s "
         "AND \"timestamp\" < %(until)s ORDER BY \"timestamp\" DESC LIMIT 1) FROM unnest(%(values)s::text[]) AS v")
SENDERS = ["app", "batch", "edge", "never"]


def _walked(conn, since, until) -> dict:
    """The answer before migration 0022: the time index walked back from ``until``."""
    return dict(conn.execute(_SCAN, {"values": SENDERS, "since": since, "until": until}).fetchall())


def _recorded(conn) -> dict:
    return dict(conn.execute("SELECT source, last_seen FROM source_last_seen").fetchall())


def test_the_recorded_slice_gives_what_walking_the_time_index_gives(pool, make_event, conn):
    """Three writers (processes) write three senders in shuffled batches; at every evaluation time, near the
    recorded times and far from them, with lookbacks short and long, the answer is the walk's."""
    rng = random.Random(7)
    writers = [EventWriter(pool) for _ in range(3)]
    times = {"app": [T0 + timedelta(seconds=s) for s in range(0, 3600, 7)],  # steady, then silent
             "batch": [T0 + timedelta(seconds=s) for s in sorted(rng.sample(range(0, 1800), 60))],
             "edge": [T0 + timedelta(seconds=s) for s in (5, 11, 14, 19, 23, 1200, 1204, 1209)]}
    events = [make_event(source=sender, timestamp=t) for sender, ts in times.items() for t in ts]
    batches = [events[i:i + 13] for i in range(0, len(events), 13)]
    rng.shuffle(batches)  # late batches too: a writer meets older times after newer ones
    for batch in batches:
        assert all(rng.choice(writers).write(batch))
    recorded = _recorded(conn)
    for sender, ts in times.items():  # the invariant the slice relies on
        assert recorded[sender] <= max(ts) < recorded[sender] + SEEN_EVERY
    assert "never" not in recorded
    checked = 0
    for until in [T0 + timedelta(seconds=s) for s in (0, 6, 12, 20, 600, 1205, 1210, 1800, 3599, 3610, 7200, 90000)]:
        for lookback in (timedelta(seconds=30), timedelta(minutes=10), timedelta(hours=24)):
            got = rule_inputs.last_seen(pool, field_name="source", values=SENDERS, since=until - lookback,
                                        until=until)
            assert got == _walked(conn, until - lookback, until), (until, lookback)
            checked += 1
    assert checked == 36


def test_a_sender_whose_last_event_was_erased_or_whose_time_was_forged_is_still_answered_truly(pool, make_event,
                                                                                               conn, app_pool):
    """The recorded time is a hint: a slice with none of the sender's events means walking the index, so a time
    moved forward by hand cannot make a silent sender look alive. And the app role moves it forward only."""
    EventWriter(pool).write([make_event(source="app", timestamp=T0 + timedelta(minutes=m)) for m in range(10)])
    until = T0 + timedelta(hours=2)
    with app_pool.connection() as c:
        c.execute("SELECT source_seen(%s, %s)", (["app"], [T0 + timedelta(hours=1, minutes=55)]))  # forged alive
        assert _recorded(c)["app"] == T0 + timedelta(hours=1, minutes=55)
        c.execute("SELECT source_seen(%s, %s)", (["app"], [T0]))  # backwards: ignored
        assert _recorded(c)["app"] == T0 + timedelta(hours=1, minutes=55)
        for statement in ("UPDATE source_last_seen SET last_seen = now()", "DELETE FROM source_last_seen",
                          "INSERT INTO source_last_seen VALUES ('x', now())"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(statement)
            c.rollback()
    got = rule_inputs.last_seen(pool, field_name="source", values=["app"], since=until - timedelta(days=1),
                                until=until)
    assert got == {"app": T0 + timedelta(minutes=9)}  # silent for 1 h 51 min, as the events say
    with app_pool.connection() as c:  # forged far ahead: the walk again, and the same answer
        c.execute("SELECT source_seen(%s, %s)", (["app"], [T0 + timedelta(days=36500)]))
    assert rule_inputs.last_seen(pool, field_name="source", values=["app"], since=until - timedelta(days=1),
                                 until=until) == {"app": T0 + timedelta(minutes=9)}


def test_the_platforms_own_records_are_not_tracked_and_a_rule_on_them_still_answers(pool, make_event, conn,
                                                                                      app_pool):
    """Self-audit and erasure records (``auditwatch``, ``auditwatch-…``) are written one at a time, by
    insert_rows_sealed, and not tracked: a rule listing them walks the index, mixed with tracked senders too,
    even when a time was recorded for one by hand (a stale one would hide its later records)."""
    from storage.timescale.writer import insert_rows_sealed, row_of

    with pool.connection() as c:
        insert_rows_sealed(c, [row_of(make_event(source="auditwatch-cli", timestamp=T0))])
    EventWriter(pool).write([make_event(source="auditwatch", timestamp=T0 + timedelta(minutes=m)) for m in (1, 30)]
                            + [make_event(source="app", timestamp=T0 + timedelta(minutes=2))])
    assert set(_recorded(conn)) == {"app"}
    with app_pool.connection() as c:  # a slice holding the first record of "auditwatch", not its last
        c.execute("SELECT source_seen(%s, %s)", (["auditwatch"], [T0 + timedelta(seconds=55)]))
    assert set(_recorded(conn)) == {"app", "auditwatch"}
    until = T0 + timedelta(hours=1)
    assert rule_inputs.last_seen(pool, field_name="source", values=["auditwatch-cli", "auditwatch", "app"],
                                 since=until - timedelta(days=1), until=until) == {
        "auditwatch-cli": T0, "auditwatch": T0 + timedelta(minutes=30), "app": T0 + timedelta(minutes=2)}


def test_a_writer_remembers_a_bounded_number_of_senders(monkeypatch):
    """Syslog app names are the sender's to choose: a flood of new names cannot grow the writer's memory."""
    from datetime import UTC, datetime

    from storage.events import EventRecord, Outcome
    from storage.timescale import writer

    monkeypatch.setattr(writer, "MAX_SENDERS", 50)
    seen = writer.SourcesSeen()
    now = datetime.now(UTC)
    for i in range(200):
        records = [EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id="u",
                               received_at=now, outcome=Outcome.SUCCESS, source=f"app-{i}")]
        due = seen.due(records)
        assert due == {f"app-{i}": now}
        seen.committed(due)
        assert len(seen) <= 51
    assert seen.due([records[0]]) == {}  # still remembered: not due again within SEEN_EVERY
