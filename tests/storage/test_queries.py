"""Searching, paging, fetching and streaming events back out of TimescaleDB."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from storage.errors import InvalidCursor
from storage.events import Outcome
from storage.timescale import queries
from storage.timescale.queries import EventQuery, Position, decode_cursor, encode_cursor
from storage.timescale.writer import EventWriter

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _order_key(event) -> tuple:
    return (event.timestamp, event.event_id)


@pytest.fixture
def writer(pool) -> EventWriter:
    return EventWriter(pool)


@pytest.fixture
def known(writer, make_event) -> dict:
    """A small, hand-made data set; tests name the events they expect."""
    events = {
        "a1": make_event(user_id="alice", event_type="user_login", outcome=Outcome.SUCCESS,
                         timestamp=T0 - timedelta(hours=1), source_ip="10.0.0.5",
                         metadata={"app": "crm", "tags": ["sso", "mfa"]}),
        "a2": make_event(user_id="alice", event_type="file_download", outcome=Outcome.FAILURE,
                         timestamp=T0 - timedelta(hours=2), source_ip="10.0.1.7",
                         metadata={"app": "crm", "size": 10}),
        "b1": make_event(user_id="bob", event_type="user_login", outcome=Outcome.FAILURE,
                         timestamp=T0 - timedelta(hours=3), source_ip="192.168.1.1",
                         metadata={"app": "erp"}),
        "b2": make_event(user_id="bob", event_type="data_export", outcome=Outcome.SUCCESS,
                         timestamp=T0 - timedelta(days=1), source_ip="2001:db8::1",
                         metadata={"app": "erp", "nested": {"k": "v", "n": 2}}),
        "c1": make_event(user_id="carol", event_type="user_logout", outcome=Outcome.UNKNOWN,
                         timestamp=T0 - timedelta(days=2), source_ip=None, metadata={}),
        "c2": make_event(user_id="carol", event_type="user_login", outcome=Outcome.SUCCESS,
                         timestamp=T0 - timedelta(hours=1), source_ip="10.0.0.6",
                         metadata={"app": "crm", "tags": ["sso"]}),
    }
    assert all(writer.write(list(events.values())))
    return events


def _names(known: dict, page_events) -> set[str]:
    by_id = {e.event_id: name for name, e in known.items()}
    return {by_id[e.event_id] for e in page_events}


def test_the_platforms_own_records_can_be_left_out(writer, make_event, pool):
    """The dashboard's Latest events hides its own reads (apikey:..., cli:...) unless asked; the API never does."""
    made = {"read": make_event(user_id="apikey:analyst-1", event_type="query_executed", timestamp=T0),
            "op": make_event(user_id="cli:root", event_type="config_change", timestamp=T0),
            "person": make_event(user_id="apikeyholder", event_type="user_login", timestamp=T0)}
    assert all(writer.write(list(made.values())))
    every = queries.search(pool, EventQuery(start_time=T0))
    theirs = queries.search(pool, EventQuery(start_time=T0, platform=False))
    assert _names(made, every.events) == set(made)
    assert _names(made, theirs.events) == {"person"}
    assert EventQuery(platform=False).fingerprint() != EventQuery().fingerprint()


# -- filters ----------------------------------------------------------------------------------------

# Each case is (filters, the events they must return); one database serves them all.
FILTER_CASES = [
    (EventQuery(), {"a1", "a2", "b1", "b2", "c1", "c2"}),
    (EventQuery(start_time=T0 - timedelta(hours=2)), {"a1", "a2", "c2"}),
    # start inclusive, end exclusive
    (EventQuery(start_time=T0 - timedelta(days=1), end_time=T0 - timedelta(hours=2)), {"b1", "b2"}),
    (EventQuery(end_time=T0 - timedelta(days=1)), {"c1"}),
    (EventQuery(user_id="alice"), {"a1", "a2"}),
    (EventQuery(user_id="nobody"), set()),
    (EventQuery(event_types=("user_login",)), {"a1", "b1", "c2"}),
    (EventQuery(event_types=("user_logout", "data_export")), {"b2", "c1"}),
    (EventQuery(outcome=Outcome.FAILURE), {"a2", "b1"}),
    (EventQuery(outcome=Outcome.UNKNOWN), {"c1"}),
    (EventQuery(source_ip="10.0.0.5"), {"a1"}),
    (EventQuery(source_ip="10.0.0.0/24"), {"a1", "c2"}),
    (EventQuery(source_ip="10.0.0.0/8"), {"a1", "a2", "c2"}),
    (EventQuery(source_ip="2001:db8::/32"), {"b2"}),
    (EventQuery(metadata={"app": "crm"}), {"a1", "a2", "c2"}),
    (EventQuery(metadata={"tags": ["mfa"]}), {"a1"}),
    (EventQuery(metadata={"nested": {"k": "v"}}), {"b2"}),
    (EventQuery(metadata={"app": "nothing"}), set()),
    (EventQuery(user_id="alice", outcome=Outcome.SUCCESS, metadata={"app": "crm"}), {"a1"}),
    (EventQuery(event_types=("user_login",), source_ip="10.0.0.0/8", start_time=T0 - timedelta(hours=5)),
     {"a1", "c2"}),
]


