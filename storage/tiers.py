"""One read over every tier: hot rows from TimescaleDB and archived rows from Parquet, each marked.

Callers (the query API, notebooks) ask with an EventQuery and never need to know where a day
lives. Archived files are chosen from the catalogue (only ``complete`` files, whose chunk is gone,
so no row is read twice), pruned by their day partition, time range and event types, then
scanned lazily with Polars, the EventQuery's filters turned into one predicate (``predicate``)
that the scan pushes down to Parquet row groups.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

import orjson
import polars as pl
from psycopg_pool import ConnectionPool

from storage.cold.inet import in_network
from storage.cold.store import ColdStore
from storage.events import EventRecord, Outcome
from storage.timescale import archive, queries
from storage.timescale.archive import ArchiveFile
from storage.timescale.queries import EventQuery, Position

HOT, COLD = "hot", "cold"
_ORDER = ["timestamp", "event_id"]


@dataclass
class TieredPage:
    events: list[EventRecord]
    tiers: list[str]  # "hot" or "cold", one per event
    next: Position | None
    total: int | None = None
    total_exact: bool = True  # False when counting stopped at max_count (``total`` is then a lower bound)


# -- which files ----------------------------------------------------------------------------------

def cold_files(pool: ConnectionPool, query: EventQuery, after: Position | None = None) -> list[ArchiveFile]:
    """Complete archive files that can hold a match (partition, time range and event-type pruning)."""
    end = query.end_time
    if after is not None:
        bound = after.timestamp + timedelta(microseconds=1)
        end = bound if end is None else min(end, bound)
    found = archive.list_files(pool, states=("complete",), start=query.start_time, end=end)
    wanted = set(query.event_types)
    return [f for f in found
            if (not wanted or wanted & set(f.event_types))
            and (f.max_time is None or query.start_time is None or f.max_time >= query.start_time)
            and (f.min_time is None or end is None or f.min_time < end)]


# -- filters as one Polars predicate ----------------------------------------------------------------

def _contains(doc: Any, pattern: Any) -> bool:
    """PostgreSQL's jsonb ``@>`` on parsed JSON."""
    if isinstance(pattern, dict):
        return isinstance(doc, dict) and all(k in doc and _contains(doc[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(doc, list):
            return False
        return all(any(_contains(d, p) for d in doc) if isinstance(p, dict | list) else
                   any(not isinstance(d, dict | list) and _scalar_eq(d, p) for d in doc) for p in pattern)
    if isinstance(doc, list):  # a top-level array contains a primitive it holds
        return any(not isinstance(d, dict | list) and _scalar_eq(d, pattern) for d in doc)
    return _scalar_eq(doc, pattern)


def _scalar_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def predicate(query: EventQuery, after: Position | None = None) -> pl.Expr:
    """The EventQuery's filters (same meaning as the SQL of ``queries._where``) as one expression over
    archived rows, for ``scan_parquet`` to push into the row-group reads. Two parts still run per row:
    an IPv6 network (see ``storage.cold.inet``) and metadata containment (jsonb ``@>``, which Polars
    has no expression for: ``metadata_filter``)."""
    ts = pl.col("timestamp")
    parts: list[pl.Expr] = []
    if query.start_time is not None:
        parts.append(ts >= query.start_time.astimezone(UTC))  # Polars compares only identical zone names
    if query.end_time is not None:
        parts.append(ts < query.end_time.astimezone(UTC))
    if query.user_id is not None:
        parts.append(pl.col("user_id") == query.user_id)
    if query.event_types:
        parts.append(pl.col("event_type").is_in(list(query.event_types)))
    if query.outcome is not None:
        parts.append(pl.col("outcome") == str(query.outcome))
    if query.source_ip is not None:
        parts.append(in_network("source_ip", query.source_ip))
    if after is not None:
        moment = after.timestamp.astimezone(UTC)
        parts.append((ts < moment) | ((ts == moment) & (pl.col("event_id") < str(after.event_id))))
    return pl.all_horizontal(parts) if parts else pl.lit(True)


def _plain_strings(pattern: Any) -> set[str]:
    """Keys and string values of a containment pattern that any matching document's JSON text must hold
    verbatim as ``"text"``: printable ASCII without quotes or backslashes is written the same by jsonb
    and every JSON encoder, so its quoted form is a safe substring test."""
    found: set[str] = set()
    items = pattern.items() if isinstance(pattern, dict) else ((None, v) for v in pattern) \
        if isinstance(pattern, list) else [(None, pattern)]
    for key, value in items:
        for text in (key, value):
            if isinstance(text, str) and text.isascii() and text.isprintable() and not ({'"', "\\"} & set(text)):
                found.add(f'"{text}"')
        if isinstance(value, dict | list):
            found |= _plain_strings(value)
    return found


def metadata_filter(frame: pl.LazyFrame, query: EventQuery) -> pl.LazyFrame:
    """jsonb containment over the rows the pushed-down predicate kept: first vectorised substring tests
    that every match passes (so most rows never reach Python), then the exact ``@>`` on the rest."""
    if query.metadata is None:
        return frame
    pattern = query.metadata
    needles = sorted(_plain_strings(pattern))
    if needles:
        frame = frame.filter(pl.all_horizontal([pl.col("metadata").str.contains(n, literal=True) for n in needles]))
    return frame.filter(pl.col("metadata").map_elements(lambda text: _contains(orjson.loads(text), pattern),
                                                        return_dtype=pl.Boolean))


def cold_lazy(store: ColdStore, files: list[ArchiveFile], query: EventQuery,
              after: Position | None = None) -> pl.LazyFrame | None:
    if not files:
        return None
    # One scan per file, each filtered by the same predicate (pushed into its row groups), stacked
    # diagonally: files written before a column was added lack it.
    where = predicate(query, after)
    scans = [store.scan([f.path]).filter(where) for f in files]
    frame = scans[0] if len(scans) == 1 else pl.concat(scans, how="diagonal_relaxed")
    return metadata_filter(frame, query)


# -- frames for analysis ---------------------------------------------------------------------------

def events_frame(pool: ConnectionPool, store: ColdStore, query: EventQuery, *,
                 limit: int | None = None) -> pl.DataFrame:
    """Every matching event across tiers, newest first, with a ``tier`` column ("hot" / "cold").

    Columns are ``storage.events.COLUMNS`` in the archive encoding (uuid, inet and jsonb as text;
    timestamps as UTC microseconds); the hot part comes from ``queries.events_frame``, the one events
    reader. ``query.limit`` (a page size) is ignored; pass ``limit``.
    """
    hot = queries.events_frame(pool, query, newest_first=True, limit=limit).with_columns(tier=pl.lit(HOT))
    cold = cold_lazy(store, cold_files(pool, query), query)
    frames = [hot]
    if cold is not None:
        cold = cold.sort(_ORDER, descending=True)
        if limit is not None:
            cold = cold.head(limit)
        frames.append(cold.collect().with_columns(tier=pl.lit(COLD)))
    merged = pl.concat(frames, how="diagonal_relaxed").unique(["event_id", "timestamp"], keep="first",
                                                                maintain_order=True)
    merged = merged.sort(_ORDER, descending=True)
    return merged.head(limit) if limit is not None else merged


# -- pages for the API ----------------------------------------------------------------------------

def record_of(row: dict[str, Any]) -> EventRecord:
    """An archived row back as the stored event."""
    return EventRecord(
        event_id=uuid.UUID(row["event_id"]), timestamp=row["timestamp"], event_type=row["event_type"],
        user_id=row["user_id"], outcome=Outcome(row["outcome"]), source=row["source"],
        source_ip=row["source_ip"], source_country=row["source_country"], source_asn=row["source_asn"],
        user_agent=row["user_agent"], resource_id=row["resource_id"], metadata=orjson.loads(row["metadata"]),
        received_at=row["received_at"])


def search(pool: ConnectionPool, store: ColdStore, query: EventQuery, *, after: Position | None = None,
           with_total: bool = False, max_count: int | None = None) -> TieredPage:
    """One page newest first over both tiers; the keyset position works across the boundary.

    When the hot tier fills the page, an archived row can only belong on it if it is at least as new as
    the page's last hot row: that bound narrows the cold read (files wholly older are not opened, and
    the scan's predicate skips older row groups). ``with_total`` counts up to ``max_count`` per tier."""
    hot = queries.search(pool, query, after=after, with_total=with_total, max_count=max_count)
    candidates = [(e, HOT) for e in hot.events]
    cold_query = query
    if hot.next is not None and hot.events:
        oldest_on_page = hot.events[-1].timestamp
        if query.start_time is None or query.start_time < oldest_on_page:
            cold_query = dataclasses.replace(query, start_time=oldest_on_page)
    files = cold_files(pool, cold_query, after)
    cold_total, cold_exact = 0, True
    if files:
        lazy = cold_lazy(store, files, cold_query, after)
        rows = lazy.sort(_ORDER, descending=True).head(query.limit + 1).collect()
        candidates += [(record_of(r), COLD) for r in rows.iter_rows(named=True)]
    if with_total:
        counted = cold_lazy(store, cold_files(pool, query), query)
        if counted is not None:
            if max_count is not None:
                counted = counted.head(max_count + 1)
            cold_total = counted.select(pl.len()).collect().item()
            if max_count is not None and cold_total > max_count:
                cold_total, cold_exact = max_count, False
    seen: set[tuple] = set()
    merged = []
    for event, tier in sorted(candidates, key=lambda c: (c[0].timestamp, c[0].event_id), reverse=True):
        if event.key not in seen:  # a row caught in both tiers mid-archive is shown once
            seen.add(event.key)
            merged.append((event, tier))
    page = merged[:query.limit]
    more = len(merged) > query.limit or hot.next is not None
    following = Position(page[-1][0].timestamp, page[-1][0].event_id) if more and page else None
    total = hot.total + cold_total if with_total and hot.total is not None else None
    exact = hot.total_exact and cold_exact
    if total is not None and max_count is not None and total > max_count:
        total, exact = max_count, False
    return TieredPage([e for e, _ in page], [t for _, t in page], following, total, exact)
