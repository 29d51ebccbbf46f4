"""Prometheus metrics of the ingest paths: HTTP/OTLP/syslog batches, the syslog listener and the bus writer.

Definitions live here; the code being measured makes one-line calls. Every metric the API's gunicorn
workers touch has labels, so its samples are created after fork, in multiprocess mode (auditwatch/metrics.py).
The listener's and the writer's own counters (``ListenerStats``, ``WriterStats``) are read at scrape time by
collectors, so those hot loops are not touched at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
T = TypeVar("T")

# Latency buckets for one request or batch: 1 ms .. 30 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVENTS_ACCEPTED = Counter("auditwatch_ingest_events_accepted_total",
                          "Events stored (new) by the ingest pipeline.", ["channel"])
EVENTS_DUPLICATE = Counter("auditwatch_ingest_events_duplicate_total",
                           "Events already stored with the same event_id (R5), acknowledged without a new row.",
                           ["channel"])
EVENTS_REJECTED = Counter("auditwatch_ingest_events_rejected_total",
                          "Events refused, by the error code the sender sees.", ["channel", "code"])
BATCH_SECONDS = Histogram("auditwatch_ingest_batch_duration_seconds",
                          "Time to validate, enrich and store one batch (one request or one syslog batch).",
                          ["channel"], buckets=LATENCY_BUCKETS)


def channel_of(principal: str) -> str:
    """The path a batch came in on, from its context: syslog and the CLI name themselves, the rest is HTTP."""
    if principal == "syslog":
        return "syslog"
    if principal.startswith("cli:") or principal == "seed-demo":
        return "cli"
    return "http"


@dataclass(frozen=True)
class BatchCounts:
    """What one batch did, as the metrics count it: new events, duplicates, refusals by code, its duration. Small
    and picklable, so a syslog store worker can send it to the listener process, whose ops port counts it."""

    accepted: int
    duplicates: int
    rejected: dict[str, int]
    seconds: float

    @classmethod
    def of(cls, result: Any, seconds: float) -> BatchCounts:
        accepted = duplicates = 0
        rejected: dict[str, int] = {}
        for r in result.results:
            if r.status == "created":
                accepted += 1
            elif r.status == "duplicate":
                duplicates += 1
            elif r.error is not None:
                rejected[r.error.code] = rejected.get(r.error.code, 0) + 1
        return cls(accepted, duplicates, rejected, seconds)

    def record(self, channel: str) -> None:
        BATCH_SECONDS.labels(channel).observe(self.seconds)
        for code, n in self.rejected.items():
            EVENTS_REJECTED.labels(channel, code).inc(n)
        if self.accepted:
            EVENTS_ACCEPTED.labels(channel).inc(self.accepted)
        if self.duplicates:
            EVENTS_DUPLICATE.labels(channel).inc(self.duplicates)


def record_batch(channel: str, result: T, started: float) -> T:
    """Count one ``BatchResult`` (accepted, duplicates, rejected by code) and its latency since ``started``;
    returns it, so the pipeline can hand it on in the same line."""
    BatchCounts.of(result, time.perf_counter() - started).record(channel)
    return result


# -- the syslog listener ---------------------------------------------------------------------------------

class SyslogCollector(Collector):
    """``ListenerStats`` and the queue depth at scrape time (the listener counts; nothing else is added)."""

    def __init__(self, listener: Any) -> None:
        self._listener = listener

    def collect(self) -> Iterator:
        refresh = getattr(self._listener, "refresh_kernel_drops", None)
        if refresh is not None:
            refresh()
        stats = self._listener.stats
        for name, value, doc in (
            ("auditwatch_syslog_messages_received", stats.received, "Syslog messages received (all transports)."),
            ("auditwatch_syslog_messages_stored", stats.handled, "Syslog messages handed to the store and stored."),
            ("auditwatch_syslog_udp_dropped", stats.dropped, "UDP datagrams dropped because the queue was full."),
            ("auditwatch_syslog_udp_kernel_dropped", stats.udp_kernel_dropped,
             "UDP datagrams the kernel dropped because the socket's receive buffer was full (/proc/net/udp)."),
            ("auditwatch_syslog_oversized", stats.oversized,
             "Messages over syslog_max_message_bytes (UDP: cut; TCP: skipped)."),
            ("auditwatch_syslog_connections_refused", stats.refused_connections,
             "TCP/TLS connections refused at syslog_max_connections."),
            ("auditwatch_syslog_store_failures", stats.failed_batches, "Batches whose store attempt failed (retried)."),
            ("auditwatch_syslog_unstorable", stats.unstorable,
             "Messages neither the parser nor the raw fallback could store (logged)."),
            ("auditwatch_syslog_store_workers_replaced", stats.executors_replaced,
             "Times the store worker processes were replaced because one died (syslog_processes >= 2); "
             "its batches were retried."),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        queue = getattr(self._listener, "_queue", None)
        depth = GaugeMetricFamily("auditwatch_syslog_queue_messages", "Messages waiting to be stored.")
        depth.add_metric([], queue.qsize() if queue is not None else 0)
        yield depth


# -- the bus writer ----------------------------------------------------------------------------------------

BUS_PENDING = Gauge("auditwatch_bus_pending_messages",
                    "Messages in the work queue not yet delivered to a writer (the writers' lag in messages, of up to "
                    "500 events each).")
BUS_ACK_PENDING = Gauge("auditwatch_bus_ack_pending_messages",
                        "Messages delivered to a writer and not yet acknowledged.")
BUS_DEADLETTERS = Gauge("auditwatch_bus_deadletter_messages", "Messages waiting in the dead-letter stream.")
BUS_OLDEST_PENDING = Gauge("auditwatch_bus_lag_seconds",
                           "Age of the oldest message still in the work queue (0 when it is empty).")
_BUS_EVERY = 5.0
_bus_checked = [0.0]


class WriterCollector(Collector):
    """``WriterStats`` at scrape time."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def collect(self) -> Iterator:
        stats = self._writer.stats
        for name, value, doc in (
            ("auditwatch_bus_writer_events_stored", stats.stored, "Events the bus writer stored (new rows)."),
            ("auditwatch_bus_writer_events_duplicate", stats.duplicates, "Events the writer found already stored."),
            ("auditwatch_bus_writer_retries", stats.retried, "Messages handed back for redelivery after a failure."),
            ("auditwatch_bus_dead_lettered", stats.dead_lettered, "Messages moved to the dead-letter stream."),
            ("auditwatch_bus_writer_events_split", stats.split,
             "Events that failed inside a message of many and were re-published alone (R10 then applies to each)."),
            ("auditwatch_bus_writer_messages_signed", stats.signed,
             "Messages whose node's signature verified: stored as the node checked them, not re-validated."),
            ("auditwatch_bus_writer_bad_signatures", stats.bad_signatures,
             "Messages whose signature did not verify (keys differ between nodes and writers, or altered): "
             "re-validated instead."),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family


async def observe_bus(js: Any, sub: Any, config: Any, *, now: float | None = None) -> None:
    """Every few seconds, the work queue's lag and the dead-letter depth from JetStream (the writer's loop calls).

    A broker that does not answer leaves the gauges as they were: the writer's own loop reports that.
    """
    now = time.monotonic() if now is None else now
    if now - _bus_checked[0] < _BUS_EVERY:
        return
    _bus_checked[0] = now
    try:
        await _read_bus(js, sub, config)
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        log.warning("metrics: could not read the bus's lag (%s)", exc.__class__.__name__)


async def _read_bus(js: Any, sub: Any, config: Any) -> None:
    info = await sub.consumer_info()
    BUS_PENDING.set(info.num_pending or 0)
    BUS_ACK_PENDING.set(info.num_ack_pending or 0)
    dead = await js.stream_info(config.deadletter_stream)
    BUS_DEADLETTERS.set(dead.state.messages or 0)
    work = await js.stream_info(config.stream)
    if work.state.messages:
        oldest = await js.get_msg(config.stream, seq=work.state.first_seq)
        BUS_OLDEST_PENDING.set(max(0.0, time.time() - _timestamp(oldest)))
    else:
        BUS_OLDEST_PENDING.set(0)


def _timestamp(msg: Any) -> float:
    """When JetStream stored a message (nats-py parses its ``time`` into a datetime), as a Unix time."""
    stamp = getattr(msg, "time", None)
    return stamp.timestamp() if stamp is not None else time.time()
