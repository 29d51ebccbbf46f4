"""Routing tree, inhibition and silence matching (Alertmanager's route.go and inhibit.go, in small).

The tree is data (``alerts/routing.yml``, or a file from settings): each route matches labels and
names receivers; the first matching child wins unless it says ``continue``; an alert no child takes
goes to its parent's receivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from alerts.errors import ConfigError
from alerts.rule_yaml import parse_duration
from storage.timescale.alerts import AlertRow, Silence

DEFAULT_ROUTING = Path(__file__).with_name("routing.yml")
ALL_LABELS = "..."
LABEL_MATCHER_MAX = 20


@dataclass(frozen=True)
class Route:
    receivers: tuple[str, ...] = ()
    match: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("rule_id",)
    group_wait: timedelta = timedelta(seconds=10)
    group_interval: timedelta = timedelta(seconds=15)
    repeat_interval: timedelta = timedelta(hours=4)
    continue_: bool = False
    routes: tuple[Route, ...] = ()
    path: str = "0"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match.items())

    def group_key(self, receiver: str, labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """(key, the labels it groups on): one notification stream per key."""
        names = sorted(labels) if ALL_LABELS in self.group_by else list(self.group_by)
        values = {n: labels.get(n, "") for n in names}
        return f"{self.path}:" + ",".join(f"{k}={v}" for k, v in values.items()), values


@dataclass(frozen=True)
class Inhibition:
    """A firing alert matching ``source`` mutes alerts matching ``target`` that share the ``equal`` labels."""

    source: Mapping[str, str]
    target: Mapping[str, str]
    equal: tuple[str, ...] = ()


@dataclass(frozen=True)
class Routing:
    route: Route
    inhibitions: tuple[Inhibition, ...] = ()


def resolve(route: Route, labels: Mapping[str, str]) -> list[Route]:
    """The routes (with receivers) that take an alert with these labels."""
    taken: list[Route] = []
    matched = False
    for child in route.routes:
        if child.matches(labels):
            matched = True
            taken.extend(resolve(child, labels))
            if not child.continue_:
                break
    if not matched and route.receivers:
        taken.append(route)
    return taken


def inhibited(alert: AlertRow, firing: Iterable[AlertRow], rules: Iterable[Inhibition]) -> AlertRow | None:
    """The firing alert that mutes this one, if any."""
    for rule in rules:
        if not all(alert.labels.get(k) == v for k, v in rule.target.items()):
            continue
        for source in firing:
            if source.fingerprint == alert.fingerprint:
                continue
            if all(source.labels.get(k) == v for k, v in rule.source.items()) and all(
                    alert.labels.get(k) is not None and source.labels.get(k) == alert.labels.get(k)
                    for k in rule.equal):
                return source
    return None


def silenced_by(alert: AlertRow, silences: Iterable[Silence], now: datetime) -> Silence | None:
    for silence in silences:
        if silence.active(now) and all(alert.labels.get(k) == v for k, v in silence.matchers.items()):
            return silence
    return None


def acknowledged(alert: AlertRow, now: datetime) -> bool:
    return alert.acknowledged_by is not None and (alert.acknowledged_until is None or now < alert.acknowledged_until)


# -- loading -------------------------------------------------------------------------------------------

def load_routing(path: Path | str | None = None) -> Routing:
    path = Path(path) if path else DEFAULT_ROUTING
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the routing file {path}: {exc}; fix it or unset `alerts_routing_file`") \
            from None
    if not isinstance(data, dict) or not isinstance(data.get("route"), dict):
        raise ConfigError(f"{path}: the routing file needs a top-level `route` mapping")
    route = _route(data["route"], None, "0", str(path))
    inhibitions = []
    for i, item in enumerate(data.get("inhibit") or []):
        if not isinstance(item, dict) or not isinstance(item.get("source"), dict) or not isinstance(
                item.get("target"), dict):
            raise ConfigError(f"{path}: inhibit[{i}] needs `source` and `target` label mappings")
        inhibitions.append(Inhibition({k: str(v) for k, v in item["source"].items()},
                                      {k: str(v) for k, v in item["target"].items()},
                                      tuple(item.get("equal") or ())))
    return Routing(route, tuple(inhibitions))


_ROUTE_FIELDS = {"receivers", "match", "group_by", "group_wait", "group_interval", "repeat_interval", "continue",
                 "routes"}


def _route(data: Mapping[str, Any], parent: Route | None, path: str, file: str) -> Route:
    unknown = set(data) - _ROUTE_FIELDS
    if unknown:
        raise ConfigError(f"{file}: route {path}: unknown field(s) {sorted(unknown)}; allowed: "
                          f"{', '.join(sorted(_ROUTE_FIELDS))}")
    base = parent or Route()

    def duration(name: str) -> timedelta:
        if name not in data:
            return getattr(base, name)
        try:
            return parse_duration(data[name])
        except ValueError as exc:
            raise ConfigError(f"{file}: route {path}: `{name}`: {exc}") from None

    route = Route(receivers=tuple(data.get("receivers") or ()),
                  match={k: str(v) for k, v in (data.get("match") or {}).items()},
                  group_by=tuple(data.get("group_by") or base.group_by),
                  group_wait=duration("group_wait"), group_interval=duration("group_interval"),
                  repeat_interval=duration("repeat_interval"), continue_=bool(data.get("continue", False)),
                  path=path)
    children = tuple(_route(child, route, f"{path}.{i}", file) for i, child in enumerate(data.get("routes") or ()))
    return Route(**{**route.__dict__, "routes": children})


def receivers_in(route: Route) -> set[str]:
    return set(route.receivers).union(*(receivers_in(r) for r in route.routes)) if route.routes else set(
        route.receivers)