def test_each_filter_narrows_to_the_matching_events(pool, known):
    for query, expected in FILTER_CASES:
        page = queries.search(pool, query, with_total=True)
        assert _names(known, page.events) == expected, query
        assert page.total == len(expected), query
        assert page.next is None


def test_results_are_newest_first_with_event_id_breaking_ties(pool, writer, make_event):
    same = T0 - timedelta(minutes=5)
    events = [make_event(timestamp=same) for _ in range(6)]
    events += [make_event(timestamp=T0), make_event(timestamp=T0 - timedelta(hours=1))]
    writer.write(events)
    got = queries.search(pool, EventQuery(limit=100)).events
    assert got == sorted(events, key=_order_key, reverse=True)
    assert got[0].timestamp == T0
    tied = [e.event_id for e in got if e.timestamp == same]
    assert tied == sorted(tied, reverse=True) and len(tied) == 6


# -- keyset paging -------------------------------------------------------------------------------------

def test_paging_walks_every_row_once_while_rows_arrive(pool, writer, make_event):
    # Five events per timestamp so page boundaries fall between ties.
    originals = [make_event(timestamp=T0 - timedelta(minutes=m)) for m in range(10) for _ in range(5)]
    writer.write(originals)
    query = EventQuery(user_id="alice", limit=7)

    seen: list = []
    arrived_older: list = []
    cursor = None
    pages = 0
    while True:
        after = decode_cursor(cursor, query) if cursor else None
        page = queries.search(pool, query, after=after)
        pages += 1
        assert len(page.events) <= 7
        seen.extend(page.events)
        if page.next is None:
            break
        assert page.next == Position(page.events[-1].timestamp, page.events[-1].event_id)
        # Between pages: a newer event (behind us, never shown) and one older than where we are.
        writer.write([make_event(timestamp=T0 + timedelta(minutes=pages))])
        older = make_event(timestamp=T0 - timedelta(minutes=30 + pages))
        arrived_older.append(older)
        writer.write([older])
        cursor = encode_cursor(page.next, query)
        assert pages < 50, "paging never ended"

    ids = [e.event_id for e in seen]
    assert len(ids) == len(set(ids)), "a row was returned twice"
    assert {e.event_id for e in originals} <= set(ids)
    assert {e.event_id for e in arrived_older} <= set(ids)
    assert all(e.timestamp <= T0 for e in seen)
    assert seen == sorted(seen, key=_order_key, reverse=True)


def test_the_last_page_has_no_next_and_exact_pages_end_cleanly(pool, writer, make_event):
    writer.write([make_event() for _ in range(6)])
    query = EventQuery(limit=3)
    first = queries.search(pool, query)
    assert len(first.events) == 3 and first.next is not None
    second = queries.search(pool, query, after=decode_cursor(encode_cursor(first.next, query), query))
    assert len(second.events) == 3
    assert second.next is None


def test_with_total_counts_all_matches_not_the_page(pool, writer, make_event):
    writer.write([make_event() for _ in range(12)] + [make_event(user_id="bob") for _ in range(3)])
    page = queries.search(pool, EventQuery(user_id="alice", limit=5), with_total=True)
    assert len(page.events) == 5
    assert page.total == 12
    later = queries.search(pool, EventQuery(user_id="alice", limit=5), after=page.next, with_total=True)
    assert later.total == 12
    assert queries.search(pool, EventQuery(limit=5)).total is None


# -- cursors -------------------------------------------------------------------------------------------

def _raw_cursor(payload) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def test_a_cursor_round_trips_and_ignores_the_page_size():
    query = EventQuery(user_id="alice", event_types=("b", "a"), limit=10)
    position = Position(datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4())
    cursor = encode_cursor(position, query)
    assert decode_cursor(cursor, query) == position
    assert decode_cursor(cursor, EventQuery(user_id="alice", event_types=("a", "b"), limit=50)) == position
    assert all(c.isalnum() or c in "-_" for c in cursor)


