"""Alerting state in PostgreSQL: rule inputs, alerts and history, silences, the notification log and outbox.

alerts/ holds the logic and no SQL; every statement it needs is a small function here. Functions that
must share a transaction take a connection; the rest take the pool.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

# Columns a threshold rule may filter, group or count distinct on: exactly the rollups' dimensions,
# so the live evaluator (raw events) and the backtest (events_1m) answer the same question.
THRESHOLD_FIELDS = ("event_type", "outcome", "user_id", "source_ip")
ABSENCE_FIELDS = ("user_id", "source")
ANOMALY_SEVERITIES = ("low", "medium", "high", "critical")
EVALUATOR_LOCK = 0x414C_4552_5453  # 'ALERTS'
DISPATCH_LOCK = 0x414C_4449_5350  # 'ALDISP'


def _column(name: str) -> sql.Composable:
    """A group column as text (inet rendered as a bare address)."""
    if name == "source_ip":
        return sql.SQL("host(source_ip)")
    return sql.Identifier(name)


# -- rule inputs ------------------------------------------------------------------------------------

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
    where = [sql.SQL('"timestamp" >= %(start)s AND "timestamp" < %(end)s')]
    params: dict[str, Any] = {"start": start, "end": end, "at_least": at_least, "limit": limit}
    if event_types:
        where.append(sql.SQL("event_type = ANY(%(types)s::text[])"))
        params["types"] = list(event_types)
    if outcome:
        where.append(sql.SQL("outcome = %(outcome)s"))
        params["outcome"] = outcome
    for name in group_by:
        where.append(sql.SQL("{} IS NOT NULL").format(sql.Identifier(name)))
    distinct_expr = (sql.SQL("count(DISTINCT {})").format(_column(distinct)) if distinct
                     else sql.SQL("count(*)"))
    metric = distinct_expr if distinct else sql.SQL("count(*)")
    dims = [_column(g) for g in group_by]
    statement = sql.SQL(
        "SELECT {select} count(*), {distinct_expr}, min(\"timestamp\"), max(\"timestamp\"), "
        "(array_agg(event_id ORDER BY \"timestamp\" DESC))[1:5] FROM audit_events WHERE {where} "
        "{group} HAVING {metric} >= %(at_least)s ORDER BY {metric} DESC LIMIT %(limit)s"
    ).format(
        select=sql.SQL("").join(d + sql.SQL(", ") for d in dims),
        distinct_expr=distinct_expr,
        where=sql.SQL(" AND ").join(where),
        group=(sql.SQL("GROUP BY ") + sql.SQL(", ").join(dims)) if dims else sql.SQL(""),
        metric=metric,
    )
    with pool.connection() as conn:
        rows = conn.execute(statement, params).fetchall()
    n = len(group_by)
    return [ThresholdHit(group=dict(zip(group_by, (str(v) for v in row[:n]), strict=True)), events=row[n],
                         distinct=row[n + 1], first_at=row[n + 2], last_at=row[n + 3],
                         sample_event_ids=[str(e) for e in row[n + 4]]) for row in rows]


@dataclass(frozen=True)
class AnomalyHit:
    detector: str
    entity_type: str
    entity_value: str
    score: float
    severity: str
    anomalies: int
    window_end: datetime
    summary: str


def anomaly_hits(pool: ConnectionPool, *, start: datetime, end: datetime, detectors: Sequence[str],
                 min_score: float, severities: Sequence[str]) -> list[AnomalyHit]:
    """Anomalies whose window ended in (start, end], at or above a score and severity, per entity."""
    where = [sql.SQL("window_end > %(start)s AND window_end <= %(end)s AND score >= %(min_score)s "
                     "AND severity = ANY(%(severities)s::text[])")]
    params: dict[str, Any] = {"start": start, "end": end, "min_score": min_score, "severities": list(severities)}
    if detectors:
        where.append(sql.SQL("detector = ANY(%(detectors)s::text[])"))
        params["detectors"] = list(detectors)
    statement = sql.SQL(
        "SELECT detector, entity_type, entity_value, max(score), "
        "(array_agg(severity ORDER BY array_position(ARRAY['low','medium','high','critical'], severity) DESC))[1], "
        "count(*), max(window_end), (array_agg(coalesce(explanation->>'summary', '') ORDER BY score DESC))[1] "
        "FROM anomalies WHERE {where} GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 1000"
    ).format(where=sql.SQL(" AND ").join(where))
    with pool.connection() as conn:
        return [AnomalyHit(*row) for row in conn.execute(statement, params).fetchall()]


def insert_anomaly(pool: ConnectionPool, *, detector: str, entity_type: str, entity_value: str,
                   window_start: datetime, window_end: datetime, score: float, severity: str,
                   summary: str = "", detector_version: str = "test") -> None:
    """One anomaly row (tests and examples; analytics/ writes its own)."""
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO anomalies (detector, detector_version, entity_type, entity_value, window_start, window_end, "
            "score, severity, explanation) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (detector, entity_type, entity_value, window_start) DO UPDATE SET score = EXCLUDED.score, "
            "severity = EXCLUDED.severity, window_end = EXCLUDED.window_end",
            (detector, detector_version, entity_type, entity_value, window_start, window_end, score, severity,
             Jsonb({"summary": summary})))


def last_seen(pool: ConnectionPool, *, field_name: str, values: Sequence[str], since: datetime,
              until: datetime) -> dict[str, datetime | None]:
    """When each sender was last seen in [since, until): newest first along the time index, per value."""
    if field_name not in ABSENCE_FIELDS:
        raise ValueError(f"absence is tracked by {', '.join(ABSENCE_FIELDS)}, not {field_name!r}")
    statement = sql.SQL(
        "SELECT v, (SELECT \"timestamp\" FROM audit_events WHERE {f} = v AND \"timestamp\" >= %(since)s "
        "AND \"timestamp\" < %(until)s ORDER BY \"timestamp\" DESC LIMIT 1) FROM unnest(%(values)s::text[]) AS v"
    ).format(f=sql.Identifier(field_name))
    with pool.connection() as conn:
        rows = conn.execute(statement, {"values": list(values), "since": since, "until": until}).fetchall()
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
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if states:
        clauses.append(sql.SQL("state = ANY(%s::text[])"))
        params.append(list(states))
    if since is not None:
        clauses.append(sql.SQL("updated_at >= %s"))
        params.append(since)
    if fingerprint is not None:
        clauses.append(sql.SQL("fingerprint = %s"))
        params.append(fingerprint)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    params.append(limit)
    with pool.connection() as conn, conn.cursor(row_factory=class_row(AlertRow)) as cur:
        return cur.execute(_SELECT_ALERTS + where + sql.SQL(
            " ORDER BY CASE state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, updated_at DESC, "
            "fingerprint LIMIT %s"), params).fetchall()


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
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if fingerprint is not None:
        clauses.append(sql.SQL("fingerprint = %s"))
        params.append(fingerprint)
    if since is not None:
        clauses.append(sql.SQL("at >= %s"))
        params.append(since)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    params.append(limit)
    with pool.connection() as conn, conn.cursor(row_factory=class_row(HistoryRow)) as cur:
        return cur.execute(sql.SQL("SELECT id, fingerprint, rule_id, at, from_state, to_state, value, detail "
                                   "FROM alert_history") + where + sql.SQL(" ORDER BY at DESC, id DESC LIMIT %s"),
                           params).fetchall()


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


def create_silence(pool: ConnectionPool, *, matchers: dict[str, str], starts_at: datetime, ends_at: datetime,
                   created_by: str, comment: str) -> int:
    with pool.connection() as conn:
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


def expire_silence(pool: ConnectionPool, silence_id: int, *, by: str, now: datetime) -> Silence | None:
    """End a silence now (kept for the record); None when there is no such live silence."""
    with pool.connection() as conn, conn.cursor(row_factory=class_row(Silence)) as cur:
        return cur.execute(
            "UPDATE alert_silences SET expired_by = %s, expired_at = %s WHERE silence_id = %s AND expired_at IS NULL "
            "RETURNING silence_id, matchers, starts_at, ends_at, created_by, comment, created_at, expired_by, "
            "expired_at", (by, now, silence_id)).fetchone()


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


@dataclass(frozen=True)
class Notification:
    notification_id: int
    receiver: str
    group_key: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    lease_until: datetime | None
    delivered_at: datetime | None
    last_error: str | None


_NOTIFICATION_COLUMNS = [f.name for f in fields(Notification)]
_SELECT_NOTIFICATIONS = sql.SQL("SELECT {} FROM alert_notifications").format(
    sql.SQL(", ").join(map(sql.Identifier, _NOTIFICATION_COLUMNS)))


def enqueue(conn: psycopg.Connection, *, receiver: str, group_key: str, kind: str, payload: dict[str, Any],
            now: datetime) -> int:
    return conn.execute("INSERT INTO alert_notifications (receiver, group_key, kind, payload, created_at, "
                        "next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING notification_id",
                        (receiver, group_key, kind, Jsonb(payload), now, now)).fetchone()[0]


@dataclass(frozen=True)
class Claim:
    notification: Notification
    reclaimed: bool  # an earlier dispatcher's lease ran out: that attempt's outcome is unknown


def claim_due(pool: ConnectionPool, *, now: datetime, lease_seconds: float, limit: int = 50) -> list[Claim]:
    """Lease due notifications, at most the oldest undelivered one per (receiver, group), so order holds.

    A row still 'sending' with an expired lease was claimed by a dispatcher that died mid-delivery:
    it is due again (its receiver may already have it; ``reclaimed`` says so).
    """
    statement = sql.SQL(
        "WITH heads AS (SELECT DISTINCT ON (receiver, group_key) notification_id, status, next_attempt_at, "
        "lease_until FROM alert_notifications WHERE status IN ('pending', 'sending') "
        "ORDER BY receiver, group_key, notification_id), "
        "due AS (SELECT n.notification_id, n.status AS previous FROM alert_notifications n "
        "JOIN heads h USING (notification_id) "
        "WHERE (h.status = 'pending' AND h.next_attempt_at <= %(now)s) OR (h.status = 'sending' AND "
        "h.lease_until <= %(now)s) ORDER BY n.notification_id LIMIT %(limit)s FOR UPDATE OF n SKIP LOCKED) "
        "UPDATE alert_notifications SET status = 'sending', lease_until = %(lease)s, attempts = attempts + 1 "
        "FROM due WHERE alert_notifications.notification_id = due.notification_id RETURNING {}, due.previous"
    ).format(sql.SQL(", ").join(sql.SQL("alert_notifications.{}").format(sql.Identifier(c))
                                for c in _NOTIFICATION_COLUMNS))
    with pool.connection() as conn, conn.transaction():
        rows = conn.execute(statement, {"now": now, "limit": limit,
                                        "lease": now + timedelta(seconds=lease_seconds)}).fetchall()
    claims = [Claim(Notification(*row[:-1]), row[-1] == "sending") for row in rows]
    return sorted(claims, key=lambda c: c.notification.notification_id)


def record_attempt(pool: ConnectionPool, notification_id: int, *, at: datetime, outcome: str,
                   status_code: int | None = None, error: str | None = None, retry_after: float | None = None,
                   next_attempt_at: datetime | None = None) -> None:
    """Log one delivery attempt and move the notification on: delivered, retried later, or failed."""
    status = {"delivered": "delivered", "confirmed": "delivered", "retry": "pending", "failed": "failed"}[outcome]
    with pool.connection() as conn, conn.transaction():
        conn.execute("INSERT INTO alert_notification_attempts (notification_id, at, outcome, status_code, error, "
                     "retry_after) VALUES (%s, %s, %s, %s, %s, %s)",
                     (notification_id, at, outcome, status_code, error, retry_after))
        conn.execute("UPDATE alert_notifications SET status = %s, lease_until = NULL, last_error = %s, "
                     "next_attempt_at = coalesce(%s, next_attempt_at), "
                     "delivered_at = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_at END "
                     "WHERE notification_id = %s",
                     (status, error, next_attempt_at, status, at, notification_id))


def notifications(pool: ConnectionPool, *, fingerprint: str | None = None, receiver: str | None = None,
                  statuses: Collection[str] | None = None, limit: int = 100) -> list[Notification]:
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if fingerprint is not None:
        clauses.append(sql.SQL("payload->'alerts' @> %s"))
        params.append(Jsonb([{"fingerprint": fingerprint}]))
    if receiver is not None:
        clauses.append(sql.SQL("receiver = %s"))
        params.append(receiver)
    if statuses:
        clauses.append(sql.SQL("status = ANY(%s::text[])"))
        params.append(list(statuses))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    params.append(limit)
    with pool.connection() as conn, conn.cursor(row_factory=class_row(Notification)) as cur:
        return cur.execute(_SELECT_NOTIFICATIONS + where + sql.SQL(" ORDER BY notification_id DESC LIMIT %s"),
                           params).fetchall()


@dataclass(frozen=True)
class Attempt:
    id: int
    notification_id: int
    at: datetime
    outcome: str
    status_code: int | None
    error: str | None
    retry_after: float | None
    receiver: str
    kind: str


def attempts(pool: ConnectionPool, *, notification_ids: Iterable[int] | None = None,
             limit: int = 200) -> list[Attempt]:
    statement = sql.SQL("SELECT a.id, a.notification_id, a.at, a.outcome, a.status_code, a.error, a.retry_after, "
                        "n.receiver, n.kind FROM alert_notification_attempts a JOIN alert_notifications n "
                        "USING (notification_id)")
    params: list[Any] = []
    if notification_ids is not None:
        statement += sql.SQL(" WHERE a.notification_id = ANY(%s::bigint[])")
        params.append(list(notification_ids))
    params.append(limit)
    with pool.connection() as conn, conn.cursor(row_factory=class_row(Attempt)) as cur:
        return cur.execute(statement + sql.SQL(" ORDER BY a.id DESC LIMIT %s"), params).fetchall()


# -- evaluator bookkeeping ----------------------------------------------------------------------------

def try_lock(conn: psycopg.Connection, key: int) -> bool:
    """A session advisory lock, so one evaluator (or dispatcher) runs at a time across workers."""
    return conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]


def lock(conn: psycopg.Connection, key: int, *, timeout_seconds: float) -> bool:
    """Wait up to a timeout for the advisory lock (autocommit connection); False when it stays taken."""
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(timeout_seconds * 1000)}ms")))
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        return True
    except psycopg.errors.LockNotAvailable:
        return False


def unlock(conn: psycopg.Connection, key: int) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def last_runs(conn: psycopg.Connection) -> dict[str, datetime]:
    return dict(conn.execute("SELECT rule_id, last_run_at FROM alert_rule_runs").fetchall())


def mark_run(conn: psycopg.Connection, rule_id: str, at: datetime, error: str | None = None) -> None:
    conn.execute("INSERT INTO alert_rule_runs (rule_id, last_run_at, last_error) VALUES (%s, %s, %s) "
                 "ON CONFLICT (rule_id) DO UPDATE SET last_run_at = EXCLUDED.last_run_at, "
                 "last_error = EXCLUDED.last_error", (rule_id, at, error))

