"""The retry stage: deliver outbox notifications at least once, with backoff and Retry-After.

Each due notification is leased (so one dispatcher owns it), sent through its notifier, and its
attempt recorded. A dispatcher that dies between sending and recording leaves the lease to expire;
the next one asks the notifier whether the earlier attempt arrived (``confirm``) and otherwise sends
again, which receivers deduplicate (PagerDuty on dedup_key = fingerprint).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from psycopg_pool import ConnectionPool

from alerts.errors import DeliveryError
from alerts.notifiers import Notifier
from storage.timescale import outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    base: timedelta = timedelta(seconds=5)
    factor: float = 2.0
    max_delay: timedelta = timedelta(minutes=10)
    max_retry_after: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(hours=24)
    lease: timedelta = timedelta(seconds=60)
    jitter: float = 0.1

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> timedelta:
        """Exponential backoff with jitter, or exactly what the receiver's Retry-After asks (capped)."""
        backoff = min(self.base * self.factor ** max(0, attempts - 1), self.max_delay)
        backoff *= 1 + self.jitter * (2 * rng.random() - 1)
        if retry_after is not None:
            return min(timedelta(seconds=retry_after), self.max_retry_after)
        return backoff


@dataclass
class DispatchResult:
    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    confirmed: list[int] = field(default_factory=list)


def dispatch(pool: ConnectionPool, notifiers: Mapping[str, Notifier], *, now: datetime,
             policy: RetryPolicy = RetryPolicy(), clock: Callable[[], datetime] | None = None,
             secrets: list[str] | None = None, limit: int = 50, rng: random.Random | None = None) -> DispatchResult:
    """Deliver the due notifications once each; record every attempt."""
    clock = clock or (lambda: now)
    rng = rng or random.Random()
    result = DispatchResult()
    for claim in outbox.claim_due(pool, now=now, lease_seconds=policy.lease.total_seconds(), limit=limit):
        note = claim.notification
        notifier = notifiers.get(note.receiver)
        if notifier is None:
            outbox.record_attempt(pool, note.notification_id, at=clock(), outcome="failed",
                                 error=f"receiver {note.receiver!r} is not configured (no credentials in settings)")
            result.failed.append(note.notification_id)
            continue
        if claim.reclaimed and notifier.confirm(note.notification_id, note.payload):
            outbox.record_attempt(pool, note.notification_id, at=clock(), outcome="confirmed",
                                 error="delivered by an earlier attempt whose result was not recorded")
            result.confirmed.append(note.notification_id)
            continue
        try:
            notifier.send(note.notification_id, note.payload)
        except DeliveryError as exc:
            message = _scrub(str(exc), secrets or [])
            at = clock()
            if exc.retryable and at - note.created_at < policy.give_up_after:
                wait = policy.delay(note.attempts, exc.retry_after, rng)
                log.warning("notification %s to %s failed (%s); retrying in %.0f s", note.notification_id,
                            note.receiver, message, wait.total_seconds())
                outbox.record_attempt(pool, note.notification_id, at=at, outcome="retry", status_code=exc.status_code,
                                     error=message, retry_after=exc.retry_after, next_attempt_at=at + wait)
                result.retrying.append(note.notification_id)
            else:
                log.error("notification %s to %s failed for good: %s", note.notification_id, note.receiver, message)
                outbox.record_attempt(pool, note.notification_id, at=at, outcome="failed",
                                     status_code=exc.status_code, error=message)
                result.failed.append(note.notification_id)
            continue
        outbox.record_attempt(pool, note.notification_id, at=clock(), outcome="delivered")
        result.delivered.append(note.notification_id)
    return result


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
