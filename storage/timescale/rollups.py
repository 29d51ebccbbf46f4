"""Rollups (events_1m/1h and their type and country twins): refreshing them, and reading series, top values
and countries from them as Polars frames.

On the community edition the rollups are native continuous aggregates that TimescaleDB keeps
current with its own policies and real-time aggregation. On the Apache edition they are
hypertables that ``refresh`` recomputes, window by window, behind a stored watermark:
[watermark, now - end offset) on every run, plus every range written behind it, which the
writer, erasure and retention note as they change it. The writer's notes are exact, as in
TimescaleDB's own aggregates, through an invalidation threshold (migration 0025) that each
refresh raises to its end before it reads the events. A recompute deletes and re-inserts its
buckets, so running twice, or from two workers at once (an advisory lock serialises them),
changes nothing. An hour the hourly rollups already hold (behind their watermark) in which only some
minutes are recomputed, a late event or an erasure there, is updated by those minutes' difference
(counts add up) in the transaction that recomputes them, rather than recomputed from its sixty minutes.
The noted ranges are deleted with the watermarks' advance, once all is recomputed, so a refresh that
dies half-way leaves them for the next one.
Readers take the rollup up to its watermark and aggregate the raw tail after it, so a
series is current to the last event, like real-time aggregation.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.timescale import watermarks
from storage.timescale.db import Where, advisory_lock, pool_edition, where
from storage.timescale.self_audit import platform_sql

DIMENSIONS = ("event_type", "outcome", "user_id", "source_ip")
ROLLUPS = {"1m": ("events_1m", timedelta(minutes=1)), "1h": ("events_1h", timedelta(hours=1))}
# Coarse twins for series that need neither user_id nor source_ip (dashboards).
TYPE_ROLLUPS = {"1m": "events_type_1m", "1h": "events_type_1h"}
TYPE_DIMENSIONS = ("event_type", "outcome")
# Twins by source country (the others keep none), for the dashboard's countries over any range.
COUNTRY_ROLLUPS = {"1m": "events_country_1m", "1h": "events_country_1h"}
COUNTRY_DIMENSIONS = ("event_type", "outcome", "source_country")
# Every rollup as (minute, hour), the hourly one built from the minute one.
PAIRS = (("events_1m", "events_1h"), ("events_type_1m", "events_type_1h"), ("events_country_1m", "events_country_1h"))
log = logging.getLogger(__name__)
REFRESH_LOCK = 0x524F_4C4C_5550  # 'ROLLUP'


@dataclass(frozen=True)
class RefreshResult:
    ranges: list[tuple[datetime, datetime]]  # the 1-minute ranges recomputed
    watermark_1m: datetime | None
    watermark_1h: datetime | None
    native: bool = False


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)  # time_bucket's origin; minutes and hours align either way
    return epoch + ((moment - epoch) // step) * step


def _ceil(moment: datetime, step: timedelta) -> datetime:
    floored = _floor(moment, step)
    return floored if floored == moment else floored + step


def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for low, high in sorted(r for r in ranges if r[0] < r[1]):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _split(ranges: list[tuple[datetime, datetime]], span: timedelta):
    for low, high in ranges:
        while low < high:
            yield low, min(high, low + span)
            low += span


_RECOMPUTE_1M = sql.SQL("""
    INSERT INTO events_1m (bucket, event_type, outcome, user_id, source_ip, events)
    SELECT time_bucket(INTERVAL '1 minute', "timestamp"), event_type, outcome, user_id, source_ip, count(*)
    FROM audit_events WHERE "timestamp" >= %(low)s AND "timestamp" < %(high)s
    GROUP BY 1, 2, 3, 4, 5
""")
# The type twin is the country twin summed over countries: one scan of the raw events fewer per refresh
# (on 2 M events the bulk refresh took 45.8 s with a third raw scan, against 35 s with two).
_RECOMPUTE_TYPE_1M = sql.SQL("""
    INSERT INTO events_type_1m (bucket, event_type, outcome, events)
    SELECT bucket, event_type, outcome, sum(events)
    FROM events_country_1m WHERE bucket >= %(low)s AND bucket < %(high)s
    GROUP BY 1, 2, 3
