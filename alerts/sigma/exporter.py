"""Our threshold rules → Sigma: a base rule selecting the events, and a correlation for the count.

A threshold of one event per user and minute is a plain Sigma rule; any other threshold is an
``event_count`` (or, with ``distinct``, a ``value_count``) correlation over that base rule. What
Sigma has no field for (labels other than MITRE, cooldown, for, interval) travels in an
``auditwatch`` custom attribute, so that importing the export gives back the same rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from alerts.rule_yaml import format_duration
from alerts.rules import Rule, Threshold
from alerts.sigma.errors import Refusal, SigmaUnmappable
from alerts.sigma.importer import CUSTOM_KEY, SINGLE_GROUP, SINGLE_WINDOW

NAMESPACE = uuid.UUID("9a8f3b52-7a57-4c1e-9f0e-6b1f1c1e5a15")  # stable Sigma ids for our rule ids
LEVELS = {"info": "low", "warning": "medium", "critical": "high"}


@dataclass
class ExportResult:
    documents: dict[str, str] = field(default_factory=dict)  # rule id → Sigma YAML (one or two documents)
    refused: list[Refusal] = field(default_factory=list)


def _sigma_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def _common(rule: Rule) -> dict[str, Any]:
    data: dict[str, Any] = {"title": rule.title, "id": _sigma_id(rule.id), "name": rule.id,
                            "status": "experimental", "author": "Auditwatch"}
    if rule.description:
        data["description"] = rule.description
    if rule.runbook_url:
        data["references"] = [rule.runbook_url]
    mitre = rule.labels.get("mitre")
    if mitre:
        data["tags"] = [f"attack.{mitre.lower()}"]
    extra: dict[str, Any] = {}
    if rule.labels:
        extra["labels"] = dict(rule.labels)
    for key, value, default in (("for", rule.for_, 0), ("cooldown", rule.cooldown, 120), ("interval", rule.interval, 0)):
        if int(value.total_seconds()) != default:
            extra[key] = format_duration(value)
    if extra:
        data[CUSTOM_KEY] = extra
    data["level"] = LEVELS[rule.severity]
    return data


def _selection(condition: Threshold) -> dict[str, Any]:
    selection: dict[str, Any] = {"event_type": list(condition.event_types) if condition.event_types else "*"}
    if condition.outcome:
        selection["outcome"] = condition.outcome
    return selection


def to_sigma(rule: Rule) -> str:
    """One of our rules as Sigma YAML; SigmaUnmappable when it is not a threshold rule."""
    condition = rule.condition
    if not isinstance(condition, Threshold):
        raise SigmaUnmappable(Refusal(rule.id, rule.kind, f"{rule.kind} rules have no Sigma equivalent "
                                                          "(Sigma matches events; this rule reads "
                                                          f"{'anomalies' if rule.kind == 'anomaly' else 'silence' if rule.kind == 'absence' else 'the platform state'})"))
    detection = {"selection": _selection(condition), "condition": "selection"}
    logsource = {"product": "auditwatch"}
    single = (condition.at_least == 1 and condition.distinct is None and condition.group_by == SINGLE_GROUP
              and condition.window == SINGLE_WINDOW)
    if single:
        return _dump([{**_common(rule), "logsource": logsource, "detection": detection}])
    base = {"title": f"{rule.title} (matching events)", "id": _sigma_id(f"{rule.id}:events"),
            "name": f"{rule.id}_events", "status": "experimental", "author": "Auditwatch",
            "logsource": logsource, "detection": detection, "level": "informational"}
    count: dict[str, Any] = {"gte": condition.at_least}
    if condition.distinct:
        count["field"] = condition.distinct
    correlation: dict[str, Any] = {"type": "value_count" if condition.distinct else "event_count",
                                   "rules": [base["name"]], "timespan": format_duration(condition.window),
                                   "condition": count}
    if condition.group_by:
        correlation["group-by"] = list(condition.group_by)
    correlation["generate"] = False
    return _dump([base, {**_common(rule), "correlation": correlation}])


def _dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True, width=110, explicit_start=True)


def export_rules(rules: Iterable[Rule]) -> ExportResult:
    """Every threshold rule as Sigma; the others refused with the reason."""
    result = ExportResult()
    for rule in rules:
        try:
            result.documents[rule.id] = to_sigma(rule)
        except SigmaUnmappable as exc:
            result.refused.append(exc.refusal)
    return result
