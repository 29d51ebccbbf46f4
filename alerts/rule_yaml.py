"""Alert rules as data: YAML files loaded, validated (file, line, field) and turned into frozen rules.

A rule has an id, title, severity, labels, runbook and exactly one condition (threshold, anomaly or
absence), plus examples that must and must not fire it; ``tests/alerts/test_rule_examples.py`` runs
every rule's examples. The default pack ships in ``alerts/rules/``; a user directory adds rules or
overrides packaged ones by id.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from alerts.errors import RuleError, RuleProblem
from storage.timescale.anomalies import SEVERITIES as ANOMALY_SEVERITIES
from storage.timescale.anomalies import at_or_above
from storage.timescale.rule_inputs import ABSENCE_FIELDS, THRESHOLD_FIELDS

log = logging.getLogger(__name__)
PACKAGED_RULES = Path(__file__).with_name("rules")
SEVERITIES = ("info", "warning", "critical")
RULE_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
LABEL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_DURATION = re.compile(r"(\d+)(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Anything that looks like a credential has no place in a rule file (they come from settings).
_SECRET_KEY = re.compile(r"token|secret|password|routing_key|api_key|webhook_url", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"xox[abprs]-|hooks\.slack\.com/services/|https?://[^/\s]*:[^@/\s]+@")
MAX_RULE_BYTES = 256 * 1024
MAX_DEPTH = 32

TOP_FIELDS = {"id", "title", "description", "severity", "labels", "runbook_url", "for", "cooldown", "interval",
              "threshold", "anomaly", "absence", "examples", "enabled"}
CONDITIONS = ("threshold", "anomaly", "absence")
EVENT_FIELDS = {"at", "repeat", "spacing", "event_type", "user_id", "outcome", "source_ip", "source"}


def parse_duration(text: Any) -> timedelta:
    """'30s', '10m', '2h', '7d' → timedelta; ValueError says the accepted form."""
    if isinstance(text, str) and (m := _DURATION.fullmatch(text.strip())):
        return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"{text!r} is not a duration; write a whole number and a unit, e.g. 30s, 10m, 2h, 7d")


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


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


@dataclass(frozen=True)
class Example:
    name: str
    fires: bool
    events: tuple[Mapping[str, Any], ...] = ()
    anomalies: tuple[Mapping[str, Any], ...] = ()
    groups: tuple[Mapping[str, str], ...] = ()  # when given: exactly these groups fire


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    condition: Threshold | Anomaly | Absence
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


# -- loading with line numbers ---------------------------------------------------------------------

class _Lines:
    """Line numbers of every key and list item of a YAML document, by path."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[tuple, int] = {}
        self.duplicates: list[tuple[tuple, int]] = []
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
                if name in seen:
                    self.duplicates.append((path + (name,), key.start_mark.line + 1))
                seen.add(name)
                self.lines[path + (name,)] = key.start_mark.line + 1
                self._walk(value, path + (name,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,))

    def at(self, path: tuple) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)


