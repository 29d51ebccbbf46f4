"""R3 and the reserved types: the event-type catalogue as the pipeline and the bus writer check it.

A type must be in the catalogue (R3), and must not be one only the platform writes (``reserved``,
migration 0013): an ingested ``event_erased`` or ``events_expired`` could pass for the platform's own
record, and ``verify`` trusts erasure tombstones.
"""

from __future__ import annotations

import threading
import time

from psycopg_pool import ConnectionPool

from ingest.errors import EventRejected
from storage.timescale import catalog


class EventTypes:
    """The catalogue's types and whether each is reserved, refreshed at most every ``ttl`` seconds, and
    on a miss (at most once a second, so unknown types cannot hammer the database)."""

    def __init__(self, pool: ConnectionPool, ttl: float = 10.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._reserved: dict[str, bool] = {}
        self._loaded = -1e9
        self._lock = threading.Lock()

    def _lookup(self, event_type: str) -> bool | None:
        now = time.monotonic()
        if now - self._loaded > self._ttl or (event_type not in self._reserved and now - self._loaded > 1.0):
            with self._lock:
                self._reserved = {t.event_type: t.reserved for t in catalog.event_types(self._pool)}
                self._loaded = now
        return self._reserved.get(event_type)

    def __contains__(self, event_type: str) -> bool:
        return self._lookup(event_type) is not None

    def check(self, event_type: str) -> None:
        """Raise EventRejected unless an ingested event may have this type."""
        reserved = self._lookup(event_type)
        if reserved is None:
            raise EventRejected(
                "unknown_event_type", f"event type `{event_type}` is not in the catalogue (R3); "
                "an admin can add it with POST /api/v1/event-types", "event_type")
        if reserved:
            raise EventRejected(
                "reserved_event_type", f"event type `{event_type}` is reserved: only Auditwatch writes it, as the "
                "record of its own actions; send your application's action under a type of its own "
                "(GET /api/v1/event-types lists them)", "event_type")