""")
_RECOMPUTE_TYPE_1H = sql.SQL("""
    INSERT INTO events_type_1h (bucket, event_type, outcome, events)
    SELECT time_bucket(INTERVAL '1 hour', bucket), event_type, outcome, sum(events)
    FROM events_type_1m WHERE bucket >= %(low)s AND bucket < %(high)s
    GROUP BY 1, 2, 3
""")
_RECOMPUTE_COUNTRY_1M = sql.SQL("""
    INSERT INTO events_country_1m (bucket, event_type, outcome, source_country, events)
    SELECT time_bucket(INTERVAL '1 minute', "timestamp"), event_type, outcome, source_country, count(*)
    FROM audit_events WHERE "timestamp" >= %(low)s AND "timestamp" < %(high)s
    GROUP BY 1, 2, 3, 4
""")
_RECOMPUTE_COUNTRY_1H = sql.SQL("""
    INSERT INTO events_country_1h (bucket, event_type, outcome, source_country, events)
    SELECT time_bucket(INTERVAL '1 hour', bucket), event_type, outcome, source_country, sum(events)
    FROM events_country_1m WHERE bucket >= %(low)s AND bucket < %(high)s
    GROUP BY 1, 2, 3, 4
""")
_RECOMPUTE_1H = sql.SQL("""
    INSERT INTO events_1h (bucket, event_type, outcome, user_id, source_ip, events)
    SELECT time_bucket(INTERVAL '1 hour', bucket), event_type, outcome, user_id, source_ip, sum(events)
    FROM events_1m WHERE bucket >= %(low)s AND bucket < %(high)s
    GROUP BY 1, 2, 3, 4, 5
