"""Reading events back: the one events query type (``EventQuery``) and its readers: pages with keyset
pagination, totals, streamed exports, and ``events_frame``, the one bulk read into Polars.

``events_frame`` runs ``COPY ... TO STDOUT`` as CSV and Polars parses it in native code, an order of
magnitude faster than fetching tuples into Python; times travel as epoch microseconds, ``metadata``
as JSON text.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.errors import InvalidCursor
from storage.events import COLUMNS, EventRecord, Outcome
from storage.timescale import self_audit
from storage.timescale.db import Where, check_size, copy_frame, where


@dataclass(frozen=True)
class EventQuery:
    """The filters of ``GET /api/v1/logs``; every field narrows the result."""

    start_time: datetime | None = None
    end_time: datetime | None = None
    user_id: str | None = None
    event_types: tuple[str, ...] = ()
    outcome: Outcome | None = None
    source_ip: str | None = None  # an address or a CIDR block
    metadata: dict[str, Any] | None = None  # JSONB containment
    limit: int = 100
    platform: bool = True  # False leaves out the platform's own records (its keys' reads, its operators' actions)

    def filters(self) -> dict[str, Any]:
        """The filters that are set, in the query API's parameter names (audit records, export links)."""
        return {k: v for k, v in {
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "user_id": self.user_id,
            "event_type": list(self.event_types) or None,
            "outcome": str(self.outcome) if self.outcome else None,
            "source_ip": self.source_ip,
            "metadata": self.metadata or None,
        }.items() if v is not None}

    def fingerprint(self) -> str:
        """Identifies the filters (not the limit), so a cursor cannot be replayed on another query."""
        parts = orjson.dumps(
            [
                self.start_time.isoformat() if self.start_time else None,
                self.end_time.isoformat() if self.end_time else None,
                self.user_id,
                sorted(self.event_types),
                str(self.outcome) if self.outcome else None,
                self.source_ip,
                self.metadata,
                *([] if self.platform else [False]),  # unchanged for the API's queries (always True there)
            ],
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(parts).hexdigest()[:16]


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last (timestamp, event_id) returned, newest-first order."""

    timestamp: datetime
    event_id: uuid.UUID


@dataclass
class Page:
    events: list[EventRecord]
    next: Position | None
    total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    total_exact: bool = True  # False when the count stopped at max_count: ``total`` is then a lower bound


def encode_cursor(position: Position, query: EventQuery) -> str:
    raw = orjson.dumps({"t": position.timestamp.isoformat(), "i": str(position.event_id), "q": query.fingerprint()})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, query: EventQuery) -> Position:
    if len(cursor) > 512:
        raise InvalidCursor("the cursor is too long; pass back exactly the `next` value of the previous page")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        position = Position(datetime.fromisoformat(data["t"]), uuid.UUID(data["i"]))
        fingerprint = data["q"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: uuid.UUID(hex=<non-str>)
        raise InvalidCursor(
            "the cursor is not one this server issued; pass back exactly the `next` value of the previous page"
        ) from exc
    if position.timestamp.tzinfo is None:
        raise InvalidCursor("the cursor is not one this server issued")
    if fingerprint != query.fingerprint():
        raise InvalidCursor("the cursor belongs to a query with other filters; start again without a cursor")
    return position


_SELECT = sql.SQL("SELECT {cols} FROM audit_events").format(
    cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
)


def _filters(query: EventQuery) -> Where:
    w = (where().ge("timestamp", query.start_time).lt("timestamp", query.end_time).eq("user_id", query.user_id)
         .any("event_type", query.event_types).eq("outcome", str(query.outcome) if query.outcome else None)
         .within("source_ip", query.source_ip)
         .compare("metadata", "@>", Jsonb(query.metadata) if query.metadata is not None else None))
    if not query.platform:
        clause, params = self_audit.platform_sql("user_id")
        w.add(sql.SQL("NOT ") + clause, *params)  # user_id is NOT NULL
    return w


def _where(query: EventQuery, after: Position | None) -> tuple[sql.Composable, list[Any]]:
    w = _filters(query)
    if after is not None:
        w.add('("timestamp", event_id) < (%s, %s)', after.timestamp, after.event_id)
    return w.sql(), w.params


def filters(query: EventQuery) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause of a query's filters (no position), for other readers of the same filters."""
    return _where(query, None)


def record_of(row: tuple) -> EventRecord:
    return EventRecord(
        event_id=row[0],
        timestamp=row[1],
        event_type=row[2],
        user_id=row[3],
        outcome=Outcome(row[4]),
        source=row[5],
        source_ip=str(row[6]) if row[6] is not None else None,
        source_country=row[7],
        source_asn=row[8],
        user_agent=row[9],
        resource_id=row[10],
        metadata=row[11],
        received_at=row[12],
    )


_ORDER = sql.SQL(' ORDER BY "timestamp" DESC, event_id DESC')


# A metadata filter matching at most this many rows is answered from the GIN index.
RARE_MATCHES = 5000

_PROBE = sql.SQL('SELECT event_id, "timestamp" FROM audit_events')
_BY_KEYS = _SELECT + sql.SQL(
    ' JOIN unnest(%s::uuid[], %s::timestamptz[]) AS k(id, ts) ON event_id = k.id AND "timestamp" = k.ts'
    ' WHERE "timestamp" >= %s AND "timestamp" <= %s'
) + _ORDER


def _rare_matches(conn, where: sql.Composable, params: list[Any], limit: int) -> list[tuple] | None:
    """The page for a metadata filter, if the filter is rare; None if it matches many rows.

    PostgreSQL cannot estimate JSONB containment, so for a newest-first page it walks the
    time index and filters row by row: instant for a common value, a scan of the whole range
    for a rare one (a ticket id, an object key). Ask the GIN index first, with plain index
    scans switched off for this transaction only; if it finds few rows, sort those; if it
    finds many, the time-ordered walk meets enough of them early and is the right plan.
    """
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_seqscan = off")
        keys = conn.execute(_PROBE + where + sql.SQL(" LIMIT %s"), [*params, RARE_MATCHES + 1]).fetchall()
    if len(keys) > RARE_MATCHES:
        return None
    keys.sort(key=lambda k: (k[1], k[0]), reverse=True)
    page = keys[:limit]
    if not page:
        return []
    ids, times = [k[0] for k in page], [k[1] for k in page]
    return conn.execute(_BY_KEYS, [ids, times, min(times), max(times)]).fetchall()


def search(pool: ConnectionPool, query: EventQuery, *, after: Position | None = None,
           with_total: bool = False, max_count: int | None = None) -> Page:
    """One page of matching events, newest first, with the position to continue from.

    ``with_total`` counts the matches, up to ``max_count`` when given (a count of the whole
    hypertable is a scan of it: bounded, it stops at the first max_count + 1 rows)."""
    where, params = _where(query, after)
    statement = _SELECT + where + _ORDER + sql.SQL(" LIMIT %s")
    with pool.connection() as conn:
        rows = None
        if query.metadata:
            rows = _rare_matches(conn, where, params, query.limit + 1)
        if rows is None:
            rows = conn.execute(statement, [*params, query.limit + 1]).fetchall()
        total = None
        if with_total:
            count_where, count_params = _where(query, None)
            if max_count is None:
                total = conn.execute(sql.SQL("SELECT count(*) FROM audit_events") + count_where,
                                     count_params).fetchone()[0]
            else:
                total = conn.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM audit_events") + count_where
                                     + sql.SQL(" LIMIT %s) AS capped"), [*count_params, max_count + 1]).fetchone()[0]
    events = [record_of(r) for r in rows[: query.limit]]
    following = None
    if len(rows) > query.limit:
        last = events[-1]
        following = Position(last.timestamp, last.event_id)
    exact = total is None or max_count is None or total <= max_count
    if not exact:
        total = max_count
    return Page(events=events, next=following, total=total, total_exact=exact)


