"""Analytics errors, each saying what to do about it."""

from __future__ import annotations


class AnalyticsError(RuntimeError):
    """Base class for analytics problems."""


class MalformedInput(AnalyticsError, ValueError):
    """A line of an input file cannot be used; carries the 1-based line number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.reason = message


class MissingColumns(AnalyticsError, ValueError):
    """An events frame lacks columns every detector needs."""


class ModelNotFound(AnalyticsError, LookupError):
    """No stored model version to score with; run the refit job (``auditwatch analytics refit``) first."""


class TamperedModel(AnalyticsError, ValueError):
    """A stored model whose HMAC seal does not match the key: refused rather than unpickled."""