""")


# Every rollup pair, minute and hour, with its dimensions and the recompute of its minutes (the type twin after the
# country twin it is built from).
_MINUTE_RECOMPUTES = (("events_1m", "events_1h", DIMENSIONS, _RECOMPUTE_1M),
                      ("events_country_1m", "events_country_1h", COUNTRY_DIMENSIONS, _RECOMPUTE_COUNTRY_1M),
                      ("events_type_1m", "events_type_1h", TYPE_DIMENSIONS, _RECOMPUTE_TYPE_1M))
# Dimensions that may be NULL, matched with IS NOT DISTINCT FROM; the others with =, which the indexes serve
# (events_1h's (user_id, bucket) finds a late minute's rows among an hour's tens of thousands).
_NULLABLE = frozenset({"source_ip", "source_country"})


def _recompute(conn: psycopg.Connection, table: str, insert: sql.Composable, low: datetime, high: datetime) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {} WHERE bucket >= %(low)s AND bucket < %(high)s").format(
            sql.Identifier(table)), {"low": low, "high": high})
        conn.execute(insert, {"low": low, "high": high})


def _recompute_by_difference(conn: psycopg.Connection, low: datetime, high: datetime) -> None:
    """Recompute the minutes [low, high), all in one hour that the hourly rollups hold, and add to that hour what
    they changed, in one transaction: the minute and hourly rollups never disagree, whatever stops the refresh.

    The difference is the new minute rows less the old ones by hour and dimensions; each hourly row it touches is
    replaced by the old count plus it, and dropped where that comes to 0. Exact because counts add up and every
    hour behind the hourly watermark holds the sum of its minute rows: only the refresh writes them, an hour's
    rows from its minute rows or, here, with them in one transaction.
    """
    hour_low = _floor(low, timedelta(hours=1))
    bounds = {"low": low, "high": high, "hour_low": hour_low, "hour_high": hour_low + timedelta(hours=1)}
    with conn.transaction():
        for minutes, hours, dims, insert in _MINUTE_RECOMPUTES:
            difference = sql.Identifier(f"{hours}_difference")
            columns = sql.SQL(", ").join(sql.Identifier(d) for d in dims)
            groups = sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(dims) + 1))
            # A temporary table rather than one statement: analysed, it steers the hourly DELETE to the index.
            changed = conn.execute(sql.SQL("""
                CREATE TEMPORARY TABLE {difference} ON COMMIT DROP AS
                WITH removed AS (
                    DELETE FROM {minutes} WHERE bucket >= %(low)s AND bucket < %(high)s RETURNING bucket, {columns}, events
                ), added AS ({insert} RETURNING bucket, {columns}, events)
                SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, {columns}, sum(events)::bigint AS events
                FROM (SELECT bucket, {columns}, -events AS events FROM removed
                      UNION ALL SELECT bucket, {columns}, events FROM added) AS changes
                GROUP BY {groups} HAVING sum(events) <> 0
            """).format(difference=difference, minutes=sql.Identifier(minutes), columns=columns, insert=insert,
                        groups=groups), bounds).rowcount
            if not changed:
                continue
            conn.execute(sql.SQL("ANALYZE {}").format(difference))
            matches = sql.SQL(" AND ").join(
                sql.SQL("h.{c} IS NOT DISTINCT FROM d.{c}" if d in _NULLABLE else "h.{c} = d.{c}").format(
                    c=sql.Identifier(d)) for d in dims)
            conn.execute(sql.SQL("""
                WITH old AS (
                    DELETE FROM {hours} AS h USING {difference} AS d
                    WHERE h.bucket >= %(hour_low)s AND h.bucket < %(hour_high)s AND h.bucket = d.bucket AND {matches}
                    RETURNING h.bucket, {h_columns}, h.events
                )
                INSERT INTO {hours} (bucket, {columns}, events)
                SELECT bucket, {columns}, sum(events)
                FROM (SELECT * FROM old UNION ALL SELECT bucket, {columns}, events FROM {difference}) AS updated
                GROUP BY {groups} HAVING sum(events) <> 0
            """).format(hours=sql.Identifier(hours), difference=difference, matches=matches, columns=columns,
                        h_columns=sql.SQL(", ").join(sql.SQL("h.{}").format(sql.Identifier(d)) for d in dims),
                        groups=groups), bounds)


def _by_hour(ranges: list[tuple[datetime, datetime]], held: datetime | None
             ) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """The minute ranges cut at the hours: the parts of hours before ``held`` (the hourly watermark) that they do
    not cover whole, each within one hour, and the rest, merged."""
    hour = timedelta(hours=1)
    partial, rest = [], []
    for low, high in ranges:
        while low < high:
            top = min(high, _floor(low, hour) + hour)
            if held is not None and top - low < hour and _floor(low, hour) + hour <= held:
                partial.append((low, top))
            else:
                rest.append((low, top))
            low = top
    return partial, _merge(rest)


def _watermark(conn: psycopg.Connection, rollup: str) -> datetime | None:
    return watermarks.read(conn, "rollup", rollup)


def _set_watermark(conn: psycopg.Connection, rollup: str, watermark: datetime) -> None:
    watermarks.advance(conn, "rollup", rollup, watermark)


# The threshold moves forward only.
_RAISE_THRESHOLD = """
    INSERT INTO rollup_thresholds (rollup, threshold) VALUES ('events_1m', %s) ON CONFLICT (rollup) DO UPDATE
    SET threshold = greatest(rollup_thresholds.threshold, EXCLUDED.threshold), moved_at = now()
