"""Late inserts and lawful erasure into compressed chunks (issue 16).

On the community edition ``audit_events`` compresses chunks after 7 days (migrations 0004 and 0018). An event
that arrives late for such a day, and an erasure of an event in one, must work as on any other day: stored,
read, erased, and verified. The Apache edition has no compression (``test_native_path.py`` shows it refuses
it with SQLSTATE 0A000): there the same tests run on the same old day, uncompressed, so both editions are held
to one behaviour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.timescale import db, erasure, queries, sealing
from storage.timescale.queries import EventQuery
from storage.timescale.writer import EventWriter

COMPRESSED_CHUNKS = """
    SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks
    WHERE hypertable_name = 'audit_events' AND range_end <= %s
"""


@pytest.fixture
def compressed(conn, pool, make_event, key):
    """Sixty sealed events of three users on a day ten days ago, its chunks compressed where the edition
    compresses, and a checkpoint."""
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=10)
    events = [make_event(timestamp=day + timedelta(hours=9, minutes=i), user_id=f"user{i % 3}",
                         source_ip=f"10.0.0.{i % 5}", received_at=now) for i in range(60)]
    EventWriter(pool).write(events)
    if db.server_info(conn).edition == "timescale":
        conn.execute("SELECT compress_chunk(c, if_not_compressed => true) "
                     "FROM show_chunks('audit_events', older_than => INTERVAL '7 days') AS c")
        done, chunks = conn.execute(COMPRESSED_CHUNKS, (day + timedelta(days=1),)).fetchone()
        assert chunks >= 1 and done == chunks, (done, chunks)
    sealing.write_checkpoint(pool, key, now=now)
    return day, events


def _user_day(pool, user: str, day: datetime) -> set:
    page = queries.search(pool, EventQuery(user_id=user, start_time=day, end_time=day + timedelta(days=1), limit=1000))
    return {e.event_id for e in page.events}


def test_a_late_event_for_a_compressed_day_is_stored_read_and_verified(compressed, pool, make_event, check, key):
    day, events = compressed
    late = make_event(timestamp=day + timedelta(hours=9, minutes=30, seconds=30), user_id="user1",
                      source_ip="10.0.0.9", received_at=datetime.now(UTC))
    assert EventWriter(pool).write([late]) == [True]
    assert EventWriter(pool).write([late]) == [False]  # a retry into the compressed day is still a duplicate
    assert queries.get(pool, late.event_id) == late
    assert _user_day(pool, "user1", day) == {e.event_id for e in events if e.user_id == "user1"} | {late.event_id}
    page = queries.search(pool, EventQuery(source_ip="10.0.0.9", start_time=day, end_time=day + timedelta(days=1)))
    assert [e.event_id for e in page.events] == [late.event_id]
    sealing.write_checkpoint(pool, key, now=datetime.now(UTC))
    report = check()
    assert report.ok, report.problems
    assert report.events == len(events) + 1


def test_an_event_on_a_compressed_day_is_erased_and_verify_still_passes(compressed, pool, make_event, check, key):
    day, events = compressed
    target = events[17]

    def audit(erased):
        return make_event(event_type="event_erased", user_id="apikey:dpo", resource_id=str(erased[0].event_id),
                          timestamp=datetime.now(UTC), received_at=datetime.now(UTC))

    assert erasure.erase_event(pool, target.event_id, audit) == [target]
    assert queries.get(pool, target.event_id) is None
    assert _user_day(pool, target.user_id, day) == {e.event_id for e in events
                                                   if e.user_id == target.user_id} - {target.event_id}
    assert erasure.erase_event(pool, target.event_id, audit) == []  # nothing left to erase, nothing recorded
    sealing.write_checkpoint(pool, key, now=datetime.now(UTC))
    report = check()
    assert report.ok, report.problems
    assert report.erased == 1 and report.events == len(events)  # 59 of the day and the erasure's own record
