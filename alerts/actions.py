"""What people do with alerts — list, acknowledge, silence — shared by the API, the CLI and the dashboard.

Each change calls ``audit(resource_id, metadata)``, the caller's builder of a config_change audit record
under its own principal, and stores that record in the same transaction as the change: a change and its
record commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from psycopg_pool import ConnectionPool

from alerts.errors import InvalidSilence, UnknownAlert
from alerts.routing import LABEL_MATCHER_MAX
from storage.events import EventRecord
from storage.timescale import alerts as store
from storage.timescale import self_audit
from storage.timescale.alerts import AlertRow, Silence

STATES = ("pending", "firing", "resolved")
MAX_SILENCE = timedelta(days=90)
Audit = Callable[[str, dict], EventRecord]  # (resource_id, metadata) -> the record to store


@dataclass(frozen=True)
class AlertView:
    fingerprint: str
    rule_id: str
    title: str
    severity: str
    state: str  # pending | firing | resolved
    labels: dict[str, str]
    group_values: dict[str, str]
    started_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    count: int
    acknowledged_by: str | None
    acknowledged_until: datetime | None
    silenced: bool
    runbook_url: str | None

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("started_at", "updated_at", "resolved_at", "acknowledged_until"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _view(row: AlertRow, silences: list[Silence], now: datetime) -> AlertView:
    silenced = any(s.active(now) and all(row.labels.get(k) == v for k, v in s.matchers.items()) for s in silences)
    ack_live = row.acknowledged_by is not None and (row.acknowledged_until is None or now < row.acknowledged_until)
    return AlertView(fingerprint=row.fingerprint, rule_id=row.rule_id, title=row.title, severity=row.severity,
                     state=row.state, labels=dict(row.labels), group_values=dict(row.group_values),
                     started_at=row.started_at, updated_at=row.updated_at, resolved_at=row.resolved_at,
                     count=row.count, acknowledged_by=row.acknowledged_by if ack_live else None,
                     acknowledged_until=row.acknowledged_until if ack_live else None, silenced=silenced,
                     runbook_url=row.runbook_url)


def list_alerts(pool: ConnectionPool, *, states: Collection[str] | None = None, since: datetime | None = None,
                limit: int = 100, now: datetime | None = None) -> list[AlertView]:
    """Alerts, firing first, then pending, then resolved; newest change first within each."""
    if states:
        unknown = set(states) - set(STATES)
        if unknown:
            raise ValueError(f"unknown alert state(s) {sorted(unknown)}; use {', '.join(STATES)}")
    now = now or datetime.now(UTC)
    rows = store.list_alerts(pool, states=states, since=since, limit=limit)
    silences = store.silences(pool, active_at=now)
    return [_view(r, silences, now) for r in rows]


def get_alert(pool: ConnectionPool, fingerprint: str, *, now: datetime | None = None) -> AlertView:
    now = now or datetime.now(UTC)
    rows = store.list_alerts(pool, fingerprint=fingerprint, limit=1)
    if not rows:
        raise UnknownAlert(fingerprint)
    return _view(rows[0], store.silences(pool, active_at=now), now)


def acknowledge(pool: ConnectionPool, fingerprint: str, *, by: str, comment: str = "",
                until: datetime | None = None, audit: Audit | None = None, now: datetime | None = None) -> AlertView:
    """Acknowledge until the alert resolves (``until`` None) or until a time: no repeats meanwhile,
    and PagerDuty is told (acknowledge event) at the next evaluation."""
    now = now or datetime.now(UTC)
    if until is not None and until <= now:
        raise ValueError("`until` must be in the future; omit it to acknowledge until the alert resolves")
    with pool.connection() as conn, conn.transaction():
        row = store.acknowledge(conn, fingerprint, by=by, comment=comment, until=until, now=now)
        if row is None:
            raise UnknownAlert(fingerprint)
        if audit is not None:
            self_audit.store(conn, audit(fingerprint, {"change": "alert_acknowledged", "rule_id": row.rule_id,
                                                       "comment": comment,
                                                       "until": until.isoformat() if until else None}))
    return _view(row, store.silences(pool, active_at=now), now)


def resolve(pool: ConnectionPool, fingerprint: str, *, by: str, comment: str, audit: Audit | None = None,
            now: datetime | None = None) -> AlertView:
    """Resolve a pending or firing alert by hand (a false positive, a fixed cause): a lifecycle transition
    like the evaluator's, recorded in the alert's history; receivers told it fired are told it resolved at
    the next evaluation. If the rule's condition still holds, the next evaluation opens a new alert."""
    now = now or datetime.now(UTC)
    if not comment or not comment.strip():
        raise ValueError("say why the alert is resolved (`comment`)")
    with pool.connection() as conn, conn.transaction():
        row = store.alerts_by_fingerprint(conn, [fingerprint], lock=True).get(fingerprint)
        if row is None:
            raise UnknownAlert(fingerprint)
        if row.state == "resolved":
            raise ValueError(f"alert {fingerprint} is already resolved")
        done = replace(row, state="resolved", resolved_at=now, updated_at=now, inactive_since=row.inactive_since
                       or now, flapping=False, acknowledged_by=None, acknowledged_at=None,
                       acknowledged_until=None, ack_comment=None)
        store.save_alert(conn, done)
        store.add_history(conn, done, at=now, from_state=row.state, to_state="resolved",
                          detail={"reason": "resolved by hand", "by": by, "comment": comment})
        if audit is not None:
            self_audit.store(conn, audit(fingerprint, {"change": "alert_resolved", "rule_id": row.rule_id,
                                                       "from_state": row.state, "comment": comment}))
    return _view(done, store.silences(pool, active_at=now), now)


