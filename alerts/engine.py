"""Rule evaluation: what each rule observes now, the lifecycle step, then delivery planning.

``evaluate`` is the scheduled job's body: idempotent at a given ``now`` (a second run finds nothing
new to change or send), and serialised across workers by an advisory lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool

from alerts import lifecycle, pipeline
from alerts.lifecycle import Flapping, Observation
from alerts.routing import Routing
from alerts.rule_files import RuleSource, default_directories
from alerts.rules import Absence, Anomaly, Health, Rule, Threshold
from storage.timescale import alerts as store
from storage.timescale import anomalies, platform_health, rule_inputs
from storage.timescale.db import advisory_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertConfig:
    """Everything evaluation needs, built from settings at the edge."""

    routing: Routing
    receivers: frozenset[str] = frozenset()  # configured receivers (credentials present); local always is
    rules_dir: Path | None = None  # the user's rules, on top of the packaged pack
    public_url: str = "http://127.0.0.1:8000"
    flapping: Flapping = Flapping()
    keepalive: Mapping[str, timedelta] = field(default_factory=dict)  # alerts.notifiers.keepalive_of

    rules: RuleSource | None = None  # default: the packaged pack + rules_dir, re-read on change

    def __post_init__(self) -> None:
        if self.rules is None:
            object.__setattr__(self, "rules", RuleSource(*default_directories(self.rules_dir)))

    def load_rules(self) -> dict[str, Rule]:
        """The rules now; files that fail validation are reported (and skipped, or kept at their last
        valid version) instead of stopping every other rule."""
        return self.rules.current()


@dataclass
class EvaluationResult:
    ran: bool = True
    rules: int = 0
    changes: list[lifecycle.Change] = field(default_factory=list)
    enqueued: list[int] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def observe(pool: ConnectionPool, rule: Rule, *, now: datetime) -> list[Observation]:
    """The groups for which the rule's condition holds at ``now``."""
    cond = rule.condition
    if isinstance(cond, Threshold):
        hits = rule_inputs.threshold_hits(pool, start=now - cond.window, end=now, event_types=cond.event_types,
                                    outcome=cond.outcome, group_by=cond.group_by, distinct=cond.distinct,
                                    at_least=cond.at_least)
        return [Observation(h.group, h.distinct if cond.distinct else h.events, {
            "events": h.events, "distinct": h.distinct if cond.distinct else None,
            "first_at": h.first_at.isoformat(), "last_at": h.last_at.isoformat(),
            "window": int(cond.window.total_seconds()), "sample_event_ids": h.sample_event_ids}) for h in hits]
    if isinstance(cond, Anomaly):
        hits = anomalies.anomaly_hits(pool, start=now - cond.lookback, end=now, detectors=cond.detectors,
                                  min_score=cond.min_score, severities=cond.severities)
        merged: dict[tuple[str, str], Observation] = {}
        for h in hits:  # one alert per entity, whichever detectors saw it
            key = (h.entity_type, h.entity_value)
            previous = merged.get(key)
            detectors = sorted({h.detector, *(previous.detail["detectors"] if previous else [])})
            best = h if previous is None or h.score > previous.detail["score"] else None
            merged[key] = Observation({"entity_type": h.entity_type, "entity_value": h.entity_value},
                                      (previous.value if previous else 0) + h.anomalies, {
                "detectors": detectors,
                "score": best.score if best else previous.detail["score"],
                "anomaly_severity": best.severity if best else previous.detail["anomaly_severity"],
                "summary": best.summary if best else previous.detail["summary"],
                "window_end": (best or h).window_end.isoformat()})
        return list(merged.values())
    if isinstance(cond, Absence):
        seen = rule_inputs.last_seen(pool, field_name=cond.field, values=cond.values, since=now - cond.lookback,
                               until=now)
        return [Observation({cond.field: value}, int((now - last).total_seconds() // 60),
                            {"last_seen": last.isoformat(), "silent_minutes": int((now - last).total_seconds() // 60)})
                for value, last in sorted(seen.items()) if last is not None and now - last >= cond.silent_for]
    if isinstance(cond, Health):
        return _health(pool, cond, now=now)
    raise TypeError(f"unknown condition {type(cond).__name__}")


def _health(pool: ConnectionPool, cond: Health, *, now: datetime) -> list[Observation]:
    """The platform's own signals (``storage.timescale.platform_health``); one observation when unhealthy."""
    if cond.check == "ingest_stalled":
        last = platform_health.last_ingested(pool, since=now - cond.lookback, until=now)
        if last is None or now - last < cond.quiet_for:
            return []  # receiving, or quiet for the whole lookback (a system nobody uses is not stalled)
        quiet = int((now - last).total_seconds() // 60)
        return [Observation({}, quiet, {"last_ingested": last.isoformat(), "quiet_minutes": quiet})]
    if cond.check == "leader_missing":
        return [] if platform_health.leader_present(pool) else [Observation({}, 1, {"leader": None})]
    if cond.check == "outbox_backlog":
        return [Observation({"receiver": receiver}, int((now - oldest).total_seconds() // 60),
                            {"oldest_created_at": oldest.isoformat(),
                             "age_minutes": int((now - oldest).total_seconds() // 60)})
                for receiver, oldest in platform_health.outbox_oldest(pool).items()
                if now - oldest >= cond.older_than]
    if cond.check == "checkpoint_stale":
        unsigned = platform_health.oldest_unsigned(pool)
        if unsigned is None or now - unsigned < cond.older_than:
            return []
        age = int((now - unsigned).total_seconds() // 60)
        return [Observation({}, age, {"oldest_unsigned_sealed_at": unsigned.isoformat(), "age_minutes": age})]
    raise TypeError(f"unknown health check {cond.check}")


def evaluate(pool: ConnectionPool, config: AlertConfig, *, now: datetime,
             rules: Mapping[str, Rule] | None = None) -> EvaluationResult:
    """Evaluate due rules at ``now``, move alerts through their lifecycle, and enqueue notifications."""
    rules = dict(rules) if rules is not None else config.load_rules()
    result = EvaluationResult()
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            # Wait out a delivery tick's short flush (or another worker's evaluation) rather than skip a run.
            with advisory_lock(conn, store.EVALUATOR_LOCK, wait=5) as taken:
                if not taken:
                    return EvaluationResult(ran=False)
                last = store.last_runs(conn)
                enabled = {rid: r for rid, r in rules.items() if r.enabled}
                for rule in enabled.values():
                    if rule.interval > timedelta(0) and rule.id in last and now - last[rule.id] < rule.interval:
                        continue
                    result.rules += 1
                    try:
                        observations = observe(pool, rule, now=now)
                    except psycopg.Error as exc:
                        log.error("alert rule %s could not be evaluated: %s", rule.id, exc)
                        result.errors[rule.id] = str(exc)
                        with conn.transaction():
                            store.mark_run(conn, rule.id, now, str(exc))
                        continue
                    with conn.transaction():
                        result.changes += _apply(conn, rule, observations, now=now, flapping=config.flapping)
                        store.mark_run(conn, rule.id, now)
                with conn.transaction():
                    orphans = lifecycle.resolve_orphans(store.open_alerts(conn), set(enabled), now=now)
                    _save(conn, orphans, now)
                    result.changes += orphans
                    result.enqueued = pipeline.plan(conn, config.routing, receivers=config.receivers, now=now,
                                                    public_url=config.public_url, keepalive=config.keepalive)
        finally:
            conn.autocommit = False
    return result


def flush(pool: ConnectionPool, config: AlertConfig, *, now: datetime) -> list[int]:
    """Only the delivery planning: group timers (group_wait, group_interval) are checked this often,
    not just at evaluations, so a group's first message waits group_wait, not a whole evaluation more."""
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            with advisory_lock(conn, store.EVALUATOR_LOCK, wait=False) as taken:
                if not taken:
                    return []
                with conn.transaction():
                    return pipeline.plan(conn, config.routing, receivers=config.receivers, now=now,
                                         public_url=config.public_url, keepalive=config.keepalive)
        finally:
            conn.autocommit = False


def _apply(conn: psycopg.Connection, rule: Rule, observations: list[Observation], *, now: datetime,
           flapping: Flapping) -> list[lifecycle.Change]:
    fingerprints = {lifecycle.fingerprint(rule.id, o.group) for o in observations}
    fingerprints |= {a.fingerprint for a in store.open_alerts(conn, rule.id)}
    stored = store.alerts_by_fingerprint(conn, fingerprints, lock=True)
    changes = lifecycle.step(rule, observations, stored, now=now, flapping=flapping,
                             resolutions=lambda fp, since: store.resolutions_since(conn, fp, since))
    _save(conn, changes, now)
    return changes


def _save(conn: psycopg.Connection, changes: list[lifecycle.Change], now: datetime) -> None:
    for change in changes:
        store.save_alert(conn, change.alert)
        if change.from_state != change.to_state:
            store.add_history(conn, change.alert, at=now, from_state=change.from_state, to_state=change.to_state,
                              detail=dict(change.detail))
