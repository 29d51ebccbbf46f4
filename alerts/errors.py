"""Alerting errors, each saying what to do about it."""

from __future__ import annotations

from dataclasses import dataclass


class AlertsError(RuntimeError):
    """Base class for alerting problems."""


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong with a rule file, located so an editor can jump to it."""

    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {f'`{self.field}`: ' if self.field else ''}{self.message}"


class RuleError(AlertsError, ValueError):
    """A rule file that cannot be used; lists every problem found with file, line and field."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        super().__init__("invalid alert rule(s):\n  " + "\n  ".join(str(p) for p in problems))


class UnknownAlert(AlertsError, LookupError):
    """No alert has this fingerprint."""

    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"no alert has fingerprint {fingerprint!r}; list alerts with `auditwatch alerts list` "
                         "or GET /api/v1/alerts")
        self.fingerprint = fingerprint


class UnknownRule(AlertsError, LookupError):
    """No loaded rule has this id."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"no alert rule has id {rule_id!r}; list them with `auditwatch alerts rules list`")
        self.rule_id = rule_id


class InvalidSilence(AlertsError, ValueError):
    """A silence that cannot be created as given."""


class ConfigError(AlertsError, ValueError):
    """Routing or receiver configuration that cannot be used."""


class DeliveryError(AlertsError):
    """A notifier could not deliver; the retry stage decides what happens next.

    ``retryable`` is False for errors that repeating cannot fix (bad credentials, a rejected payload);
    ``retry_after`` carries a receiver's Retry-After (429) in seconds.
    """

    def __init__(self, message: str, *, retryable: bool = True, status_code: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
