"""Bulk reads as Polars frames: events, anomalies and users over COPY, never row by row.

The server writes CSV (``COPY ... TO STDOUT``) and Polars parses it in native code, which is
an order of magnitude faster than fetching tuples into Python. Times travel as epoch
microseconds, so no timestamp text is parsed on either side; ``metadata`` and ``explanation``
travel as JSON text, for ``pl.col(...).str.json_path_match`` or ``str.json_decode``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.errors import TooManyRows
from storage.events import COLUMNS
from storage.timescale.queries import EventQuery, filters

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


def copy_frame(conn: psycopg.Connection, statement: sql.Composable, params: Sequence[Any] | dict[str, Any],
               schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Run ``COPY (statement) TO STDOUT`` as CSV and parse it into a frame of ``schema``.

    Columns are matched by position, not by name; Datetime columns of the schema are expected
    as epoch microseconds (bigint).
    """
    wire = {name: (pl.Int64() if isinstance(dtype, pl.Datetime) else dtype) for name, dtype in schema.items()}
    copy = sql.SQL("COPY ({}) TO STDOUT (FORMAT CSV)").format(statement)
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(copy, params) as stream:
        for block in stream:
            buffer.write(block)
    data = buffer.getvalue()
    frame = pl.read_csv(data, has_header=False, schema=wire) if data else pl.DataFrame(schema=wire)
    times = [name for name, dtype in schema.items() if isinstance(dtype, pl.Datetime)]
    return frame.with_columns(pl.from_epoch(name, time_unit="us").dt.replace_time_zone("UTC") for name in times)


def _check_size(frame: pl.DataFrame, max_rows: int | None, what: str) -> pl.DataFrame:
    if max_rows is not None and frame.height > max_rows:
        raise TooManyRows(
            f"more than {max_rows:,} {what} match; narrow the time range or the filters, or pass a larger "
            "max_rows (None for no limit) if the memory is there"
        )
    return frame


# -- events -----------------------------------------------------------------------------------------

def event_schema(columns: Sequence[str] | None = None) -> dict[str, pl.DataType]:
    """The frame dtypes of these audit_events columns (all of them by default), in order."""
    names = list(columns) if columns else list(COLUMNS)
    unknown = [c for c in names if c not in _EVENT_COLUMNS]
    if unknown:
        raise ValueError(f"unknown event columns {unknown}; choose from {', '.join(COLUMNS)}")
    return {c: _EVENT_COLUMNS[c][1] for c in names}


def events_frame(pool: ConnectionPool, query: EventQuery, *, columns: Sequence[str] | None = None,
                 max_rows: int | None = None) -> pl.DataFrame:
    """Every event matching the API's filters, oldest first, as one frame."""
    names = list(event_schema(columns))
    select = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(_EVENT_COLUMNS[c][0], sql.Identifier(c)) for c in names)
    where, params = filters(query)
    statement = sql.SQL('SELECT {} FROM audit_events{} ORDER BY "timestamp", event_id').format(select, where)
    if max_rows is not None:
        statement += sql.SQL(" LIMIT %s")
        params = [*params, max_rows + 1]
    with pool.connection() as conn:
        frame = copy_frame(conn, statement, params, {c: _EVENT_COLUMNS[c][1] for c in names})
    return _check_size(frame, max_rows, "events")


@dataclass(frozen=True)
class TimeRange:
    """The first and last stored event time (None for an empty store) and the number of events."""

    first: datetime | None
    last: datetime | None
    events: int


def time_range(pool: ConnectionPool) -> TimeRange:
    """Where the data is, so a notebook can aim at it instead of at a guessed date.

    The times are in ``datetime.UTC`` whatever the session's TimeZone: Polars compares datetimes
    only within one zone name, and frames here are "UTC", not "Etc/UTC".
    """
    with pool.connection() as conn:
        first, last, count = conn.execute(
            'SELECT min("timestamp"), max("timestamp"), count(*) FROM audit_events').fetchone()
    return TimeRange(first.astimezone(UTC) if first else None, last.astimezone(UTC) if last else None, count)


# -- anomalies ----------------------------------------------------------------------------------------

SEVERITIES = ("low", "medium", "high", "critical")

_ANOMALY_SCHEMA: dict[str, pl.DataType] = {
    "anomaly_id": pl.String(), "detector": pl.String(), "detector_version": pl.String(),
    "entity_type": pl.String(), "entity_value": pl.String(), "window_start": UTC_US, "window_end": UTC_US,
    "score": pl.Float64(), "severity": pl.String(), "explanation": pl.String(),
    "sample_event_ids": pl.String(), "detected_at": UTC_US,
}
_ANOMALY_SELECT = sql.SQL(
    "SELECT anomaly_id::text, detector, detector_version, entity_type, entity_value, "
    "(extract(epoch FROM window_start) * 1000000)::bigint, (extract(epoch FROM window_end) * 1000000)::bigint, "
    "score, severity, explanation::text, array_to_json(sample_event_ids)::text, "
    "(extract(epoch FROM detected_at) * 1000000)::bigint FROM anomalies"
)


