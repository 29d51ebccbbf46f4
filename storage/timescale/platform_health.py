"""The platform's own health signals for the `health` alert rules: when events last arrived, whether a worker
leads, the oldest undelivered notification per receiver, and sealed events still waiting for a signature. The same stored
state that /readyz, /metrics and the ops page read; small queries, one round trip each."""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg_pool import ConnectionPool

from storage.platform import PLATFORM_SOURCE
from storage.timescale import leader

# Events are found through the time index: those whose timestamp lies within this of when they arrived
# (every live path; a backfill of older history is not "ingest" for this signal).
ARRIVAL_SLACK = timedelta(days=1)

_LAST_INGESTED = (
    "SELECT max(received_at) FROM audit_events WHERE timestamp >= %(since)s AND timestamp < %(until)s "
    "AND received_at >= %(from)s AND received_at < %(until)s "
    "AND (source IS NULL OR NOT (lower(source) = %(platform)s OR lower(source) LIKE %(platform_prefix)s))")
_OUTBOX_OLDEST = ("SELECT receiver, min(created_at) FROM alert_notifications "
                  "WHERE status IN ('pending', 'sending') GROUP BY receiver ORDER BY receiver")
# The oldest sealed batch that no signed checkpoint covers yet (the chain position is the batch's order).
OLDEST_UNSIGNED = ("SELECT min(sealed_at) FROM integrity_batches WHERE chain_pos > "
                    "COALESCE((SELECT max(chain_pos) FROM integrity_checkpoints), 0)")


def last_ingested(pool: ConnectionPool, *, since: datetime, until: datetime) -> datetime | None:
    """When the newest ingested event (not one of the platform's own records) arrived in [since, until)."""
    with pool.connection() as conn:
        row = conn.execute(_LAST_INGESTED, {
            "since": since - ARRIVAL_SLACK, "until": until, "from": since, "platform": PLATFORM_SOURCE,
            "platform_prefix": PLATFORM_SOURCE + "-%"}).fetchone()
    return row[0]


def leader_present(pool: ConnectionPool) -> bool:
    """A worker session holds the analytics leader lock now."""
    with pool.connection() as conn:
        return leader.holder(conn) is not None


def outbox_oldest(pool: ConnectionPool) -> dict[str, datetime]:
    """Receiver -> when its oldest undelivered (pending or sending) notification was created."""
    with pool.connection() as conn:
        return dict(conn.execute(_OUTBOX_OLDEST).fetchall())


def oldest_unsigned(pool: ConnectionPool) -> datetime | None:
    """When the oldest batch that no checkpoint signs yet was sealed (None: everything sealed is signed).

    Not the newest checkpoint's age: the signer only signs when something was sealed since, so on a quiet
    system an old checkpoint is healthy."""
    with pool.connection() as conn:
        return conn.execute(OLDEST_UNSIGNED).fetchone()[0]
