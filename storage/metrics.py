"""Prometheus metrics of what storage holds and how: connection pools, and the platform's stored state
(alert outbox, integrity checkpoints, anomaly incidents) read from the database at scrape time.

The stored state is the same whichever process reads it, so one process (the worker) exports it; the pool
gauges are per process (``livesum`` across the API's gunicorn workers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

import psycopg
from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import DatabaseUnavailable
from storage.timescale import ops_state
from storage.timescale.replica import ReplicaStatus

log = logging.getLogger(__name__)

POOL_CONNECTIONS = Gauge("auditwatch_db_pool_connections", "Connections the pool holds open.", ["pool"],
                         multiprocess_mode="livesum")
POOL_IN_USE = Gauge("auditwatch_db_pool_connections_in_use", "Connections lent out of the pool.", ["pool"],
                    multiprocess_mode="livesum")
POOL_MAX = Gauge("auditwatch_db_pool_max_connections", "The most connections the pool may open.", ["pool"],
                 multiprocess_mode="livesum")
POOL_WAITING = Gauge("auditwatch_db_pool_requests_waiting",
                     "Callers queued for a connection (the pool is saturated while this is above 0).", ["pool"],
                     multiprocess_mode="livesum")


def observe_pools(pools: Iterable[ConnectionPool]) -> None:
    """Copy each pool's counters into the gauges (cheap: psycopg_pool keeps them in memory)."""
    for pool in pools:
        stats = pool.get_stats()
        size = stats.get("pool_size", 0)
        POOL_CONNECTIONS.labels(pool.name).set(size)
        POOL_IN_USE.labels(pool.name).set(size - stats.get("pool_available", 0))
        POOL_MAX.labels(pool.name).set(pool.max_size)
        POOL_WAITING.labels(pool.name).set(stats.get("requests_waiting", 0))


REPLICA_LAG = Gauge("auditwatch_read_replica_lag_seconds",
                    "How far the read replica's replay is behind the primary (0: caught up; NaN: it does not answer).",
                    multiprocess_mode="mostrecent")
REPLICA_UP = Gauge("auditwatch_read_replica_up", "1 while the read replica answers as a standby, else 0.",
                   multiprocess_mode="mostrecent")


def observe_replica(status: ReplicaStatus) -> None:
    """Copy a ``storage.timescale.replica.ReplicaStatus`` into the gauges."""
    REPLICA_UP.set(1 if status.ok else 0)
    REPLICA_LAG.set(status.lag_seconds if status.ok and status.lag_seconds is not None else float("nan"))


def utcnow() -> datetime:
    return datetime.now(UTC)


class StateCollector(Collector):
    """The stored state (``storage.timescale.ops_state``), read once per scrape."""

    def __init__(self, pool: ConnectionPool, *, now: Callable[[], datetime] = utcnow) -> None:
        self._pool = pool
        self._now = now

    def describe(self) -> list:
        return []  # read lazily: registering must not query the database

    def collect(self) -> Iterator:
        started = time.perf_counter()
        up = GaugeMetricFamily("auditwatch_state_up", "1 when this scrape could read the stored state, else 0.")
        try:
            state = ops_state.read(self._pool)
        except (psycopg.Error, PoolTimeout, DatabaseUnavailable, OSError) as exc:
            log.warning("metrics: the stored state could not be read (%s: %s)", exc.__class__.__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = self._now()
        backlog = GaugeMetricFamily("auditwatch_alerts_outbox_notifications",
                                    "Notifications not yet delivered, by receiver and status (pending, sending).",
                                    labels=["receiver", "status"])
        oldest: dict[str, datetime] = {}
        for row in state.backlog:
            backlog.add_metric([row.receiver, row.status], row.notifications)
            oldest[row.receiver] = min(oldest.get(row.receiver, row.oldest_created_at), row.oldest_created_at)
        yield backlog
        age = GaugeMetricFamily("auditwatch_alerts_outbox_oldest_age_seconds",
                                "Age of the oldest undelivered notification, by receiver.", labels=["receiver"])
        for receiver, created in sorted(oldest.items()):
            age.add_metric([receiver], max(0.0, (now - created).total_seconds()))
        yield age
        failures = CounterMetricFamily("auditwatch_alerts_delivery_failures",
                                       "Delivery attempts that failed (retried or given up), by receiver.",
                                       labels=["receiver"])
        for receiver, count in sorted(state.delivery_failures.items()):
            failures.add_metric([receiver], count)
        yield failures
        if state.last_checkpoint_at is not None:
            at = GaugeMetricFamily("auditwatch_integrity_last_checkpoint_timestamp_seconds",
                                   "When the newest signed integrity checkpoint was written (Unix time).")
            at.add_metric([], state.last_checkpoint_at.timestamp())
            yield at
            checkpoint_age = GaugeMetricFamily("auditwatch_integrity_checkpoint_age_seconds",
                                               "Seconds since the newest signed integrity checkpoint.")
            checkpoint_age.add_metric([], max(0.0, (now - state.last_checkpoint_at).total_seconds()))
            yield checkpoint_age
        unsigned = GaugeMetricFamily("auditwatch_integrity_unsigned_age_seconds",
                                     "Seconds since the oldest sealed batch that no signed checkpoint covers yet was "
                                     "sealed; 0 when everything sealed is signed (a quiet system stays at 0).")
        unsigned.add_metric([], 0.0 if state.oldest_unsigned_at is None
                            else max(0.0, (now - state.oldest_unsigned_at).total_seconds()))
        yield unsigned
        if state.chain_events is not None:
            sealed = CounterMetricFamily("auditwatch_integrity_sealed_events",
                                         "Events sealed into the integrity hash chain (every stored event when "
                                         "integrity is on).")
            sealed.add_metric([], state.chain_events)
            yield sealed
        anomalies = GaugeMetricFamily("auditwatch_anomaly_incidents",
                                      "Stored anomaly incidents, by detector and severity (delta() gives new ones).",
                                      labels=["detector", "severity"])
        for (detector, severity), count in sorted(state.anomalies.items()):
            anomalies.add_metric([detector, severity], count)
        yield anomalies
        took = GaugeMetricFamily("auditwatch_state_scrape_duration_seconds",
                                 "Time the state queries of this scrape took.")
        took.add_metric([], time.perf_counter() - started)
        yield took
