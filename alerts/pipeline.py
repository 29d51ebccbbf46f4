"""Delivery planning: route → group → inhibit/silence/ack → dedup → outbox.

Runs after each evaluation, in one transaction with the notification log (``alert_groups``), so a
notification is enqueued exactly once per decision; the dispatcher then delivers it at least once
(retry is its own stage, in dispatch.py). Resolved notices are always sent for alerts a receiver was
told were firing, whatever silences or inhibitions say by then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg

from alerts.routing import Route, Routing, acknowledged, inhibited, resolve, silenced_by
from storage.timescale import alerts as store
from storage.timescale import outbox
from storage.timescale.alerts import AlertRow, GroupState

LOCAL = "local"


@dataclass
class _Group:
    route: Route
    labels: dict[str, str]
    alerts: list[AlertRow] = field(default_factory=list)


def alert_json(alert: AlertRow, *, public_url: str, status: str | None = None) -> dict[str, Any]:
    """What a notifier gets to know about one alert."""
    return {
        "fingerprint": alert.fingerprint, "rule_id": alert.rule_id, "title": alert.title,
        "severity": alert.severity, "status": status or alert.state, "labels": alert.labels,
        "group_values": alert.group_values, "count": alert.count, "value": alert.value,
        "started_at": alert.started_at.isoformat(),
        "firing_at": alert.firing_at.isoformat() if alert.firing_at else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "runbook_url": alert.runbook_url, "flapping": alert.flapping,
        "acknowledged_by": alert.acknowledged_by, "ack_comment": alert.ack_comment,
        "dashboard_url": dashboard_url(public_url, alert.fingerprint),
        "detail": alert.detail,
    }


def dashboard_url(public_url: str, fingerprint: str) -> str:
    return f"{public_url.rstrip('/')}/dashboard/alerts?fingerprint={quote(fingerprint)}"


def plan(conn: psycopg.Connection, routing: Routing, *, receivers: Iterable[str], now: datetime,
         public_url: str, keepalive: Mapping[str, timedelta] | None = None) -> list[int]:
    """Enqueue what each receiver must be told now; returns the new notification ids.

    ``keepalive``: receivers that forget what they are not told again, and how often they must be (an
    Alertmanager): they hear of every firing alert of a group, acknowledged ones included, at least that often.
    """
    available = set(receivers) | {LOCAL}
    firing = [a for a in store.open_alerts(conn) if a.state == "firing"]
    states = store.group_states(conn)
    silences = store.silences(conn, active_at=now)
    muted = {a.fingerprint for a in firing
             if silenced_by(a, silences, now) or inhibited(a, firing, routing.inhibitions)}

    groups: dict[tuple[str, str], _Group] = {}
    for alert in firing:
        taken = [(route, r) for route in resolve(routing.route, alert.labels) for r in route.receivers
                 if r in available]
        if not taken:
            taken = [(routing.route, LOCAL)]
        for route, receiver in taken:
            key, labels = route.group_key(receiver, alert.labels)
            group = groups.setdefault((receiver, key), _Group(route, labels))
            group.alerts.append(alert)

    told = {fp for s in states.values() for fp in s.firing}
    known = {a.fingerprint: a for a in firing}
    known.update(store.alerts_by_fingerprint(conn, told - set(known)))
    enqueued: list[int] = []
    for receiver, key in sorted(set(groups) | set(states)):
        group = groups.get((receiver, key))
        state = states.get((receiver, key)) or GroupState(receiver, key, first_seen=now)
        if receiver not in available and group is None and not state.firing:
            store.drop_group_state(conn, receiver, key)
            continue
        enqueued += _decide(conn, receiver, key, group, state, known, muted, now=now, public_url=public_url,
                            keepalive=(keepalive or {}).get(receiver))
    return enqueued


def _decide(conn, receiver: str, key: str, group: _Group | None, state: GroupState,
            known: dict[str, AlertRow], muted: set[str], *, now: datetime, public_url: str,
            keepalive: timedelta | None = None) -> list[int]:
    in_group = {a.fingerprint: a for a in group.alerts} if group else {}
    told = set(state.firing)
    resolved = sorted(fp for fp in told if fp not in in_group and (fp not in known or known[fp].state == "resolved"))
    # Still firing but no longer routed here (labels changed, receiver removed): forget quietly.
    told -= {fp for fp in told if fp not in in_group and fp not in resolved}
    active = {fp: a for fp, a in in_group.items() if fp not in muted}
    unacked = {fp for fp, a in active.items() if not acknowledged(a, now)}
    new = set(active) - told
    newly_acked = sorted(fp for fp, a in active.items() if acknowledged(a, now) and fp in told
                         and fp not in state.acked)

    route = group.route if group else None
    enqueued: list[int] = []
    send = False
    if new and route is not None:
        wait = route.group_wait if state.last_sent_at is None else route.group_interval
        since = state.first_seen if state.last_sent_at is None else state.last_sent_at
        send = now - since >= wait
    elif resolved:
        interval = route.group_interval if route else None
        send = interval is None or state.last_sent_at is None or now - state.last_sent_at >= interval
    elif unacked and route is not None and state.last_sent_at is not None:
        send = now - state.last_sent_at >= route.repeat_interval
    # A receiver that forgets (keepalive) is told again of what still fires, acknowledged or not, in time.
    if not send and keepalive is not None and active and state.last_sent_at is not None:
        send = now - state.last_sent_at >= keepalive

    # An acknowledgement that expired (or an alert that left) may be acknowledged, and told, again.
    state.acked = [fp for fp in state.acked if fp in active and acknowledged(active[fp], now)]
    if send:
        alerts = [alert_json(active[fp], public_url=public_url, status="firing") for fp in sorted(unacked | new)]
        if keepalive is not None:  # acknowledged is still firing: every push keeps it alive there too
            alerts += [alert_json(active[fp], public_url=public_url, status="acknowledged")
                       for fp in sorted(set(active) - unacked - new)]
        alerts += [alert_json(known[fp], public_url=public_url, status="resolved") if fp in known else
                   {"fingerprint": fp, "status": "resolved", "title": fp, "severity": "info", "labels": {}}
                   for fp in resolved]
        kind = "resolved" if all(a["status"] == "resolved" for a in alerts) else "firing"
        enqueued.append(outbox.enqueue(conn, receiver=receiver, group_key=key, kind=kind, now=now, payload={
            "receiver": receiver, "group_key": key, "group_labels": group.labels if group else {},
            "status": kind, "alerts": alerts}))
        state.firing = sorted((told - set(resolved)) | set(active))
        state.acked = sorted(set(state.acked) & set(state.firing))
        state.last_sent_at = now
    if newly_acked:
        enqueued.append(outbox.enqueue(conn, receiver=receiver, group_key=key, kind="acknowledged", now=now, payload={
            "receiver": receiver, "group_key": key, "group_labels": group.labels if group else {},
            "status": "acknowledged",
            "alerts": [alert_json(active[fp], public_url=public_url, status="acknowledged") for fp in newly_acked]}))
        state.acked = sorted(set(state.acked) | set(newly_acked))
    if not state.firing and not active and not in_group:
        store.drop_group_state(conn, receiver, key)
    else:
        store.save_group_state(conn, state)
    return enqueued