"""
# Transactions with an id that were running when the threshold moved, and still are.
_STILL_RUNNING = ("SELECT count(*) FROM pg_catalog.unnest(%s::pg_catalog.xid8[]) AS x "
                  "WHERE pg_catalog.pg_xact_status(x) = 'in progress'")
# The window the community edition refreshes while there are no events (the late allowance's old default).
_NATIVE_EMPTY_WINDOW = timedelta(hours=1)
# How long a refresh waits for the transactions that were writing when it moved the threshold.
WRITERS_TIMEOUT = 30.0


class RefreshDeferred(RuntimeError):
    """A transaction that was writing when the refresh moved its threshold is still open: nothing was recomputed
    and the watermark stayed (series are read from the raw events past it meanwhile); the next run tries again."""


def _raise_threshold(conn: psycopg.Connection, end: datetime, timeout: float | None = None) -> None:
    """Note every later write before ``end``; on return, every earlier one has committed or rolled back.

    Writers read the threshold without a lock (``writer._NOTE_BEHIND_ROLLUPS``), in the transaction that has
    already written their rows. One that read it before the move may have rows behind ``end`` that it does not
    note, so the refresh waits until every transaction that held an id when the move committed has ended:
    then those rows are visible to what the refresh reads next. Later statements read the new threshold. Nobody
    waits for the refresh: a long writing transaction delays only the rollups (``RefreshDeferred``).
    """
    with conn.transaction():
        conn.execute(_RAISE_THRESHOLD, (end,))
    running = conn.execute("SELECT pg_catalog.pg_snapshot_xip(pg_catalog.pg_current_snapshot())::text"
                           ).fetchall()
    xids = [row[0] for row in running]
    timeout = WRITERS_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    pause = 0.002
    while xids and conn.execute(_STILL_RUNNING, (xids,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise RefreshDeferred(f"transactions that were writing when the rollup refresh began are still open "
                                  f"after {timeout:g} s; the rollups stay at their watermark and the next refresh "
                                  "tries again (look for long transactions in pg_stat_activity)")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def refresh(pool: ConnectionPool, *, now: datetime, late: timedelta = timedelta(0),
            end_offset: timedelta = timedelta(minutes=1), span: timedelta = timedelta(hours=6),
            progress: Callable[[datetime, datetime], None] | None = None,
            since: datetime | None = None) -> RefreshResult:
    """Bring events_1m and events_1h up to ``now - end_offset`` (Apache edition).

    Recomputes from the watermark and the ranges written behind it; ``late`` recomputes that much
    more behind the watermark on every run, which exact invalidations no longer need. ``since``
    recomputes every rollup from the start of its hour, whole hours from the raw events: the mend for
    rollups believed wrong (a late minute in an earlier hour only adds its difference to that hour).
    On the community edition TimescaleDB's policies do this; here it refreshes the native
    aggregates over the same window, which is what a test or a backfill wants.
    """
    native = pool_edition(pool) == "timescale"
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            if native:
                return _refresh_native(conn, now=now, end_offset=end_offset, progress=progress)
            with advisory_lock(conn, REFRESH_LOCK):
                return _refresh_tables(conn, now=now, late=late, end_offset=end_offset, span=span,
                                       progress=progress, since=since)
        finally:
            conn.autocommit = False


def _refresh_tables(conn, *, now, late, end_offset, span, progress, since=None) -> RefreshResult:
    minute, hour = timedelta(minutes=1), timedelta(hours=1)
    end = _floor(now - end_offset, minute)
    _raise_threshold(conn, end)  # first: earlier writes are visible below, later ones note what lies behind
    watermark = _watermark(conn, "events_1m")
    held = _watermark(conn, "events_1h")  # every hour before it is in the hourly rollups
    if watermark is None:
        oldest = conn.execute('SELECT min("timestamp") FROM audit_events').fetchone()[0]
        start = _floor(oldest, minute) if oldest else end
    else:
        start = min(_floor(watermark - late, minute), end)
    if since is not None:  # whole hours, so none of them is taken by difference; none before the first event
        oldest = conn.execute('SELECT min("timestamp") FROM audit_events').fetchone()[0]
        start = min(start, max(_floor(since, hour), _floor(oldest or end, hour)))
    # Read, not yet deleted: they go with the watermarks' advance below, so a refresh that dies before (a
    # SIGKILL, a lost connection) leaves them for the next run. The advisory lock keeps other refreshes out.
    noted = conn.execute("SELECT id, low, high FROM rollup_invalidations").fetchall()
    ranges = _merge([(start, end)] + [(_floor(lo, minute), min(_ceil(hi + timedelta(microseconds=1), minute), end))
                                      for _, lo, hi in noted])
    partial, whole = _by_hour(ranges, held)
    pieces = sorted([(low, high, True) for low, high in partial]
                    + [(low, high, False) for low, high in _split(whole, span)])
    for low, high, by_difference in pieces:
        if by_difference:
            _recompute_by_difference(conn, low, high)
        else:
            _recompute(conn, "events_1m", _RECOMPUTE_1M, low, high)
            _recompute(conn, "events_country_1m", _RECOMPUTE_COUNTRY_1M, low, high)
            _recompute(conn, "events_type_1m", _RECOMPUTE_TYPE_1M, low, high)  # from the country twin
        if progress:
            progress(low, high)
    hour_end = _floor(end, hour)
    # From the hourly watermark too: the hours a refresh that died after its minutes left behind.
    hours = _merge([(_floor(lo, hour), min(_ceil(hi, hour), hour_end)) for lo, hi in whole]
                   + ([(held, hour_end)] if held is not None else []))
    for low, high in _split(hours, span):
        _recompute(conn, "events_1h", _RECOMPUTE_1H, low, high)
        _recompute(conn, "events_type_1h", _RECOMPUTE_TYPE_1H, low, high)
        _recompute(conn, "events_country_1h", _RECOMPUTE_COUNTRY_1H, low, high)
    with conn.transaction():
        _set_watermark(conn, "events_1m", end)
        _set_watermark(conn, "events_1h", hour_end)
        if noted:
            conn.execute("DELETE FROM rollup_invalidations WHERE id = ANY(%s)", ([row[0] for row in noted],))
    return RefreshResult(ranges, end, hour_end)


def _refresh_native(conn, *, now, end_offset, progress) -> RefreshResult:
    minute, hour = timedelta(minutes=1), timedelta(hours=1)
    end = _floor(now - end_offset, minute)
    oldest = conn.execute('SELECT min("timestamp") FROM audit_events').fetchone()[0]
    start = _floor(oldest, minute) if oldest else end - _NATIVE_EMPTY_WINDOW
    if start < end:
        hour_end = _floor(end, hour)
        for minutes, hours in PAIRS:
            conn.execute("CALL refresh_continuous_aggregate(%s, %s::timestamptz, %s::timestamptz)",
                         (minutes, start, end))
            if _floor(start, hour) < hour_end:
                conn.execute("CALL refresh_continuous_aggregate(%s, %s::timestamptz, %s::timestamptz)",
                             (hours, _floor(start, hour), hour_end))
        if progress:
            progress(start, end)
    conn.execute("DELETE FROM rollup_invalidations")  # TimescaleDB tracks its own invalidations
    return RefreshResult([(start, end)], end, _floor(end, hour), native=True)


# -- reading ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeriesQuery:
    """Counts per bucket over [start, end), grouped by some of DIMENSIONS, optionally filtered.

    ``start`` is rounded down to a whole bucket, so the first bucket is complete.
    """

    start: datetime
    end: datetime
    interval: str = "1m"  # '1m' or '1h'
    group_by: Sequence[str] = ("event_type",)
    event_types: Sequence[str] = ()
    outcome: str | None = None
    user_id: str | None = None
    source_ip: str | None = None  # address or CIDR
    # "users": without the platform's own principals (self_audit.PLATFORM_*); "platform": only theirs.
    population: Literal["all", "users", "platform"] = "all"


def _filters(q: SeriesQuery) -> Where:
    w = (where().any("event_type", q.event_types).eq("outcome", q.outcome or None)
         .eq("user_id", q.user_id or None).within("source_ip", q.source_ip or None))
    if q.population != "all":
        clause, params = platform_sql("user_id")
        w.add(clause if q.population == "platform" else sql.SQL("NOT ") + clause, *params)
    return w


def _check(q: SeriesQuery) -> None:
    if q.interval not in ROLLUPS:
        raise ValueError(f"interval must be one of {', '.join(ROLLUPS)}")
    unknown = set(q.group_by) - set(DIMENSIONS) - {"source_country"}
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}; choose from {', '.join(DIMENSIONS)}")
    if "source_country" in q.group_by and (not set(q.group_by) <= set(COUNTRY_DIMENSIONS) or q.user_id
                                          or q.source_ip or q.population != "all"):
        raise ValueError("source_country is counted with event_type and outcome only, without a user, address "
                         "or population filter")


def _parts(conn: psycopg.Connection, q: SeriesQuery, native: bool, params: list[Any]) -> list[sql.Composable]:
    """The SELECTs whose UNION ALL holds ``q``'s counts per bucket: the rollup up to its watermark and the raw
    tail after it (Apache edition), or the real-time aggregate (community edition). Appends their parameters."""
    step = ROLLUPS[q.interval][1]
    coarse = set(q.group_by) <= set(TYPE_DIMENSIONS) and not q.user_id and not q.source_ip and q.population == "all"
    if "source_country" in q.group_by:
        minute_table, hour_table = COUNTRY_ROLLUPS["1m"], COUNTRY_ROLLUPS["1h"]
    elif coarse:
        minute_table, hour_table = TYPE_ROLLUPS["1m"], TYPE_ROLLUPS["1h"]
    else:
        minute_table, hour_table = ROLLUPS["1m"][0], ROLLUPS["1h"][0]
    table = minute_table if q.interval == "1m" else hour_table
    start, end = _floor(q.start, step), q.end
    dims = [sql.Identifier(d) for d in q.group_by]

    def source(relation: str, time_col: str, count: str, low: datetime, high: datetime) -> sql.Composable:
        w = where().ge(time_col, low).lt(time_col, high)
        filters = _filters(q)
        w.clauses += filters.clauses
        params.extend([step, *w.params, *filters.params])
        return sql.SQL("SELECT time_bucket(%s, {t}) AS bucket{dims}, {count} AS events FROM {rel}{where} "
                       "GROUP BY 1{groups}").format(
            t=sql.Identifier(time_col), rel=sql.Identifier(relation), count=sql.SQL(count),
            dims=sql.SQL("").join(sql.SQL(", ") + d for d in dims),
            groups=sql.SQL("").join(sql.SQL(", {}").format(sql.Literal(i + 2)) for i in range(len(dims))),
            where=w.sql())

    if native:
        return [source(table, "bucket", "sum(events)", start, end)]
    marks = watermarks.read_all(conn, "rollup")
    wm_1m = marks.get("events_1m") or start
    wm_1h = min(marks.get("events_1h") or start, wm_1m)
    wm_1m, wm_1h = max(min(wm_1m, end), start), max(min(wm_1h, end), start)
    if q.interval == "1h":
        parts = [source(hour_table, "bucket", "sum(events)", start, wm_1h),
                 source(minute_table, "bucket", "sum(events)", wm_1h, wm_1m)]
    else:
        parts = [source(minute_table, "bucket", "sum(events)", start, wm_1m)]
    parts.append(source("audit_events", "timestamp", "count(*)", wm_1m, end))
    return parts


def _copy_csv(conn: psycopg.Connection, statement: sql.Composable, params: list[Any]) -> bytes:
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        for block in copy:
            buffer.write(block)
    return buffer.getvalue()


def series(pool: ConnectionPool, q: SeriesQuery) -> pl.DataFrame:
    """A tidy frame: ``bucket`` (UTC), the ``group_by`` columns, and ``events``; current to the last event."""
    _check(q)
    dims = sql.SQL("").join(sql.SQL(", ") + sql.Identifier(d) for d in q.group_by)
    params: list[Any] = []
    native = pool_edition(pool) == "timescale"  # before taking a connection: asking may need one of its own
    with pool.connection() as conn:
        parts = _parts(conn, q, native, params)
        statement = sql.SQL(
            "COPY (SELECT (extract(epoch FROM bucket) * 1000000)::bigint AS bucket{dims}, sum(events)::bigint "
            "AS events FROM ({union}) AS parts GROUP BY bucket{dims} ORDER BY bucket{dims}) "
            "TO STDOUT (FORMAT CSV, HEADER)"
        ).format(dims=dims, union=sql.SQL(" UNION ALL ").join(parts))
        data = _copy_csv(conn, statement, params)
    schema = {"bucket": pl.Int64, **{d: pl.String for d in q.group_by}, "events": pl.Int64}
    frame = pl.read_csv(data, schema=schema) if data else pl.DataFrame(schema=schema)
    return frame.with_columns(pl.from_epoch("bucket", time_unit="us").dt.replace_time_zone("UTC"))


def _ranked(pool: ConnectionPool, queries: Sequence[SeriesQuery], group_by: tuple[str, ...],
            outer: Callable[[sql.Composable], sql.Composable], limit: int, schema: dict[str, Any]) -> pl.DataFrame:
    """``outer(union)``, a SELECT over the union of ``queries``' parts (each grouped by ``group_by``) ending in
    ``LIMIT %s``: the ranked reads, counted in the database so only ``limit`` rows come back."""
    if not 1 <= limit <= 10_000:
        raise ValueError("limit must be between 1 and 10000")
    if not queries:
        return pl.DataFrame(schema=schema)
    params: list[Any] = []
    native = pool_edition(pool) == "timescale"  # before taking a connection: asking may need one of its own
    with pool.connection() as conn:
        parts = []
        for q in queries:
            if tuple(q.group_by) != group_by:
                raise ValueError(f"each query must group by {' and '.join(map(repr, group_by))} alone")
            _check(q)
            parts += _parts(conn, q, native, params)
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT CSV, HEADER)").format(
            outer(sql.SQL(" UNION ALL ").join(parts)))
        data = _copy_csv(conn, statement, [*params, limit])
    return pl.read_csv(data, schema=schema) if data else pl.DataFrame(schema=schema)


def top(pool: ConnectionPool, queries: Sequence[SeriesQuery], dimension: str, limit: int) -> pl.DataFrame:
    """The ``limit`` most frequent values of ``dimension`` over the union of ``queries`` (ranges that do not
    overlap, such as minute edges around whole hours), with ``events``: most first, then by the value as it is
    printed (an address without its /32), bytewise.

    Counted in the database, so only ``limit`` rows come back, whatever the number of buckets and values.
    """
    if dimension not in DIMENSIONS:
        raise ValueError(f"cannot rank by {dimension!r}; choose from {', '.join(DIMENSIONS)}")
    def outer(union: sql.Composable) -> sql.Composable:
        return sql.SQL("SELECT {dim}, sum(events)::bigint AS events FROM ({union}) AS parts GROUP BY 1 "
                       "ORDER BY 2 DESC, format('%%s', {dim}) COLLATE \"C\" LIMIT %s").format(
            dim=sql.Identifier(dimension), union=union)

    return _ranked(pool, queries, (dimension,), outer, limit, {dimension: pl.String, "events": pl.Int64})


def countries(pool: ConnectionPool, queries: Sequence[SeriesQuery], limit: int) -> pl.DataFrame:
    """Events and failures per source country (a missing one as ``unknown``) over the union of ``queries``
    (ranges that do not overlap, each grouped by source_country and outcome), from the country rollups: most
    events first, then by name; ``limit`` rows at most."""
    def outer(union: sql.Composable) -> sql.Composable:
        return sql.SQL("SELECT coalesce(source_country, 'unknown') AS country, sum(events)::bigint AS events, "
                       "coalesce(sum(events) FILTER (WHERE outcome = 'failure'), 0)::bigint AS failures "
                       "FROM ({union}) AS parts GROUP BY 1 "
                       "ORDER BY 2 DESC, coalesce(source_country, 'unknown') COLLATE \"C\" LIMIT %s").format(
            union=union)

    return _ranked(pool, queries, ("source_country", "outcome"), outer, limit,
                   {"country": pl.String, "events": pl.Int64, "failures": pl.Int64})


def refresh_job(pool: ConnectionPool, *, now: datetime | None = None, quiet: bool = True) -> RefreshResult | None:
    """The scheduled refresh (Apache edition); a no-op where TimescaleDB's own policies run.

    A refresh deferred by a long writing transaction is said as a warning and returns None (``quiet``), or
    raises ``RefreshDeferred`` for a caller that must not go on with stale rollups."""
    if pool_edition(pool) == "timescale":
        return None
    try:
        return refresh(pool, now=now or datetime.now(UTC))
    except RefreshDeferred as exc:
        if not quiet:
            raise
        log.warning("rollup refresh deferred: %s", exc)
        return None


@dataclass(frozen=True)
class RollupStatus:
    rollup: str
    native: bool
    watermark: datetime | None
    rows: int


def status(pool: ConnectionPool) -> list[RollupStatus]:
    native = pool_edition(pool) == "timescale"
    with pool.connection() as conn:
        found = []
        for table in (table for pair in PAIRS for table in pair):
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
            # Native aggregates keep their watermark in TimescaleDB's catalogue (and serve the
            # tail in real time), so only ours is reported.
            watermark = None if native else _watermark(conn, table)
            found.append(RollupStatus(table, native, watermark, rows))
    return found


def pending(pool: ConnectionPool, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Time ranges within [start, end) whose events the rollups do not count yet: written behind the
    watermark (a history load, a backfill, an erasure) and waiting for the next refresh. Empty on the
    community edition, where TimescaleDB's own aggregates track their invalidations."""
    with pool.connection() as conn:
        rows = conn.execute("SELECT low, high FROM rollup_invalidations WHERE low < %s AND high >= %s "
                            "ORDER BY low", (end, start)).fetchall()
    return _merge([(max(low, start), min(high + timedelta(microseconds=1), end)) for low, high in rows])
