"""Alert state in PostgreSQL: alerts and their history, silences, notification group state, rule run markers.

alerts/ holds the logic and no SQL; every statement it needs is a small function here (the outbox of
notifications is ``outbox.py``, rule inputs ``rule_inputs.py``). Functions that must share a transaction
take a connection; the rest take the pool.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.timescale.db import copy_frame, where

# Advisory lock keys (storage.timescale.db.advisory_lock): one evaluator, one dispatcher across workers.
EVALUATOR_LOCK = 0x414C_4552_5453  # 'ALERTS'
DISPATCH_LOCK = 0x414C_4449_5350  # 'ALDISP'
UTC_US = pl.Datetime("us", "UTC")


# -- alerts and their history -----------------------------------------------------------------------

@dataclass
class AlertRow:
    fingerprint: str
    rule_id: str
    title: str
    severity: str
    state: str
    labels: dict[str, str]
    group_values: dict[str, str]
    started_at: datetime
    updated_at: datetime
    firing_at: datetime | None = None
    resolved_at: datetime | None = None
    inactive_since: datetime | None = None
    value: int = 0
    count: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    flapping: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_until: datetime | None = None
    ack_comment: str | None = None
    runbook_url: str | None = None


_ALERT_COLUMNS = [f.name for f in fields(AlertRow)]
_SELECT_ALERTS = sql.SQL("SELECT {} FROM alerts").format(sql.SQL(", ").join(map(sql.Identifier, _ALERT_COLUMNS)))
_JSON_COLUMNS = {"labels", "group_values", "detail"}


def alerts_by_fingerprint(conn: psycopg.Connection, fingerprints: Collection[str], *,
                          lock: bool = False) -> dict[str, AlertRow]:
    statement = _SELECT_ALERTS + sql.SQL(" WHERE fingerprint = ANY(%s::text[])")
    if lock:
        statement += sql.SQL(" FOR UPDATE")
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return {a.fingerprint: a for a in cur.execute(statement, (list(fingerprints),)).fetchall()}


def open_alerts(conn: psycopg.Connection, rule_id: str | None = None) -> list[AlertRow]:
    """Pending and firing alerts (of one rule, or all)."""
    statement = _SELECT_ALERTS + sql.SQL(" WHERE state IN ('pending', 'firing')")
    params: list[Any] = []
    if rule_id is not None:
        statement += sql.SQL(" AND rule_id = %s")
        params.append(rule_id)
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(statement + sql.SQL(" ORDER BY fingerprint"), params).fetchall()


def save_alert(conn: psycopg.Connection, alert: AlertRow) -> None:
    values = [Jsonb(getattr(alert, c)) if c in _JSON_COLUMNS else getattr(alert, c) for c in _ALERT_COLUMNS]
    statement = sql.SQL("INSERT INTO alerts ({cols}) VALUES ({vals}) ON CONFLICT (fingerprint) DO UPDATE SET {sets}").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, _ALERT_COLUMNS)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(_ALERT_COLUMNS)),
        sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                                for c in _ALERT_COLUMNS if c != "fingerprint"))
    conn.execute(statement, values)


def add_history(conn: psycopg.Connection, alert: AlertRow, *, at: datetime, from_state: str | None,
                to_state: str, detail: dict[str, Any] | None = None) -> None:
    conn.execute("INSERT INTO alert_history (fingerprint, rule_id, at, from_state, to_state, value, detail) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (alert.fingerprint, alert.rule_id, at, from_state, to_state, alert.value, Jsonb(detail or {})))


def resolutions_since(conn: psycopg.Connection, fingerprint: str, since: datetime) -> int:
    """How often an alert resolved since a moment (flapping detection)."""
    return conn.execute("SELECT count(*) FROM alert_history WHERE fingerprint = %s AND at >= %s AND "
                        "to_state = 'resolved' AND from_state = 'firing'", (fingerprint, since)).fetchone()[0]


def list_alerts(pool: ConnectionPool, *, states: Collection[str] | None = None, since: datetime | None = None,
                limit: int = 100, fingerprint: str | None = None) -> list[AlertRow]:
    w = where().any("state", states).ge("updated_at", since).eq("fingerprint", fingerprint)
    with pool.connection() as conn, conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(_SELECT_ALERTS + w.sql() + sql.SQL(
            " ORDER BY CASE state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, updated_at DESC, "
            "fingerprint LIMIT %s"), [*w.params, limit]).fetchall()


@dataclass(frozen=True)
class HistoryRow:
    id: int
    fingerprint: str
    rule_id: str
    at: datetime
    from_state: str | None
    to_state: str
    value: int
    detail: dict[str, Any]


def history(pool: ConnectionPool, *, fingerprint: str | None = None, since: datetime | None = None,
            limit: int = 100) -> list[HistoryRow]:
    w = where().eq("fingerprint", fingerprint).ge("at", since)
    with pool.connection() as conn, conn.cursor(row_factory=class_row(HistoryRow)) as cur:
        return cur.execute(sql.SQL("SELECT id, fingerprint, rule_id, at, from_state, to_state, value, detail "
                                   "FROM alert_history") + w.sql() + sql.SQL(" ORDER BY at DESC, id DESC LIMIT %s"),
                           [*w.params, limit]).fetchall()


def acknowledge(conn: psycopg.Connection, fingerprint: str, *, by: str, comment: str, until: datetime | None,
                now: datetime) -> AlertRow | None:
    with conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(
            sql.SQL("UPDATE alerts SET acknowledged_by = %s, acknowledged_at = %s, acknowledged_until = %s, "
                    "ack_comment = %s, updated_at = %s WHERE fingerprint = %s RETURNING {}").format(
                sql.SQL(", ").join(map(sql.Identifier, _ALERT_COLUMNS))),
            (by, now, until, comment, now, fingerprint)).fetchone()


# -- silences -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Silence:
    silence_id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    expired_by: str | None
    expired_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expired_at is None and self.starts_at <= now < self.ends_at


_SELECT_SILENCES = sql.SQL("SELECT silence_id, matchers, starts_at, ends_at, created_by, comment, created_at, "
                           "expired_by, expired_at FROM alert_silences")


def create_silence(conn: psycopg.Connection, *, matchers: dict[str, str], starts_at: datetime, ends_at: datetime,
                   created_by: str, comment: str) -> int:
    """Within the caller's transaction (which stores its audit record too)."""
    return conn.execute("INSERT INTO alert_silences (matchers, starts_at, ends_at, created_by, comment) "
                        "VALUES (%s, %s, %s, %s, %s) RETURNING silence_id",
                        (Jsonb(matchers), starts_at, ends_at, created_by, comment)).fetchone()[0]