class _Checker:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, path: str, lines: _Lines) -> None:
        self.path = path
        self.lines = lines
        self.problems: list[RuleProblem] = []

    def fail(self, where: tuple, message: str) -> None:
        name = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in where).replace(".[", "[") or None
        self.problems.append(RuleProblem(self.path, self.lines.at(where), name, message))

    def known(self, data: Mapping, allowed: Iterable[str], where: tuple) -> None:
        for key in data:
            if key not in allowed:
                self.fail(where + (key,), f"unknown field; allowed here: {', '.join(sorted(allowed))}")

    def get(self, data: Mapping, key: str, where: tuple, kind: type | tuple[type, ...], *, required: bool = False,
            default: Any = None) -> Any:
        if key not in data or data[key] is None:
            if required:
                self.fail(where + (key,) if where else (key,), "is required")
            return default
        value = data[key]
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else ()):
            self.fail(where + (key,), f"must be {_kind_name(kind)}, not a boolean")
            return default
        if not isinstance(value, kind):
            self.fail(where + (key,), f"must be {_kind_name(kind)}, not {type(value).__name__}")
            return default
        return value

    def duration(self, data: Mapping, key: str, where: tuple, default: timedelta | None = None, *,
                 required: bool = False) -> timedelta | None:
        raw = self.get(data, key, where, str, required=required)
        if raw is None:
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.fail(where + (key,), str(exc))
            return default

    def names(self, data: Mapping, key: str, where: tuple, allowed: Iterable[str] | None = None) -> tuple[str, ...]:
        raw = self.get(data, key, where, (list, str), default=[])
        items = [raw] if isinstance(raw, str) else raw
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                self.fail(where + (key, i), "must be a non-empty string")
            elif allowed is not None and item not in allowed:
                self.fail(where + (key, i), f"{item!r} is not one of {', '.join(allowed)}")
            else:
                out.append(item)
        return tuple(out)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    words = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", dict: "a mapping",
             list: "a list"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


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
    check = _Checker(path, _Lines(root))
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
                   "a rule has exactly one of threshold, anomaly or absence")
    condition: Threshold | Anomaly | Absence | None = None
    if conditions:
        body = check.get(data, conditions[0], (), dict, default=None)
        if body is not None:
            condition = {"threshold": _threshold, "anomaly": _anomaly, "absence": _absence}[conditions[0]](
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


def _no_secrets(check: _Checker, node: Any, where: tuple) -> None:
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


def _threshold(check: _Checker, body: dict, where: tuple) -> Threshold | None:
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


def _anomaly(check: _Checker, body: dict, where: tuple) -> Anomaly | None:
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


def _absence(check: _Checker, body: dict, where: tuple) -> Absence | None:
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


def _examples(check: _Checker, data: dict, condition: Any) -> tuple[Example, ...]:
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
        check.known(item, {"name", "fires", "events", "anomalies", "groups"}, where)
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
        out.append(Example(name=name, fires=fires, events=tuple(events), anomalies=tuple(anomalies),
                           groups=tuple(groups)))
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

def load_file(path: Path) -> Rule:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError([RuleProblem(str(path), None, None, f"cannot read the file: {exc}")]) from None
    rule = parse_rule(text, str(path))
    expected = path.stem
    if rule.id != expected:
        raise RuleError([RuleProblem(str(path), 1, "id", f"the id {rule.id!r} must match the file name "
                                                          f"({expected}.yml), so one file holds one rule")])
    return rule


def load_rules(*directories: Path | str | None) -> dict[str, Rule]:
    """Every rule of the directories, later ones overriding earlier ones by id; all problems at once."""
    rules: dict[str, Rule] = {}
    problems: list[RuleProblem] = []
    for directory in directories:
        if not directory:
            continue
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.y*ml")):
            try:
                rules[path.stem] = load_file(path)
            except RuleError as exc:
                problems.extend(exc.problems)
    if problems:
        raise RuleError(problems)
    return rules


class RuleSource:
    """The rules of some directories, re-read when a file changes (evaluations pick up edits).

    A file that turns invalid keeps its last valid version in force and the problem is reported
    (``problems``), so a typo in one rule never stops the others from being evaluated.
    """

    def __init__(self, *directories: Path | str | None) -> None:
        self.directories = tuple(Path(d) for d in directories if d)
        self.problems: list[RuleProblem] = []
        self._files: dict[Path, tuple[tuple[int, int], Rule | None, list[RuleProblem]]] = {}

    def current(self) -> dict[str, Rule]:
        files: dict[Path, tuple[tuple[int, int], Rule | None, list[RuleProblem]]] = {}
        rules: dict[str, Rule] = {}
        for directory in self.directories:
            for path in sorted(directory.glob("*.y*ml")) if directory.is_dir() else []:
                try:
                    stat = path.stat()
                except OSError:
                    continue  # removed while listing
                signature = (stat.st_mtime_ns, stat.st_size)
                before, rule, problems = self._files.get(path, (None, None, []))
                if signature != before:
                    try:
                        rule, problems = load_file(path), []
                    except RuleError as exc:
                        problems = list(exc.problems)
                        if rule is not None:
                            problems.append(RuleProblem(str(path), None, None,
                                                        "its last valid version stays in force until this is fixed"))
                        for problem in problems:  # once per change of the file, not once per evaluation
                            log.error("alert rule problem: %s", problem)
                files[path] = (signature, rule, problems)
                if rule is not None:
                    rules[rule.id] = rule
        self._files = files
        self.problems = [p for _, _, found in files.values() for p in found]
        return rules


def default_directories(user_dir: Path | str | None) -> tuple[Path, ...]:
    return (PACKAGED_RULES,) + ((Path(user_dir),) if user_dir else ())