def get(pool: ConnectionPool, event_id: uuid.UUID) -> EventRecord | None:
    with pool.connection() as conn:
        row = conn.execute(_SELECT + sql.SQL(" WHERE event_id = %s LIMIT 1"), (event_id,)).fetchone()
    return record_of(row) if row else None


def stream(pool: ConnectionPool, query: EventQuery, *, batch: int = 2000,
           max_rows: int | None = None) -> Iterator[EventRecord]:
    """Every matching event, newest first, through a server-side cursor (bounded memory)."""
    where, params = _where(query, None)
    statement = _SELECT + where + _ORDER
    if max_rows is not None:
        statement += sql.SQL(" LIMIT %s")
        params.append(max_rows)
    with pool.connection() as conn, conn.transaction():
        with conn.cursor(name="aw_export") as cur:
            cur.itersize = batch
            cur.execute(statement, params)
            for row in cur:
                yield record_of(row)


# -- bulk reads as frames --------------------------------------------------------------------------

UTC_US = pl.Datetime("us", "UTC")

# How each audit_events column is selected for the frame, and the dtype it is read as.
_EVENT_COLUMNS: dict[str, tuple[sql.Composable, pl.DataType]] = {
    "event_id": (sql.SQL("event_id::text"), pl.String()),
    "timestamp": (sql.SQL('(extract(epoch FROM "timestamp") * 1000000)::bigint'), UTC_US),
    "event_type": (sql.Identifier("event_type"), pl.String()),
    "user_id": (sql.Identifier("user_id"), pl.String()),
    "outcome": (sql.Identifier("outcome"), pl.String()),
    "source": (sql.Identifier("source"), pl.String()),
    "source_ip": (sql.SQL("host(source_ip)"), pl.String()),
    "source_country": (sql.Identifier("source_country"), pl.String()),
    "source_asn": (sql.Identifier("source_asn"), pl.String()),
    "user_agent": (sql.Identifier("user_agent"), pl.String()),
    "resource_id": (sql.Identifier("resource_id"), pl.String()),
    "metadata": (sql.SQL("metadata::text"), pl.String()),
    "received_at": (sql.SQL("(extract(epoch FROM received_at) * 1000000)::bigint"), UTC_US),
}


