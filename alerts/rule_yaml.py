"""Reading rule YAML: every key's line number, every problem of a file at once, and durations.

Pure helpers for ``alerts.rules`` (which turns a document into a Rule), kept apart so the rule schema
reads on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import yaml

from alerts.errors import RuleProblem

_DURATION = re.compile(r"(\d+)(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


class Lines:
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


class Checker:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, path: str, lines: Lines) -> None:
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
