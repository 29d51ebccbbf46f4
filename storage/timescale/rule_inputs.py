"""What alert rules count in raw events: threshold groups, when senders were last seen, and their gaps.

Anomaly rules read through ``storage.timescale.anomalies.anomaly_hits`` (the one anomalies reader);
the backtest of a threshold rule reads the rollups (``storage.timescale.rollups.series``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.platform import is_platform_source
from storage.timescale.db import where
from storage.timescale.writer import SEEN_EVERY

# Columns a threshold rule may filter, group or count distinct on: exactly the rollups' dimensions,
# so the live evaluator (raw events) and the backtest (events_1m) answer the same question.
THRESHOLD_FIELDS = ("event_type", "outcome", "user_id", "source_ip")
ABSENCE_FIELDS = ("user_id", "source")


def _column(name: str) -> sql.Composable:
    """A group column as text (inet rendered as a bare address)."""
    if name == "source_ip":
        return sql.SQL("host(source_ip)")
    return sql.Identifier(name)


@dataclass(frozen=True)
class ThresholdHit:
    group: dict[str, str]
    events: int
    distinct: int
    first_at: datetime
    last_at: datetime
    sample_event_ids: list[str]


def threshold_hits(pool: ConnectionPool, *, start: datetime, end: datetime, event_types: Sequence[str],
                   outcome: str | None, group_by: Sequence[str], distinct: str | None, at_least: int,
                   limit: int = 1000) -> list[ThresholdHit]:
    """Groups whose raw event count (or distinct count) over [start, end) reaches ``at_least``."""
    for name in (*group_by, *([distinct] if distinct else [])):
        if name not in THRESHOLD_FIELDS:
            raise ValueError(f"cannot group or count by {name!r}; choose from {', '.join(THRESHOLD_FIELDS)}")
    w = where().ge("timestamp", start).lt("timestamp", end).any("event_type", event_types).eq("outcome", outcome or None)
    for name in group_by:
        w.add(sql.SQL("{} IS NOT NULL").format(sql.Identifier(name)))
    distinct_expr = (sql.SQL("count(DISTINCT {})").format(_column(distinct)) if distinct
                     else sql.SQL("count(*)"))
    metric = distinct_expr if distinct else sql.SQL("count(*)")
    dims = [_column(g) for g in group_by]
    statement = sql.SQL(
        "SELECT {select} count(*), {distinct_expr}, min(\"timestamp\"), max(\"timestamp\"), "
        "(array_agg(event_id ORDER BY \"timestamp\" DESC))[1:5] FROM audit_events{where} "
        "{group} HAVING {metric} >= %s ORDER BY {metric} DESC LIMIT %s"
    ).format(
        select=sql.SQL("").join(d + sql.SQL(", ") for d in dims),
        distinct_expr=distinct_expr,
        where=w.sql(),
        group=(sql.SQL("GROUP BY ") + sql.SQL(", ").join(dims)) if dims else sql.SQL(""),
        metric=metric,
    )
    with pool.connection() as conn:
        rows = conn.execute(statement, [*w.params, at_least, limit]).fetchall()
    n = len(group_by)
    return [ThresholdHit(group=dict(zip(group_by, (str(v) for v in row[:n]), strict=True)), events=row[n],
                         distinct=row[n + 1], first_at=row[n + 2], last_at=row[n + 3],
                         sample_event_ids=[str(e) for e in row[n + 4]]) for row in rows]


def last_seen(pool: ConnectionPool, *, field_name: str, values: Sequence[str], since: datetime,
              until: datetime) -> dict[str, datetime | None]:
    """When each sender was last seen in [since, until).

    ``user_id`` has its own index. ``source`` has none (it would cost every insert), so each sender's
    recorded last-seen time (``source_last_seen``, migration 0022) says where to look: its true last event lies
    within ``writer.SEEN_EVERY`` after it, and only that slice of the time index is read. If the slice holds
    none of its events (erased, or a forged time), or the time is unknown or not before ``until`` (a backtest
    of the past), the time index is walked back from ``until`` as before.
    """
    if field_name not in ABSENCE_FIELDS:
        raise ValueError(f"absence is tracked by {', '.join(ABSENCE_FIELDS)}, not {field_name!r}")
    scan = sql.SQL(
        "(SELECT \"timestamp\" FROM audit_events WHERE {f} = v.v AND \"timestamp\" >= %(since)s "
        "AND \"timestamp\" < %(until)s ORDER BY \"timestamp\" DESC LIMIT 1)").format(f=sql.Identifier(field_name))
    if field_name == "source":
        # The platform's own records are not tracked (writer.SourcesSeen): such a sender is walked for, whatever
        # the table holds, and the other senders in the same list still take the recorded times.
        statement = sql.SQL(
            "SELECT v.v, CASE WHEN NOT v.tracked OR h.last_seen IS NULL OR h.last_seen >= %(until)s THEN {scan} "
            "ELSE (SELECT CASE WHEN s.n = 0 THEN {scan} ELSE s.last END FROM (SELECT count(*) AS n, "
            "max(\"timestamp\") FILTER (WHERE \"timestamp\" >= %(since)s AND \"timestamp\" < %(until)s) AS last "
            "FROM audit_events WHERE source = v.v AND \"timestamp\" >= h.last_seen "
            "AND \"timestamp\" < h.last_seen + %(slice)s) AS s) END "
            "FROM unnest(%(values)s::text[], %(tracked)s::bool[]) AS v(v, tracked) "
            "LEFT JOIN source_last_seen AS h ON h.source = v.v"
        ).format(scan=scan)
    else:
        statement = sql.SQL("SELECT v.v, {scan} FROM unnest(%(values)s::text[]) AS v(v)").format(scan=scan)
    with pool.connection() as conn:
        rows = conn.execute(statement, {"values": list(values), "since": since, "until": until,
                                        "tracked": [not is_platform_source(v) for v in values],
                                        "slice": SEEN_EVERY}).fetchall()
    return dict(rows)


def sender_gaps(pool: ConnectionPool, *, field_name: str, values: Sequence[str], start: datetime,
                end: datetime, min_gap_seconds: float) -> list[tuple[str, datetime, datetime]]:
    """(sender, last event before the gap, first event after it) for silences longer than a gap (backtests)."""
    if field_name not in ABSENCE_FIELDS:
        raise ValueError(f"absence is tracked by {', '.join(ABSENCE_FIELDS)}, not {field_name!r}")
    statement = sql.SQL(
        "SELECT f, prev, ts FROM (SELECT {f} AS f, \"timestamp\" AS ts, lag(\"timestamp\") OVER "
        "(PARTITION BY {f} ORDER BY \"timestamp\") AS prev FROM audit_events WHERE \"timestamp\" >= %(start)s "
        "AND \"timestamp\" < %(end)s AND {f} = ANY(%(values)s::text[])) AS g "
        "WHERE prev IS NOT NULL AND ts - prev > make_interval(secs => %(gap)s) ORDER BY prev"
    ).format(f=sql.Identifier(field_name))
    with pool.connection() as conn:
        return conn.execute(statement, {"start": start, "end": end, "values": list(values),
                                        "gap": min_gap_seconds}).fetchall()