def event_schema(columns: Sequence[str] | None = None) -> dict[str, pl.DataType]:
    """The frame dtypes of these audit_events columns (all of them by default), in order."""
    names = list(columns) if columns else list(COLUMNS)
    unknown = [c for c in names if c not in _EVENT_COLUMNS]
    if unknown:
        raise ValueError(f"unknown event columns {unknown}; choose from {', '.join(COLUMNS)}")
    return {c: _EVENT_COLUMNS[c][1] for c in names}


def events_frame(pool: ConnectionPool, query: EventQuery, *, columns: Sequence[str] | None = None,
                 max_rows: int | None = None, newest_first: bool = False, limit: int | None = None) -> pl.DataFrame:
    """Every event matching ``query``, oldest first, as one frame read over COPY (``query.limit`` is ignored).

    The one bulk events reader: the analytics jobs, their notebook helpers, the data API and the
    tiered reads (``storage.tiers``, hot part) all come through here. More than ``max_rows`` matches
    raise TooManyRows; ``limit`` instead keeps the first ``limit`` rows (with ``newest_first``, the newest).
    """
    names = list(event_schema(columns))
    select = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(_EVENT_COLUMNS[c][0], sql.Identifier(c)) for c in names)
    where, params = _where(query, None)
    order = _ORDER if newest_first else sql.SQL(' ORDER BY "timestamp", event_id')
    statement = sql.SQL("SELECT {} FROM audit_events{}").format(select, where) + order
    caps = [c for c in (limit, None if max_rows is None else max_rows + 1) if c is not None]
    if caps:
        statement += sql.SQL(" LIMIT %s")
        params = [*params, min(caps)]
    with pool.connection() as conn:
        frame = copy_frame(conn, statement, params, {c: _EVENT_COLUMNS[c][1] for c in names})
    return check_size(frame, max_rows, "events")


@dataclass(frozen=True)
class TimeRange:
    """The first and last stored event time (None for an empty store) and the number of events."""

    first: datetime | None
    last: datetime | None
    events: int


def first_event_time(pool: ConnectionPool) -> datetime | None:
    """The oldest stored event's time (None for an empty store), without counting anything."""
    with pool.connection() as conn:
        first = conn.execute('SELECT min("timestamp") FROM audit_events').fetchone()[0]
    return first.astimezone(UTC) if first else None


def time_range(pool: ConnectionPool) -> TimeRange:
    """Where the data is, so a notebook can aim at it instead of at a guessed date.

    The times are in ``datetime.UTC`` whatever the session's TimeZone: Polars compares datetimes
    only within one zone name, and frames here are "UTC", not "Etc/UTC".
    """
    with pool.connection() as conn:
        first, last, count = conn.execute(
            'SELECT min("timestamp"), max("timestamp"), count(*) FROM audit_events').fetchone()
    return TimeRange(first.astimezone(UTC) if first else None, last.astimezone(UTC) if last else None, count)


def last_event_per_user(pool: ConnectionPool, query: EventQuery, *,
                        exclude_outcome: Outcome | None = None) -> pl.DataFrame:
    """Each user's latest event matching ``query`` (``user_id``, ``last_event``), aggregated in PostgreSQL.

    For readers that need no more than that (the access review's last activity per account): one row per
    user instead of every event of the window over the wire. ``exclude_outcome`` leaves out that outcome.
    The hot table only; ``storage.tiers.cold_lazy`` gives the archived part.
    """
    w = _filters(query)
    if exclude_outcome is not None:
        w.add("outcome <> %s", str(exclude_outcome))
    statement = sql.SQL('SELECT user_id, (extract(epoch FROM max("timestamp")) * 1000000)::bigint '
                        "FROM audit_events{} GROUP BY user_id").format(w.sql())
    with pool.connection() as conn:
        return copy_frame(conn, statement, w.params, {"user_id": pl.String(), "last_event": UTC_US})