def silences(conn_or_pool: psycopg.Connection | ConnectionPool, *, active_at: datetime | None = None,
             limit: int = 1000) -> list[Silence]:
    """Silences, newest first; only those in force at ``active_at`` when given."""
    statement = _SELECT_SILENCES
    params: list[Any] = []
    if active_at is not None:
        statement += sql.SQL(" WHERE expired_at IS NULL AND starts_at <= %s AND ends_at > %s")
        params += [active_at, active_at]
    params.append(limit)
    statement += sql.SQL(" ORDER BY silence_id DESC LIMIT %s")
    if isinstance(conn_or_pool, ConnectionPool):
        with conn_or_pool.connection() as conn, conn.cursor(row_factory=class_row(Silence)) as cur:
            return cur.execute(statement, params).fetchall()
    with conn_or_pool.cursor(row_factory=class_row(Silence)) as cur:
        return cur.execute(statement, params).fetchall()


def expire_silence(conn: psycopg.Connection, silence_id: int, *, by: str, now: datetime) -> Silence | None:
    """End a silence now (kept for the record), within the caller's transaction; None when there is no such
    live silence."""
    with conn.cursor(row_factory=class_row(Silence)) as cur:
        return cur.execute(
            "UPDATE alert_silences SET expired_by = %s, expired_at = %s WHERE silence_id = %s AND expired_at IS NULL "
            "RETURNING silence_id, matchers, starts_at, ends_at, created_by, comment, created_at, expired_by, "
            "expired_at", (by, now, silence_id)).fetchone()


# -- notification group state ----------------------------------------------------------------------

# -- notification log and outbox ----------------------------------------------------------------------

@dataclass
class GroupState:
    receiver: str
    group_key: str
    first_seen: datetime
    last_sent_at: datetime | None = None
    firing: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)


def group_states(conn: psycopg.Connection) -> dict[tuple[str, str], GroupState]:
    with conn.cursor(row_factory=class_row(GroupState)) as cur:
        rows = cur.execute("SELECT receiver, group_key, first_seen, last_sent_at, firing, acked FROM alert_groups "
                           "FOR UPDATE").fetchall()
    return {(g.receiver, g.group_key): g for g in rows}


def save_group_state(conn: psycopg.Connection, state: GroupState) -> None:
    conn.execute(
        "INSERT INTO alert_groups (receiver, group_key, first_seen, last_sent_at, firing, acked) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (receiver, group_key) DO UPDATE SET "
        "last_sent_at = EXCLUDED.last_sent_at, firing = EXCLUDED.firing, acked = EXCLUDED.acked",
        (state.receiver, state.group_key, state.first_seen, state.last_sent_at, Jsonb(sorted(state.firing)),
         Jsonb(sorted(state.acked))))


def drop_group_state(conn: psycopg.Connection, receiver: str, group_key: str) -> None:
    conn.execute("DELETE FROM alert_groups WHERE receiver = %s AND group_key = %s", (receiver, group_key))


# -- rule run markers ------------------------------------------------------------------------------

def last_runs(conn: psycopg.Connection) -> dict[str, datetime]:
    return dict(conn.execute("SELECT rule_id, last_run_at FROM alert_rule_runs").fetchall())


def mark_run(conn: psycopg.Connection, rule_id: str, at: datetime, error: str | None = None) -> None:
    conn.execute("INSERT INTO alert_rule_runs (rule_id, last_run_at, last_error) VALUES (%s, %s, %s) "
                 "ON CONFLICT (rule_id) DO UPDATE SET last_run_at = EXCLUDED.last_run_at, "
                 "last_error = EXCLUDED.last_error", (rule_id, at, error))


# -- as a frame ------------------------------------------------------------------------------------

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
    w = where().any("state", states).ge("updated_at", since).any("rule_id", rule_ids)
    statement = sql.SQL("SELECT {} FROM alerts{} ORDER BY updated_at DESC, fingerprint").format(
        sql.SQL(", ").join(columns), w.sql())
    with pool.connection() as conn:
        return copy_frame(conn, statement, w.params, _ALERT_SCHEMA)
