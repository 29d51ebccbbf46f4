"""Alert rules as data: YAML files loaded, validated (file, line, field) and turned into frozen rules.

A rule has an id, title, severity, labels, runbook and exactly one condition (threshold, anomaly,
absence, or health: the platform's own signals), plus examples that must and must not fire it; ``tests/alerts/test_rule_examples.py`` runs
every rule's examples. The default pack ships in ``alerts/rules/``; a user directory adds rules or
overrides packaged ones by id.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from alerts.errors import RuleError, RuleProblem
from alerts.rule_yaml import Checker, Lines, parse_duration
from storage.timescale.anomalies import SEVERITIES as ANOMALY_SEVERITIES
from storage.timescale.anomalies import at_or_above
from storage.timescale.rule_inputs import ABSENCE_FIELDS, THRESHOLD_FIELDS

PACKAGED_RULES = Path(__file__).with_name("rules")
SEVERITIES = ("info", "warning", "critical")
RULE_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
LABEL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
# Anything that looks like a credential has no place in a rule file (they come from settings).
_SECRET_KEY = re.compile(r"token|secret|password|routing_key|api_key|webhook_url", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"xox[abprs]-|hooks\.slack\.com/services/|https?://[^/\s]*:[^@/\s]+@")
MAX_RULE_BYTES = 256 * 1024
MAX_DEPTH = 32

TOP_FIELDS = {"id", "title", "description", "severity", "labels", "runbook_url", "for", "cooldown", "interval",
              "threshold", "anomaly", "absence", "health", "examples", "enabled"}
CONDITIONS = ("threshold", "anomaly", "absence", "health")
EVENT_FIELDS = {"at", "repeat", "spacing", "event_type", "user_id", "outcome", "source_ip", "source"}


@dataclass(frozen=True)
class Threshold:
    """At least ``at_least`` matching events (or distinct ``distinct`` values) in ``window`` per group."""

    window: timedelta
    at_least: int
    event_types: tuple[str, ...] = ()
    outcome: str | None = None
    group_by: tuple[str, ...] = ()
    distinct: str | None = None


@dataclass(frozen=True)
class Anomaly:
    """Anomalies from the given detectors (all when empty) at or above a score and severity."""

    min_score: float = 0.0
    min_severity: str = "low"
    detectors: tuple[str, ...] = ()
    lookback: timedelta = timedelta(minutes=15)
    group_by: tuple[str, ...] = ("entity_type", "entity_value")

    @property
    def severities(self) -> tuple[str, ...]:
        return at_or_above(self.min_severity)


@dataclass(frozen=True)
class Absence:
    """A sender (``field`` value) seen within ``lookback`` that has sent nothing for ``silent_for``."""

    field: str
    values: tuple[str, ...]
    silent_for: timedelta
    lookback: timedelta = timedelta(hours=24)
    group_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_by", (self.field,))


# The platform's own health (what /readyz, /metrics and the ops page show), each check with its parameters.
HEALTH_CHECKS: dict[str, dict[str, timedelta]] = {
    # nothing ingested for quiet_for, after events arrived within lookback (a quiet system stays quiet)
    "ingest_stalled": {"quiet_for": timedelta(minutes=15), "lookback": timedelta(hours=1)},
    # no worker session holds the analytics leader lock: scoring and refits have stopped
    "leader_missing": {},
    # a receiver's oldest undelivered notification is older_than (one alert per receiver)
    "outbox_backlog": {"older_than": timedelta(minutes=10)},
    # events sealed more than older_than ago that no signed checkpoint covers yet
    "checkpoint_stale": {"older_than": timedelta(minutes=15)},
}


@dataclass(frozen=True)
class Health:
    """A check of the platform itself (``HEALTH_CHECKS``), read from the same stored signals as /readyz."""

    check: str
    quiet_for: timedelta = timedelta(minutes=15)
    lookback: timedelta = timedelta(hours=1)
    older_than: timedelta = timedelta(minutes=10)

    @property
    def group_by(self) -> tuple[str, ...]:
        return ("receiver",) if self.check == "outbox_backlog" else ()


@dataclass(frozen=True)
class Example:
    name: str
    fires: bool
    events: tuple[Mapping[str, Any], ...] = ()
    anomalies: tuple[Mapping[str, Any], ...] = ()
    groups: tuple[Mapping[str, str], ...] = ()  # when given: exactly these groups fire
    state: Mapping[str, Any] = field(default_factory=dict)  # health rules: leader, outbox, checkpoint


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    condition: Threshold | Anomaly | Absence | Health
    labels: Mapping[str, str] = field(default_factory=dict)
    runbook_url: str | None = None
    description: str = ""
    for_: timedelta = timedelta(0)
    cooldown: timedelta = timedelta(minutes=2)
    interval: timedelta = timedelta(0)  # 0: every evaluator run
    examples: tuple[Example, ...] = ()
    enabled: bool = True
    path: str = ""
    text: str = ""

    @property
    def kind(self) -> str:
        return type(self.condition).__name__.lower()

    @property
    def group_by(self) -> tuple[str, ...]:
        return self.condition.group_by

    def render_title(self, group: Mapping[str, str]) -> str:
        """The title with group values filled in ({user_id} → alice)."""
        return self.title.format_map({k: group.get(k, "") for k in _placeholders(self.title)})


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def parse_rule(text: str, path: str = "<rule>") -> Rule:
    """One rule from YAML text; RuleError lists every problem with its line and field."""
    if len(text.encode()) > MAX_RULE_BYTES:
        raise RuleError([RuleProblem(path, None, None, f"the file is over {MAX_RULE_BYTES // 1024} KB; "
                                                        "split examples into fewer, smaller events")])
    try:
        # Aliases would let a small file expand into a huge tree (billion laughs): rules never need them.
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise RuleError([RuleProblem(path, event.start_mark.line + 1, None,
                                                 f"nested deeper than {MAX_DEPTH} levels; a rule is a few levels deep")])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                raise RuleError([RuleProblem(path, event.start_mark.line + 1, None,
                                             "YAML anchors and aliases (&name / *name) are not accepted in rule "
                                             "files; write the values out")])
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleError([RuleProblem(path, mark.line + 1 if mark else None, None,
                                     f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) from None
    except RecursionError:
        raise RuleError([RuleProblem(path, None, None, "nested too deeply; a rule is a few levels deep")]) from None
    check = Checker(path, Lines(root))
    for where, line in check.lines.duplicates:
        check.problems.append(RuleProblem(path, line, ".".join(map(str, where)), "appears twice; keep one"))
    if not isinstance(data, dict):
        raise RuleError([RuleProblem(path, 1, None, "a rule file holds one mapping with `id`, `title`, `severity` "
                                                    "and one of threshold / anomaly / absence")])
    _no_secrets(check, data, ())
    check.known(data, TOP_FIELDS, ())
    rule_id = check.get(data, "id", (), str, required=True, default="")
    if rule_id and not RULE_ID.fullmatch(rule_id):
        check.fail(("id",), "must be lower-case letters, digits and _ (at most 64), starting with a letter")
    title = check.get(data, "title", (), str, required=True, default="")
    severity = check.get(data, "severity", (), str, required=True, default="warning")
    if severity not in SEVERITIES:
        check.fail(("severity",), f"must be one of {', '.join(SEVERITIES)}")
    labels = check.get(data, "labels", (), dict, default={})
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_NAME.fullmatch(key):
            check.fail(("labels", key), "label names are lower-case letters, digits and _")
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            check.fail(("labels", key), "label values are strings")
        elif key in {"rule_id", "severity", "alertname"}:
            check.fail(("labels", key), "is set by the rule itself; remove it")
    runbook = check.get(data, "runbook_url", (), str)
    if runbook and not runbook.startswith(("https://", "http://")):
        check.fail(("runbook_url",), "must be an http(s) URL")
    conditions = [c for c in CONDITIONS if c in data]
    if len(conditions) != 1:
        check.fail((conditions[1],) if len(conditions) > 1 else (),
                   "a rule has exactly one of threshold, anomaly, absence or health")
    condition: Threshold | Anomaly | Absence | Health | None = None
    if conditions:
        body = check.get(data, conditions[0], (), dict, default=None)
        if body is not None:
            condition = {"threshold": _threshold, "anomaly": _anomaly, "absence": _absence,
                         "health": _health}[conditions[0]](
                check, body, (conditions[0],))
    if condition is not None and title:
        for name in _placeholders(title):
            if name not in condition.group_by:
                check.fail(("title",), f"{{{name}}} is not a group-by field of this rule "
                                       f"({', '.join(condition.group_by) or 'none'})")
    examples = _examples(check, data, condition)
    if check.problems or condition is None:
        raise RuleError(check.problems or [RuleProblem(path, None, None, "no usable condition")])
    return Rule(
        id=rule_id, title=title, severity=severity, condition=condition,
        labels={str(k): str(v) for k, v in labels.items()}, runbook_url=runbook,
        description=check.get(data, "description", (), str, default=""),
        for_=check.duration(data, "for", (), timedelta(0)), cooldown=check.duration(data, "cooldown", (),
                                                                                       timedelta(minutes=2)),
        interval=check.duration(data, "interval", (), timedelta(0)), examples=examples,
        enabled=check.get(data, "enabled", (), bool, default=True), path=path, text=text)


def _no_secrets(check: Checker, node: Any, where: tuple) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and _SECRET_KEY.search(key) and where[:1] != ("examples",):
                check.fail(where + (key,), "credentials never go in rule files; set them in settings or "
                                           "AUDITWATCH_* environment variables")
            _no_secrets(check, value, where + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _no_secrets(check, value, where + (i,))
    elif isinstance(node, str) and _SECRET_VALUE.search(node):
        check.fail(where, "this looks like a credential; set it in settings or the environment instead")


def _threshold(check: Checker, body: dict, where: tuple) -> Threshold | None:
    check.known(body, {"event_type", "outcome", "window", "group_by", "distinct", "at_least"}, where)
    window = check.duration(body, "window", where, required=True)
    at_least = check.get(body, "at_least", where, int, required=True)
    if isinstance(at_least, int) and at_least < 1:
        check.fail(where + ("at_least",), "must be at least 1")
    if window is not None and not timedelta(seconds=10) <= window <= timedelta(days=1):
        check.fail(where + ("window",), "must be between 10s and 1d")
    outcome = check.get(body, "outcome", where, str)
    if outcome is not None and outcome not in {"success", "failure", "unknown"}:
        check.fail(where + ("outcome",), "must be success, failure or unknown")
    distinct = check.get(body, "distinct", where, str)
    if distinct is not None and distinct not in THRESHOLD_FIELDS:
        check.fail(where + ("distinct",), f"must be one of {', '.join(THRESHOLD_FIELDS)}")
    group_by = check.names(body, "group_by", where, THRESHOLD_FIELDS)
    if distinct and distinct in group_by:
        check.fail(where + ("distinct",), "cannot also be a group_by field")
    if window is None or not isinstance(at_least, int):
        return None
    return Threshold(window=window, at_least=at_least, event_types=check.names(body, "event_type", where),
                     outcome=outcome, group_by=group_by, distinct=distinct)


def _anomaly(check: Checker, body: dict, where: tuple) -> Anomaly | None:
    check.known(body, {"detectors", "min_score", "min_severity", "lookback"}, where)
    score = check.get(body, "min_score", where, (int, float), default=0.0)
    if not 0 <= score <= 1:
        check.fail(where + ("min_score",), "must be between 0 and 1 (scores are calibrated)")
    severity = check.get(body, "min_severity", where, str, default="low")
    if severity not in ANOMALY_SEVERITIES:
        check.fail(where + ("min_severity",), f"must be one of {', '.join(ANOMALY_SEVERITIES)}")
        severity = "low"
    return Anomaly(min_score=float(score), min_severity=severity, detectors=check.names(body, "detectors", where),
                   lookback=check.duration(body, "lookback", where, timedelta(minutes=15)))


def _absence(check: Checker, body: dict, where: tuple) -> Absence | None:
    check.known(body, {"field", "values", "silent_for", "lookback"}, where)
    name = check.get(body, "field", where, str, required=True)
    if name is not None and name not in ABSENCE_FIELDS:
        check.fail(where + ("field",), f"must be one of {', '.join(ABSENCE_FIELDS)}")
    values = check.names(body, "values", where)
    if not values:
        check.fail(where + ("values",), "list the senders that must keep sending (at least one)")
    silent_for = check.duration(body, "silent_for", where, required=True)
    lookback = check.duration(body, "lookback", where, timedelta(hours=24))
    if silent_for and lookback and lookback <= silent_for:
        check.fail(where + ("lookback",), "must be longer than silent_for")
    if name is None or silent_for is None:
        return None
    return Absence(field=name, values=values, silent_for=silent_for, lookback=lookback or timedelta(hours=24))


def _health(check: Checker, body: dict, where: tuple) -> Health | None:
    name = check.get(body, "check", where, str, required=True)
    if name is None:
        return None
    if name not in HEALTH_CHECKS:
        check.fail(where + ("check",), f"must be one of {', '.join(HEALTH_CHECKS)}")
        return None
    params = HEALTH_CHECKS[name]
    check.known(body, {"check", *params}, where)
    values = {key: check.duration(body, key, where, default) for key, default in params.items()}
    if "quiet_for" in values and values["quiet_for"] and values["lookback"] and values["lookback"] <= values["quiet_for"]:
        check.fail(where + ("lookback",), "must be longer than quiet_for")
    return Health(check=name, **{k: v for k, v in values.items() if v is not None})


def _examples(check: Checker, data: dict, condition: Any) -> tuple[Example, ...]:
    raw = check.get(data, "examples", (), list, default=[])
    if not raw:
        check.fail(("examples",), "every rule needs examples: at least one that fires and one that does not")
        return ()
    out = []
    for i, item in enumerate(raw):
        where = ("examples", i)
        if not isinstance(item, dict):
            check.fail(where, "an example is a mapping with name, fires and events (or anomalies)")
            continue
        check.known(item, {"name", "fires", "events", "anomalies", "groups", "state"}, where)
        name = check.get(item, "name", where, str, required=True, default=f"example {i}")
        fires = check.get(item, "fires", where, bool, required=True, default=False)
        events = check.get(item, "events", where, list, default=[])
        for j, event in enumerate(events):
            if not isinstance(event, dict):
                check.fail(where + ("events", j), "an event is a mapping")
                continue
            check.known(event, EVENT_FIELDS, where + ("events", j))
            for key in ("at", "spacing"):
                if key in event:
                    try:
                        _offset(event[key])
                    except ValueError as exc:
                        check.fail(where + ("events", j, key), str(exc))
        anomalies = check.get(item, "anomalies", where, list, default=[])
        for j, anomaly in enumerate(anomalies):
            spot = where + ("anomalies", j)
            if not isinstance(anomaly, dict):
                check.fail(spot, "an anomaly is a mapping")
                continue
            check.known(anomaly, {"detector", "entity_type", "entity_value", "at", "score", "severity", "summary"},
                        spot)
            for key in ("detector", "entity_type", "entity_value", "score", "severity"):
                if key not in anomaly:
                    check.fail(spot + (key,), "is required")
            if anomaly.get("severity") not in (None, *ANOMALY_SEVERITIES):
                check.fail(spot + ("severity",), f"must be one of {', '.join(ANOMALY_SEVERITIES)}")
        groups = check.get(item, "groups", where, list, default=[])
        state = check.get(item, "state", where, dict, default={})
        check.known(state, {"leader", "outbox", "checkpoint"}, where + ("state",))
        out.append(Example(name=name, fires=fires, events=tuple(events), anomalies=tuple(anomalies),
                           groups=tuple(groups), state=state))
    if out and not any(e.fires for e in out):
        check.fail(("examples",), "add an example that fires the rule")
    if out and all(e.fires for e in out):
        check.fail(("examples",), "add an example that must not fire the rule")
    return tuple(out)


def _offset(text: Any) -> timedelta:
    """Example times: '-30s' (before the evaluation) or '0s'."""
    if isinstance(text, str) and text.startswith("-"):
        return -parse_duration(text[1:])
    return parse_duration(text)


example_offset = _offset


# -- rule sets ------------------------------------------------------------------------------------------
