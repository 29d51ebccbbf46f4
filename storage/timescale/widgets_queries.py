"""Aggregates the dashboard widgets show, read through the rollups' reader (and short raw windows only).

The anomaly widgets read ``storage.timescale.anomalies`` directly, like every other reader of anomalies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.timescale import rollups
from storage.timescale.db import where
from storage.timescale.rollups import SeriesQuery, series

# Raw-event aggregates (ingest lag; countries under a user or address cross-filter) never look further back.
RAW_WINDOW_CAP = timedelta(hours=24)


@dataclass(frozen=True)
class Filters:
    """The cross-filter the rollups can honour (event type, outcome, user, IP/CIDR)."""

    event_type: str | None = None
    outcome: str | None = None
    user_id: str | None = None
    source_ip: str | None = None

    def series_query(self, start: datetime, end: datetime, interval: str, group_by: tuple[str, ...],
                     *, event_types: tuple[str, ...] = (), outcome: str | None = None) -> SeriesQuery:
        types = (self.event_type,) if self.event_type else event_types
        if self.event_type and event_types and self.event_type not in event_types:
            types = ("-",)  # no event type is named "-": the widget's type filter and the cross-filter exclude each other
        return SeriesQuery(start=start, end=end, interval=interval, group_by=group_by, event_types=types,
                           outcome=self.outcome or outcome, user_id=self.user_id, source_ip=self.source_ip)


def interval_for(start: datetime, end: datetime) -> str:
    """Minute buckets up to six hours, hourly beyond: a chart never needs more than ~400 points."""
    return "1m" if end - start <= timedelta(hours=6) else "1h"


def event_series(pool: ConnectionPool, start: datetime, end: datetime, group_by: tuple[str, ...],
                 filters: Filters = Filters(), *, event_types: tuple[str, ...] = (),
                 outcome: str | None = None, interval: str | None = None) -> pl.DataFrame:
    """Counts per bucket grouped by ``group_by``, from the rollups."""
    return series(pool, filters.series_query(start, end, interval or interval_for(start, end), group_by,
                                             event_types=event_types, outcome=outcome))


def _exact_parts(start: datetime, end: datetime) -> list[tuple[datetime, datetime, str]]:
    """[start, end) as minute-bucket edges around whole hours, so a count over a range is exact to the minute.

    A series rounds its start down to a whole bucket, and an hourly bucket may run past ``end``;
    a chart wants that, a count of "events in the last 24 hours" does not.
    """
    hour = timedelta(hours=1)
    first_hour = start.replace(minute=0, second=0, microsecond=0)
    if first_hour < start:
        first_hour += hour
    last_hour = end.replace(minute=0, second=0, microsecond=0)
    if end - start <= timedelta(hours=6) or first_hour >= last_hour:
        return [(start, end, "1m")]
    parts = [(first_hour, last_hour, "1h")]
    if start < first_hour:
        parts.insert(0, (start, first_hour, "1m"))
    if last_hour < end:
        parts.append((last_hour, end, "1m"))
    return parts


def total(pool: ConnectionPool, start: datetime, end: datetime, filters: Filters = Filters(), *,
          event_types: tuple[str, ...] = (), outcome: str | None = None) -> int:
    """How many events in [start, end) (to the minute), from the rollups."""
    count = 0
    for low, high, interval in _exact_parts(start, end):
        frame = event_series(pool, low, high, (), filters, event_types=event_types, outcome=outcome,
                             interval=interval)
        count += int(frame["events"].sum()) if frame.height else 0
    return count


def top_values(pool: ConnectionPool, dimension: str, start: datetime, end: datetime,
               filters: Filters = Filters(), *, event_types: tuple[str, ...] = (), outcome: str | None = None,
               limit: int = 10) -> pl.DataFrame:
    """The ``limit`` most frequent values of ``dimension`` (user_id, source_ip, ...) in [start, end), with counts."""
    queries = [filters.series_query(low, high, interval, (dimension,), event_types=event_types, outcome=outcome)
               for low, high, interval in _exact_parts(start, end)]
    return rollups.top(pool, queries, dimension, limit)


def hour_of_week(pool: ConnectionPool, start: datetime, end: datetime, filters: Filters = Filters(), *,
                 event_types: tuple[str, ...] = (), outcome: str | None = None) -> pl.DataFrame:
    """Events per (weekday 1=Mon..7, hour 0..23) in UTC, from the hourly rollup."""
    frame = event_series(pool, start, end, (), filters, event_types=event_types, outcome=outcome, interval="1h")
    schema = {"weekday": pl.Int8, "hour": pl.Int8, "events": pl.Int64}
    if not frame.height:
        return pl.DataFrame(schema=schema)
    return (frame.with_columns(weekday=pl.col("bucket").dt.weekday().cast(pl.Int8),
                               hour=pl.col("bucket").dt.hour().cast(pl.Int8))
            .group_by("weekday", "hour").agg(pl.col("events").sum()).sort("weekday", "hour"))


_COUNTRIES = sql.SQL("""
    SELECT coalesce(source_country, 'unknown') AS country, count(*) AS events,
           count(*) FILTER (WHERE outcome = 'failure') AS failures
    FROM audit_events{where}
    GROUP BY 1 ORDER BY 2 DESC, coalesce(source_country, 'unknown') COLLATE "C" LIMIT %s
""")


def countries(pool: ConnectionPool, start: datetime, end: datetime, filters: Filters = Filters(), *,
              limit: int = 20) -> tuple[pl.DataFrame, datetime]:
    """Events and failures per source country in [start, end) (to the minute), most first.

    From the country rollups, over any range. They keep no user or address, so a cross-filter on either is
    counted from the raw events, and that window is capped at RAW_WINDOW_CAP before ``end``.
    Returns the frame and the start actually used.
    """
    if not (filters.user_id or filters.source_ip):
        queries = [filters.series_query(low, high, interval, ("source_country", "outcome"))
                   for low, high, interval in _exact_parts(start, end)]
        return rollups.countries(pool, queries, limit), start
    start = max(start, end - RAW_WINDOW_CAP)
    w = (where().ge("timestamp", start).lt("timestamp", end).eq("event_type", filters.event_type or None)
         .eq("outcome", filters.outcome or None).eq("user_id", filters.user_id or None)
         .within("source_ip", filters.source_ip or None))
    with pool.connection() as conn:
        rows = conn.execute(_COUNTRIES.format(where=w.sql()), [*w.params, limit]).fetchall()
    frame = pl.DataFrame(rows, schema={"country": pl.String, "events": pl.Int64, "failures": pl.Int64},
                         orient="row")
    return frame, start


@dataclass(frozen=True)
class IngestLag:
    events: int  # events received in the window
    p50_seconds: float | None
    p95_seconds: float | None
    newest: datetime | None  # timestamp of the newest event received


def ingest_lag(pool: ConnectionPool, *, now: datetime, window: timedelta = timedelta(minutes=5)) -> IngestLag:
    """How far behind real time events arrive (received_at - timestamp) over a short recent window."""
    with pool.connection() as conn:
        row = conn.execute(
            """SELECT count(*),
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - "timestamp")),
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - "timestamp")),
                      max("timestamp")
               FROM audit_events WHERE "timestamp" >= %s AND "timestamp" < %s""",
            (now - window, now + timedelta(minutes=5)),
        ).fetchone()
    return IngestLag(row[0], row[1], row[2], row[3])
