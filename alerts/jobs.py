"""Scheduled jobs (named module functions for the worker): evaluate rules, deliver the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from psycopg_pool import ConnectionPool

from alerts.dispatch import DispatchResult, RetryPolicy, dispatch
from alerts.engine import AlertConfig, EvaluationResult, evaluate, flush
from alerts.notifiers import Notifier


def evaluate_rules(pool: ConnectionPool, config: AlertConfig) -> EvaluationResult:
    """Every few seconds: rules → lifecycle → outbox (safe to run twice, or on two workers)."""
    return evaluate(pool, config, now=datetime.now(UTC))


def deliver(pool: ConnectionPool, notifiers: Mapping[str, Notifier], secrets: list[str] | None = None,
            policy: RetryPolicy | None = None, config: AlertConfig | None = None) -> DispatchResult:
    """Every few seconds: flush groups whose wait is over, then send due notifications, retrying with backoff."""
    if config is not None:
        flush(pool, config, now=datetime.now(UTC))
    return dispatch(pool, notifiers, now=datetime.now(UTC), clock=lambda: datetime.now(UTC), secrets=secrets,
                    policy=policy or RetryPolicy())
