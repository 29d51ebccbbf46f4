"""What a report is: its definition (name, version, controls, builder), its parameters and its content."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from reports.errors import BadScope, ReportError

SCOPE_KINDS = ("all", "user", "source", "ip", "alert")


@dataclass(frozen=True)
class Scope:
    """What part of the audit log a report covers: ``all``, ``user:ID``, ``source:NAME``, ``ip:ADDR`` or ``alert:FP``."""

    kind: str = "all"
    value: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> Scope:
        if not text or text == "all":
            return cls()
        kind, sep, value = text.partition(":")
        if not sep or kind not in SCOPE_KINDS or not value:
            raise BadScope(f"scope {text!r} is not one of all, user:ID, source:NAME, ip:ADDRESS or "
                           "alert:FINGERPRINT (e.g. --scope user:alice)")
        return cls(kind, value)

    def __str__(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.value}"


def _utc(value: datetime | str, name: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ReportError(f"{name} {value!r} is not an ISO 8601 time such as 2024-05-01T00:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Params:
    """Everything a report's numbers depend on; embedded in the report so a re-run gives the same numbers."""

    name: str
    version: int
    start: datetime
    end: datetime
    scope: Scope = field(default_factory=Scope)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "--from").astimezone(UTC))
        object.__setattr__(self, "end", _utc(self.end, "--to").astimezone(UTC))
        if self.start >= self.end:
            raise ReportError("--from must be before --to")

    def to_json(self) -> dict[str, Any]:
        return {"report": self.name, "version": self.version, "from": self.start.isoformat(),
                "to": self.end.isoformat(), "scope": str(self.scope), "options": self.options}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Params:
        try:
            return cls(doc["report"], int(doc["version"]), doc["from"], doc["to"], Scope.parse(doc.get("scope")),
                       dict(doc.get("options") or {}))
        except KeyError as exc:
            raise ReportError(f"the parameters file lacks {exc.args[0]!r}; use the params.json written beside "
                              "a generated report") from None


@dataclass(frozen=True)
class Table:
    """One table of a report: ``key`` names its appendix file, ``query`` is exactly how it was computed."""

    key: str
    title: str
    query: str
    frame: pl.DataFrame
    note: str = ""
    limit: int = 100  # rows shown in the PDF (WeasyPrint lays out ~20 rows/s here); the appendices hold all


@dataclass
class Content:
    """What a report's builder returns: key figures (the numbers to reproduce), prose and tables."""

    figures: dict[str, int | float | str | None]
    tables: list[Table]
    summary: list[str] = field(default_factory=list)


# (reports.source.Source, Params) -> Content; the source module imports this one, not the other way round.
Builder = Callable[[Any, Params], Content]


@dataclass(frozen=True)
class Definition:
    """A named, versioned report template; bump ``version`` whenever its numbers could change meaning."""

    name: str
    version: int
    title: str
    controls: tuple[str, ...]
    purpose: str
    build: Builder
    scopes: tuple[str, ...] = ("all", "user", "source", "ip")
    defaults: dict[str, Any] = field(default_factory=dict)

    def params(self, start: datetime | str, end: datetime | str, scope: str | None = None,
               options: dict[str, Any] | None = None) -> Params:
        parsed = Scope.parse(scope)
        if parsed.kind not in self.scopes:
            raise BadScope(f"the {self.name} report takes a scope of kind {', '.join(self.scopes)}, "
                           f"not {parsed.kind!r}")
        unknown = set(options or {}) - set(self.defaults)
        if unknown:
            raise ReportError(f"the {self.name} report has no option {sorted(unknown)}; its options are "
                              f"{sorted(self.defaults) or 'none'}")
        return Params(self.name, self.version, start, end, parsed, {**self.defaults, **(options or {})})