@dataclass(frozen=True)
class AnomalyQuery:
    """Anomalies whose window overlaps [start, end), optionally narrowed."""

    start: datetime | None = None
    end: datetime | None = None
    detectors: tuple[str, ...] = ()
    entity_type: str | None = None
    entity_value: str | None = None
    min_score: float | None = None
    min_severity: str | None = None


def anomalies_frame(pool: ConnectionPool, query: AnomalyQuery, *, max_rows: int | None = None) -> pl.DataFrame:
    """Stored anomalies, oldest window first; ``sample_event_ids`` as a list of ids."""
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if query.start is not None:
        clauses.append(sql.SQL("window_end > %s"))
        params.append(query.start)
    if query.end is not None:
        clauses.append(sql.SQL("window_start < %s"))
        params.append(query.end)
    if query.detectors:
        clauses.append(sql.SQL("detector = ANY(%s::text[])"))
        params.append(list(query.detectors))
    if query.entity_type is not None:
        clauses.append(sql.SQL("entity_type = %s"))
        params.append(query.entity_type)
    if query.entity_value is not None:
        clauses.append(sql.SQL("entity_value = %s"))
        params.append(query.entity_value)
    if query.min_score is not None:
        clauses.append(sql.SQL("score >= %s"))
        params.append(query.min_score)
    if query.min_severity is not None:
        if query.min_severity not in SEVERITIES:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITIES)}")
        clauses.append(sql.SQL("severity = ANY(%s::text[])"))
        params.append(list(SEVERITIES[SEVERITIES.index(query.min_severity):]))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    statement = _ANOMALY_SELECT + where + sql.SQL(" ORDER BY window_start, detector, entity_type, entity_value")
    if max_rows is not None:
        statement += sql.SQL(" LIMIT %s")
        params.append(max_rows + 1)
    with pool.connection() as conn:
        frame = copy_frame(conn, statement, params, _ANOMALY_SCHEMA)
    frame = frame.with_columns(pl.col("sample_event_ids").str.json_decode(pl.List(pl.String())))
    return _check_size(frame, max_rows, "anomalies")


# -- alerts -----------------------------------------------------------------------------------------------

ALERT_STATES = ("pending", "firing", "resolved")
_ALERT_SCHEMA: dict[str, pl.DataType] = {
    "fingerprint": pl.String(), "rule_id": pl.String(), "title": pl.String(), "severity": pl.String(),
    "state": pl.String(), "labels": pl.String(), "group_values": pl.String(), "started_at": UTC_US,
    "firing_at": UTC_US, "updated_at": UTC_US, "resolved_at": UTC_US, "value": pl.Int64(), "count": pl.Int64(),
    "detail": pl.String(), "flapping": pl.Boolean(), "acknowledged_by": pl.String(), "acknowledged_at": UTC_US,
    "runbook_url": pl.String(),
}


def _epoch(column: str) -> sql.Composable:
    return sql.SQL("(extract(epoch FROM {}) * 1000000)::bigint").format(sql.Identifier(column))


def alerts_frame(pool: ConnectionPool, *, states: Sequence[str] = (), since: datetime | None = None,
                 rule_ids: Sequence[str] = ()) -> pl.DataFrame:
    """Alerts (one row per rule and group), newest change first; JSON columns as text."""
    columns = []
    for name, dtype in _ALERT_SCHEMA.items():
        if isinstance(dtype, pl.Datetime):
            columns.append(_epoch(name))
        elif name in ("labels", "group_values", "detail", "flapping"):  # boolean::text is true/false, not t/f
            columns.append(sql.SQL("{}::text").format(sql.Identifier(name)))
        else:
            columns.append(sql.Identifier(name))
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if states:
        clauses.append(sql.SQL("state = ANY(%s::text[])"))
        params.append(list(states))
    if since is not None:
        clauses.append(sql.SQL("updated_at >= %s"))
        params.append(since)
    if rule_ids:
        clauses.append(sql.SQL("rule_id = ANY(%s::text[])"))
        params.append(list(rule_ids))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    statement = sql.SQL("SELECT {} FROM alerts{} ORDER BY updated_at DESC, fingerprint").format(
        sql.SQL(", ").join(columns), where)
    with pool.connection() as conn:
        return copy_frame(conn, statement, params, _ALERT_SCHEMA)


# -- users ------------------------------------------------------------------------------------------------

_USER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(), "display_name": pl.String(), "email": pl.String(), "department": pl.String(),
    "kind": pl.String(), "created_at": UTC_US, "disabled_at": UTC_US,
}


def users_frame(pool: ConnectionPool) -> pl.DataFrame:
    """The user directory, to join departments and kinds onto events."""
    statement = sql.SQL(
        "SELECT user_id, display_name, email, department, kind, "
        "(extract(epoch FROM created_at) * 1000000)::bigint, (extract(epoch FROM disabled_at) * 1000000)::bigint "
        "FROM users ORDER BY user_id")
    with pool.connection() as conn:
        return copy_frame(conn, statement, [], _USER_SCHEMA)
