"""The alert lifecycle (Prometheus-style): pending for the rule's `for` → firing → resolved.

A pure step function: given what a rule observes now and the stored alerts, it returns the alerts to
save and their state changes. The cooldown holds a firing alert for a while after its condition
clears, so a burst that pauses and resumes is one alert and one page; a flapping alert (resolved
often within the flap window) is held for the whole window instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from alerts.rules import Rule
from storage.timescale.alerts import AlertRow


@dataclass(frozen=True)
class Observation:
    """One group for which a rule's condition holds now, with its count and evidence."""

    group: Mapping[str, str]
    value: int
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    alert: AlertRow
    from_state: str | None
    to_state: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Flapping:
    window: timedelta = timedelta(hours=1)
    threshold: int = 3  # resolutions within the window that make an alert flapping


def fingerprint(rule_id: str, group: Mapping[str, str]) -> str:
    """Stable across restarts and processes: rule id + group-by values."""
    raw = json.dumps([rule_id, sorted((str(k), str(v)) for k, v in group.items())], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


# An anomaly alert's entity also under the label a threshold rule groups by, so that one inhibition (routing.yml)
# can see that a spraying alert on 203.0.113.9 and a critical anomaly on the same address are one thing.
ENTITY_LABELS = {"user": "user_id", "source_ip": "source_ip"}


def labels_of(rule: Rule, group: Mapping[str, str]) -> dict[str, str]:
    labels = {k: str(v) for k, v in group.items()}
    column = ENTITY_LABELS.get(labels.get("entity_type", ""))
    if column and "entity_value" in labels:
        labels.setdefault(column, labels["entity_value"])
    return {**rule.labels, **labels, "rule_id": rule.id, "severity": rule.severity}


def step(rule: Rule, observations: list[Observation], stored: Mapping[str, AlertRow], *, now: datetime,
         resolutions: Callable[[str, datetime], int], flapping: Flapping = Flapping()) -> list[Change]:
    """What changes for one rule at ``now``; unchanged-state updates come back with to_state == from_state."""
    changes: list[Change] = []
    seen: set[str] = set()
    for obs in observations:
        fp = fingerprint(rule.id, obs.group)
        seen.add(fp)
        old = stored.get(fp)
        group = {k: str(v) for k, v in obs.group.items()}
        common = {"title": rule.render_title(group), "severity": rule.severity, "labels": labels_of(rule, group),
                  "runbook_url": rule.runbook_url, "value": obs.value, "detail": dict(obs.detail), "updated_at": now,
                  "inactive_since": None}
        if old is None or old.state == "resolved":
            state = "firing" if rule.for_ <= timedelta(0) else "pending"
            flaps = resolutions(fp, now - flapping.window) >= flapping.threshold if old is not None else False
            alert = AlertRow(fingerprint=fp, rule_id=rule.id, state=state, group_values=group, started_at=now,
                             firing_at=now if state == "firing" else None, count=obs.value, flapping=flaps,
                             **common)
            changes.append(Change(alert, old.state if old else None, state))
        elif old.state == "pending":
            fire = now - old.started_at >= rule.for_
            alert = replace(old, **common, count=max(old.count, obs.value), state="firing" if fire else "pending",
                            firing_at=now if fire else None)
            changes.append(Change(alert, "pending", alert.state))
        else:
            alert = replace(old, **common, count=max(old.count, obs.value))
            changes.append(Change(alert, "firing", "firing"))
    for fp, old in stored.items():
        if fp in seen or old.state == "resolved" or old.rule_id != rule.id:
            continue
        if old.state == "pending":
            alert = replace(old, state="resolved", resolved_at=now, updated_at=now, inactive_since=now)
            changes.append(Change(alert, "pending", "resolved", {"reason": "cleared before `for` elapsed"}))
            continue
        since = old.inactive_since or now
        hold = max(rule.cooldown, flapping.window) if old.flapping else rule.cooldown
        if now - since >= hold:
            alert = replace(old, state="resolved", resolved_at=now, updated_at=now, inactive_since=since,
                            flapping=False, acknowledged_by=None, acknowledged_at=None, acknowledged_until=None,
                            ack_comment=None)
            changes.append(Change(alert, "firing", "resolved", {"quiet_since": since.isoformat()}))
        elif old.inactive_since is None:
            changes.append(Change(replace(old, inactive_since=now, updated_at=now), "firing", "firing"))
    return changes


def resolve_orphans(open_alerts: list[AlertRow], known_rules: set[str], *, now: datetime) -> list[Change]:
    """Alerts of rules that no longer exist (deleted or disabled) resolve instead of firing forever."""
    return [Change(replace(a, state="resolved", resolved_at=now, updated_at=now), a.state, "resolved",
                   {"reason": "the rule was removed or disabled"})
            for a in open_alerts if a.rule_id not in known_rules]