def create_silence(pool: ConnectionPool, *, matchers: dict[str, str], starts_at: datetime, ends_at: datetime,
                   created_by: str, comment: str, audit: Audit | None = None) -> int:
    """Mute alerts whose labels equal all ``matchers`` over [starts_at, ends_at); who and why are required."""
    if not isinstance(matchers, dict) or not matchers:
        raise InvalidSilence("a silence needs at least one matcher, e.g. {\"rule_id\": \"failed_login_burst\"}")
    if len(matchers) > LABEL_MATCHER_MAX:
        raise InvalidSilence(f"a silence takes at most {LABEL_MATCHER_MAX} matchers")
    for key, value in matchers.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or len(key) > 64 or len(value) > 512:
            raise InvalidSilence("matchers map label names to values, both non-empty strings (64 / 512 chars)")
        if any(ord(c) < 32 or ord(c) == 127 for c in key + value):  # PostgreSQL text cannot even hold a NUL
            raise InvalidSilence("matcher names and values must not contain control characters")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidSilence("give silence times with a zone, e.g. 2024-05-01T12:00:00Z")
    if ends_at <= starts_at:
        raise InvalidSilence("the silence must end after it starts")
    if ends_at - starts_at > MAX_SILENCE:
        raise InvalidSilence(f"a silence may last at most {MAX_SILENCE.days} days; create a new one later")
    if not created_by or not comment or not comment.strip():
        raise InvalidSilence("say who creates the silence and why (`comment`)")
    with pool.connection() as conn, conn.transaction():
        silence_id = store.create_silence(conn, matchers=matchers, starts_at=starts_at, ends_at=ends_at,
                                          created_by=created_by, comment=comment)
        if audit is not None:
            self_audit.store(conn, audit(str(silence_id), {
                "change": "silence_created", "matchers": matchers, "starts_at": starts_at.isoformat(),
                "ends_at": ends_at.isoformat(), "comment": comment}))
    return silence_id


def list_silences(pool: ConnectionPool, *, active_at: datetime | None = None, limit: int = 100) -> list[Silence]:
    return store.silences(pool, active_at=active_at, limit=limit)


def expire_silence(pool: ConnectionPool, silence_id: int, *, by: str, audit: Audit | None = None,
                   now: datetime | None = None) -> Silence:
    now = now or datetime.now(UTC)
    with pool.connection() as conn, conn.transaction():
        silence = store.expire_silence(conn, silence_id, by=by, now=now)
        if silence is None:
            raise InvalidSilence(f"no live silence has id {silence_id}; list them with "
                                 "`auditwatch alerts silence list`")
        if audit is not None:
            self_audit.store(conn, audit(str(silence_id), {"change": "silence_expired",
                                                           "matchers": silence.matchers}))
    return silence


def silence_json(s: Silence, now: datetime) -> dict:
    return {"silence_id": s.silence_id, "matchers": s.matchers, "starts_at": s.starts_at.isoformat(),
            "ends_at": s.ends_at.isoformat(), "created_by": s.created_by, "comment": s.comment,
            "created_at": s.created_at.isoformat(), "expired_by": s.expired_by,
            "expired_at": s.expired_at.isoformat() if s.expired_at else None, "active": s.active(now)}
