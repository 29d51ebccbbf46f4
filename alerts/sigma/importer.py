"""Sigma rules → our threshold rules (YAML, validated by alerts.rules like any rule file).

A single-event Sigma rule becomes a threshold of one event per user and minute; an ``event_count``
correlation a threshold of ``gte`` events; ``value_count`` a threshold on distinct values; ``temporal``
(every referenced rule within the timespan, in any order) a threshold on distinct event types when
each referenced rule selects exactly one type. Anything else is refused with the rule, the field and
the reason, and the other rules still import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import reduce
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
)
from sigma.correlations import SigmaCorrelationConditionOperator as Op
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import SigmaNumber, SigmaString

from alerts.errors import RuleError
from alerts.rule_yaml import format_duration
from alerts.rules import Rule, parse_rule
from alerts.sigma.errors import Refusal, SigmaUnmappable
from alerts.sigma.examples import examples
from alerts.sigma.pipeline import (
    CATEGORY_CLASSES,
    EVENT_SELECTORS,
    FIELD_MAP,
    GROUPABLE,
    OUTCOMES,
    PRODUCTS,
    Catalogue,
    outcome_of,
    pipeline,
)

SINGLE_WINDOW = timedelta(minutes=1)  # a single-event rule: one event per user within a minute
SINGLE_GROUP = ("user_id",)
CUSTOM_KEY = "auditwatch"  # our attributes that Sigma has no field for (labels, cooldown, for, interval)
LEVELS = {"informational": "info", "low": "info", "medium": "warning", "high": "critical", "critical": "critical"}
_MITRE = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Filter:
    """The events a detection selects: a set of types and a set of outcomes (None: any)."""

    types: frozenset[str] | None = None
    outcomes: frozenset[str] | None = None

    def both(self, other: Filter) -> Filter:
        return Filter(_meet(self.types, other.types), _meet(self.outcomes, other.outcomes))

    def either(self, other: Filter) -> Filter | None:
        """The union, when it is still one set of types and one set of outcomes; else None."""
        if self.outcomes == other.outcomes:
            return Filter(_join(self.types, other.types), self.outcomes)
        if self.types == other.types:
            return Filter(self.types, _join(self.outcomes, other.outcomes))
        return None


def _meet(a: frozenset | None, b: frozenset | None) -> frozenset | None:
    return b if a is None else a if b is None else a & b


def _join(a: frozenset | None, b: frozenset | None) -> frozenset | None:
    return None if a is None or b is None else a | b


@dataclass
class ImportResult:
    rules: list[tuple[Rule, str]] = field(default_factory=list)  # each rule and its YAML file text
    refused: list[Refusal] = field(default_factory=list)


class _Rule:
    """One Sigma rule being converted: its name for messages and the fields it used before mapping."""

    def __init__(self, rule: SigmaRule | SigmaCorrelationRule, origin: str) -> None:
        self.rule = rule
        self.label = f"{rule.name or rule.title or rule.id}" + (f" ({origin})" if origin else "")

    def refuse(self, field_name: str | None, reason: str) -> SigmaUnmappable:
        return SigmaUnmappable(Refusal(self.label, field_name, reason))


def import_text(text: str, catalogue: Catalogue, *, origin: str = "") -> ImportResult:
    """Every rule of a Sigma YAML text (one or more documents) that maps; the refusals for the others."""
    result = ImportResult()
    try:
        collection = SigmaCollection.from_yaml(text, collect_errors=True)
    except (SigmaError, yaml.YAMLError) as exc:
        result.refused.append(Refusal(origin or "<sigma>", None, f"not a valid Sigma document: {exc}"))
        return result
    rules = list(collection)
    for rule in rules:
        if rule.errors:
            result.refused.append(Refusal(_Rule(rule, origin).label, None, "; ".join(map(str, rule.errors))))
            continue
        pipeline().apply(rule)
    referenced = {id(ref.rule) for r in rules if isinstance(r, SigmaCorrelationRule) and not r.errors
                  for ref in r.rules or ()}
    for rule in rules:
        if rule.errors:
            continue
        if isinstance(rule, SigmaRule) and id(rule) in referenced:
            continue  # a correlation's input, not an alert of its own
        try:
            result.rules.append(_convert(_Rule(rule, origin), catalogue))
        except SigmaUnmappable as exc:
            result.refused.append(exc.refusal)
    return result


def import_paths(paths: Iterable[str], catalogue: Catalogue) -> ImportResult:
    """Every ``*.yml`` / ``*.yaml`` file of the given files and directories (recursively)."""
    result = ImportResult()
    for given in paths:
        root = Path(given)
        files = sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml")) if root.is_dir() else [root]
        for path in files:
            part = import_text(path.read_text(encoding="utf-8"), catalogue, origin=str(path))
            result.rules += part.rules
            result.refused += part.refused
    return result


# -- detections -----------------------------------------------------------------------------------

def _leaf(ctx: _Rule, node: ConditionFieldEqualsValueExpression, catalogue: Catalogue) -> Filter:
    name, value = node.field, node.value
    if isinstance(value, SigmaString):
        if value.contains_special():
            if str(value) == "*" and name in EVENT_SELECTORS:
                return Filter()
            raise ctx.refuse(name, f"wildcard or pattern value {str(value)!r}: threshold rules compare "
                                   "whole values (remove the modifier or the wildcard)")
        text = str(value)
    elif isinstance(value, SigmaNumber):
        text = str(value.number)
    else:
        raise ctx.refuse(name, f"a {type(value).__name__.removeprefix('Sigma')} value cannot be mapped "
                               "(threshold rules compare plain values)")
    if name in EVENT_SELECTORS:
        types = catalogue.select(name, text)
        if types is None:
            raise ctx.refuse(name, f"no event type in the catalogue has {name} {text!r}")
        return Filter(types=types)
    if name == "outcome":
        outcome = outcome_of(text)
        if outcome is None:
            raise ctx.refuse(name, f"{text!r} is not an outcome (success/failure/unknown, OCSF status or status_id)")
        return Filter(outcomes=frozenset({outcome}))
    if name in set(FIELD_MAP.values()):
        raise ctx.refuse(name, "threshold rules select events by type and outcome only; "
                               f"{name} can be a correlation group-by or value_count field instead")
    raise ctx.refuse(name, "no Auditwatch field for it; the pipeline maps " + ", ".join(sorted(
        k for k in FIELD_MAP if "." in k or k in EVENT_SELECTORS)) + " and others")


def _walk(ctx: _Rule, node: Any, catalogue: Catalogue) -> Filter:
    if isinstance(node, ConditionAND):
        return reduce(Filter.both, (_walk(ctx, a, catalogue) for a in node.args))
    if isinstance(node, ConditionOR):
        parts = [_walk(ctx, a, catalogue) for a in node.args]
        joined = parts[0]
        for part in parts[1:]:
            union = joined.either(part)
            if union is None:
                raise ctx.refuse("condition", "an OR across event types and outcomes at once is not one "
                                              "threshold filter; split it into one rule per branch")
            joined = union
        return joined
    if isinstance(node, ConditionNOT):
        inner = _walk(ctx, node.args[0], catalogue)
        if inner.outcomes is None and inner.types is not None:
            return Filter(types=catalogue.all - inner.types)
        if inner.types is None and inner.outcomes is not None:
            return Filter(outcomes=frozenset(OUTCOMES) - inner.outcomes)
        raise ctx.refuse("condition", "a NOT over both event types and outcomes cannot be a threshold filter")
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _leaf(ctx, node, catalogue)
    raise ctx.refuse("condition", f"{type(node).__name__.removeprefix('Condition')} (keyword search) "
                                  "cannot be mapped; name a field")


def _detection(ctx: _Rule, rule: SigmaRule, catalogue: Catalogue) -> Filter:
    source = rule.logsource
    if source.product and source.product.lower() not in PRODUCTS:
        raise ctx.refuse("logsource.product", f"{source.product!r} is not ours; use product: auditwatch (or ocsf)")
    if source.service and source.service.lower() != "auditwatch":
        raise ctx.refuse("logsource.service", f"{source.service!r} is not an Auditwatch service")
    selected = Filter()
    if source.category:
        class_uid = CATEGORY_CLASSES.get(source.category.lower())
        if class_uid is None:
            raise ctx.refuse("logsource.category", f"{source.category!r} names no OCSF class we store; use one "
                                                   f"of {', '.join(sorted(CATEGORY_CLASSES))}")
        selected = Filter(types=catalogue.of_class(class_uid))
    if len(rule.detection.parsed_condition) != 1:
        raise ctx.refuse("condition", "several conditions in one rule; write one rule per condition")
    found = selected.both(_walk(ctx, rule.detection.parsed_condition[0].parse(), catalogue))
    if found.types is not None and not found.types:
        raise ctx.refuse("condition", "selects no event type of the catalogue")
    if found.outcomes is not None and len(found.outcomes) > 1:
        raise ctx.refuse("outcome", "threshold rules take one outcome; write one rule per outcome")
    return found


# -- rules ----------------------------------------------------------------------------------------

def _threshold(ctx: _Rule, rule: SigmaRule | SigmaCorrelationRule, catalogue: Catalogue) -> dict[str, Any]:
    if isinstance(rule, SigmaRule):
        found = _detection(ctx, rule, catalogue)
        return _body(found, window=SINGLE_WINDOW, at_least=1, group_by=SINGLE_GROUP)
    if rule.type not in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT,
                         SigmaCorrelationType.TEMPORAL):
        raise ctx.refuse("correlation.type", f"{rule.type.name.lower()} has no threshold equivalent (event_count, "
                                             "value_count and temporal map)")
    inputs = []
    for ref in rule.rules or ():
        if not isinstance(ref.rule, SigmaRule):
            raise ctx.refuse("correlation.rules", f"{ref.reference} is a correlation; chained correlations do not map")
        inputs.append(_detection(_Rule(ref.rule, ""), ref.rule, catalogue))
    group_by = tuple(rule.group_by or ())
    for name in group_by:
        if name not in GROUPABLE:
            raise ctx.refuse("correlation.group-by", f"{name} cannot be grouped on; use {', '.join(GROUPABLE)}")
    window = timedelta(seconds=rule.timespan.seconds)
    if not timedelta(seconds=10) <= window <= timedelta(days=1):
        raise ctx.refuse("correlation.timespan", f"{rule.timespan.spec} is outside 10s..1d")
    if rule.type is SigmaCorrelationType.TEMPORAL:
        return _temporal(ctx, inputs, window, group_by)
    condition = rule.condition
    if not hasattr(condition, "op"):
        raise ctx.refuse("correlation.condition", "extended conditions do not map; use gte or gt")
    if condition.op is Op.GTE:
        at_least = int(condition.count)
    elif condition.op is Op.GT:
        at_least = int(condition.count) + 1
    else:
        raise ctx.refuse("correlation.condition", f"{condition.op.name.lower()}: threshold rules fire at or "
                                                  "above a count (use gte or gt)")
    joined = inputs[0]
    for part in inputs[1:]:
        union = joined.either(part)
        if union is None:
            raise ctx.refuse("correlation.rules", "the referenced rules differ in both event types and outcomes")
        joined = union
    distinct = None
    if rule.type is SigmaCorrelationType.VALUE_COUNT:
        distinct = condition.fieldref if isinstance(condition.fieldref, str) else None
        if distinct not in GROUPABLE:
            raise ctx.refuse("correlation.condition.field", f"{condition.fieldref} cannot be counted; use "
                                                            f"{', '.join(GROUPABLE)}")
        if distinct in group_by:
            raise ctx.refuse("correlation.condition.field", f"{distinct} is also a group-by field")
    return _body(joined, window=window, at_least=max(1, at_least), group_by=group_by, distinct=distinct)


def _temporal(ctx: _Rule, inputs: list[Filter], window: timedelta, group_by: tuple[str, ...]) -> dict[str, Any]:
    """Every referenced rule within the window = that many distinct event types, one per rule."""
    if "event_type" in group_by:
        raise ctx.refuse("correlation.group-by", "temporal rules count distinct event types; do not group on them")
    types = []
    for part in inputs:
        if part.types is None or len(part.types) != 1:
            raise ctx.refuse("correlation.rules", "a temporal rule maps when each referenced rule selects exactly "
                                                  "one event type")
        types.append(next(iter(part.types)))
    if len(set(types)) != len(types) or len({p.outcomes for p in inputs}) != 1:
        raise ctx.refuse("correlation.rules", "the referenced rules must select different event types with the "
                                              "same outcome")
    return _body(Filter(frozenset(types), inputs[0].outcomes), window=window, at_least=len(types),
                 group_by=group_by, distinct="event_type")


def _body(found: Filter, *, window: timedelta, at_least: int, group_by: tuple[str, ...],
          distinct: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if found.types is not None:
        body["event_type"] = sorted(found.types)
    if found.outcomes is not None:
        body["outcome"] = next(iter(found.outcomes))
    body.update({"window": format_duration(window), "group_by": list(group_by), "at_least": at_least})
    if distinct:
        body["distinct"] = distinct
    return body


def _rule_id(rule: SigmaRule | SigmaCorrelationRule) -> str:
    raw = (rule.name or rule.title or str(rule.id)).lower()
    slug = re.sub(r"[^a-z0-9_]+", "_", raw).strip("_")
    if not slug or not slug[0].isalpha():
        slug = f"sigma_{slug}"
    return slug[:64]


def _convert(ctx: _Rule, catalogue: Catalogue) -> tuple[Rule, str]:
    rule = ctx.rule
    threshold = _threshold(ctx, rule, catalogue)
    extra = rule.custom_attributes.get(CUSTOM_KEY) or {}
    if not isinstance(extra, dict):
        raise ctx.refuse(CUSTOM_KEY, "must be a mapping (labels, cooldown, for, interval)")
    labels = dict(extra.get("labels") or {})
    for tag in rule.tags or ():
        found = _MITRE.match(str(tag))
        if found and "mitre" not in labels:
            labels["mitre"] = found.group(1).upper()
    level = rule.level.name.lower() if rule.level else "medium"
    group_by = set(threshold["group_by"])
    title = re.sub(r"\{(\w*)\}", lambda m: m.group(0) if m.group(1) in group_by else "{{" + m.group(1) + "}}",
                   rule.title or _rule_id(rule))
    data: dict[str, Any] = {"id": _rule_id(rule), "title": title, "description": rule.description or "",
                            "severity": LEVELS.get(level, "warning")}
    if labels:
        data["labels"] = {str(k): str(v) for k, v in labels.items()}
    references = [r for r in (rule.references or []) if str(r).startswith(("https://", "http://"))]
    if references:
        data["runbook_url"] = references[0]
    for key in ("for", "cooldown", "interval"):
        if key in extra:
            data[key] = extra[key]
    data["threshold"] = threshold
    try:
        data["examples"] = examples(threshold, catalogue)
    except ValueError as exc:
        raise ctx.refuse("condition", str(exc)) from None
    text = "# Imported from Sigma" + (f": {ctx.label}" if ctx.label else "") + "\n" + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, width=110)
    try:
        return parse_rule(text, f"{data['id']}.yml"), text
    except RuleError as exc:
        problem = exc.problems[0]
        raise ctx.refuse(problem.field, problem.message) from None
