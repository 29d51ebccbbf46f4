"""The platform state a health rule's example describes (``state:``), made real in the test database: the
analytics leader lock held or not, undelivered notifications, a signed checkpoint behind or over the newest
sealed events. Returns the instant to evaluate at, and what to release afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from alerts.rules import Example, example_offset
from storage.timescale.leader import ANALYTICS_LOCK


@contextmanager
def health_state(pool, db_url: str, example: Example, now: datetime, *, head_before: int) -> Iterator[datetime]:
    """Materialise ``example.state`` (after its events were written) and yield the evaluation time."""
    state = example.state
    holder = None
    try:
        if state.get("leader"):
            holder = psycopg.connect(db_url, autocommit=True)
            assert holder.execute("SELECT pg_try_advisory_lock(%s)", (ANALYTICS_LOCK,)).fetchone()[0]
        with pool.connection() as conn:
            for item in state.get("outbox", []):
                at = now + example_offset(item["at"])
                conn.execute("INSERT INTO alert_notifications (receiver, group_key, kind, payload, status, "
                             "created_at, next_attempt_at) VALUES (%s, 'example', 'firing', %s, %s, %s, %s)",
                             (item["receiver"], Jsonb({}), item.get("status", "pending"), at, at))
            checkpoint = state.get("checkpoint")
            if checkpoint:
                # Sealing stamps the database's clock: evaluate relative to when the example's events were sealed.
                sealed = conn.execute("SELECT max(sealed_at) FROM integrity_batches WHERE chain_pos > %s",
                                      (head_before,)).fetchone()[0]
                assert sealed is not None, "a checkpoint example needs events"
                now = sealed - example_offset(checkpoint["sealed"])
                pos, chain_hash, events = conn.execute(
                    "SELECT chain_pos, chain_hash, events FROM integrity_head WHERE id = 1").fetchone()
                if not checkpoint.get("covers_events"):
                    pos = head_before
                conn.execute("INSERT INTO integrity_checkpoints (chain_pos, chain_hash, events, created_at, "
                             "public_key, payload, signature) VALUES (%s, %s, %s, %s, '\\x00', '{}', '\\x00')",
                             (pos, chain_hash, events, now + example_offset(checkpoint["signed"])))
        yield now
    finally:
        if holder is not None:
            holder.close()
        if state.get("outbox"):
            with pool.connection() as conn:
                conn.execute("DELETE FROM alert_notifications WHERE group_key = 'example'")


def chain_head(pool) -> int:
    with pool.connection() as conn:
        return conn.execute("SELECT chain_pos FROM integrity_head WHERE id = 1").fetchone()[0]