def test_bad_cursors_are_rejected():
    query = EventQuery(user_id="alice")
    good = encode_cursor(Position(T0, uuid.uuid4()), query)
    fingerprint = query.fingerprint()
    bad = [
        "",
        "garbage!!",
        "not a cursor at all",
        "é€",
        good[: len(good) // 2],
        good[:-1],
        good[:-2] + "**",
        "A" * 513,
        good + "A" * 600,
        _raw_cursor([1, 2, 3]),
        _raw_cursor("just a string"),
        _raw_cursor({"t": T0.isoformat(), "i": str(uuid.uuid4())}),  # no fingerprint
        _raw_cursor({"t": "yesterday", "i": str(uuid.uuid4()), "q": fingerprint}),
        _raw_cursor({"t": T0.isoformat(), "i": "not-a-uuid", "q": fingerprint}),
        _raw_cursor({"t": T0.isoformat(), "i": 12345, "q": fingerprint}),
        _raw_cursor({"t": 12345, "i": str(uuid.uuid4()), "q": fingerprint}),
        _raw_cursor({"t": "2024-05-01T12:00:00", "i": str(uuid.uuid4()), "q": fingerprint}),  # naive
    ]
    for cursor in bad:
        with pytest.raises(InvalidCursor):
            decode_cursor(cursor, query)
    assert isinstance(InvalidCursor("x"), ValueError)


def test_a_cursor_from_another_query_is_rejected():
    position = Position(T0, uuid.uuid4())
    cursor = encode_cursor(position, EventQuery(user_id="alice"))
    for other in (
        EventQuery(),
        EventQuery(user_id="bob"),
        EventQuery(user_id="alice", outcome=Outcome.FAILURE),
        EventQuery(user_id="alice", metadata={"app": "crm"}),
        EventQuery(user_id="alice", start_time=T0 - timedelta(days=1)),
    ):
        with pytest.raises(InvalidCursor, match="other filters"):
            decode_cursor(cursor, other)


# -- get and stream -------------------------------------------------------------------------------------

def test_get_by_id(pool, known):
    assert queries.get(pool, known["b2"].event_id) == known["b2"]
    assert queries.get(pool, uuid.uuid4()) is None


def test_stream_yields_everything_in_order_in_bounded_batches(pool, writer, make_event, db_url):
    events = [make_event(timestamp=T0 - timedelta(seconds=i // 3)) for i in range(25)]
    writer.write(events + [make_event(user_id="bob")])
    expected = sorted(events, key=_order_key, reverse=True)

    streamed = queries.stream(pool, EventQuery(user_id="alice"), batch=4)
    first = next(streamed)
    # The rows come from a server-side cursor, four at a time.
    with psycopg.connect(db_url, autocommit=True) as watcher:
        fetching = watcher.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'FETCH%%'"
        ).fetchall()
    assert len(fetching) == 1
    assert fetching[0][0].upper().startswith("FETCH FORWARD 4 ")
    rest = list(streamed)
    assert [first, *rest] == expected


def test_stream_respects_max_rows_and_filters(pool, known):
    everything = list(queries.stream(pool, EventQuery(), batch=2))
    assert [e.event_id for e in everything] == [
        e.event_id for e in sorted(known.values(), key=_order_key, reverse=True)
    ]
    capped = list(queries.stream(pool, EventQuery(), batch=2, max_rows=4))
    assert capped == everything[:4]
    logins = list(queries.stream(pool, EventQuery(event_types=("user_login",)), max_rows=100))
    assert _names(known, logins) == {"a1", "b1", "c2"}
    assert list(queries.stream(pool, EventQuery(user_id="nobody"))) == []


def test_abandoning_a_stream_returns_the_connection(pool, writer, make_event):
    writer.write([make_event() for _ in range(10)])
    streamed = queries.stream(pool, EventQuery(), batch=2)
    next(streamed)
    streamed.close()
    # The connection came back clean: the next user of the pool sees no open transaction.
    with pool.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert len(queries.search(pool, EventQuery()).events) == 10


@pytest.mark.parametrize("rare_limit", [0, 2, 10_000])
def test_metadata_pages_are_the_same_whichever_plan_serves_them(pool, writer, make_event, monkeypatch,
                                                                 rare_limit):
    """Rare containment values are answered from the GIN index, common ones by the time walk:
    the pages, their order and their cursors must not depend on which."""
    monkeypatch.setattr(queries, "RARE_MATCHES", rare_limit)
    same = T0 - timedelta(minutes=30)
    events = [make_event(timestamp=same if i % 3 == 0 else T0 - timedelta(minutes=i),
                         metadata={"bucket": "hr" if i % 2 else "crm", "i": i}) for i in range(25)]
    assert all(writer.write(events))
    expected = sorted((e for e in events if e.metadata["bucket"] == "hr"), key=_order_key, reverse=True)

    query = EventQuery(metadata={"bucket": "hr"}, limit=4)
    seen, after = [], None
    while True:
        page = queries.search(pool, query, after=after)
        seen.extend(page.events)
        if page.next is None:
            break
        after = page.next
    assert seen == expected
