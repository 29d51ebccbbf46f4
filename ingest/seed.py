"""A labelled demo history in the store, through the real ingest pipeline.

For notebooks and CI pointed at an empty database: the same validation, redaction and
enrichment as ``auditwatch ingest`` (a backfill), then a rollup refresh so series and
detectors see it at once. The demo generator is seeded, so the same arguments give the same
events (re-seeding reports duplicates and changes nothing) and the same injected incidents.
``auditwatch seed-demo`` passes the server's own pipeline; a notebook passes only a pool and
gets the default one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg_pool import ConnectionPool

from ingest.demo import DemoTraffic
from ingest.enrich import geo_lookup
from ingest.pipeline import IngestPipeline, IngestPolicy, RequestContext
from ingest.redact import DEFAULT_SENSITIVE_KEYS, Redactor
from storage.incidents import Incident
from storage.timescale import catalog, rollups
from storage.timescale.writer import EventWriter

BATCH = 5000


@dataclass(frozen=True)
class SeedResult:
    accepted: int
    duplicates: int
    rejected: int
    incidents: list[Incident]


def demo_incidents(traffic: DemoTraffic, start: datetime, end: datetime) -> list[Incident]:
    """The attacks the generator injected in [start, end): the labels for a backtest.

    An attack counts when at least one of its events is inside the range. A range that ends a minute into an
    attack's window may hold none of it yet (the permission change of 01:40-01:45 happens at 01:43), and a
    label for events that were never stored is a miss no detector could avoid."""
    found = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        for incident in traffic.incidents(day):
            if incident.end <= start or incident.start >= end:
                continue
            inside = start <= incident.start and incident.end <= end
            if inside or any(start <= t < end for t in traffic.injected_times(incident)):
                found.append(incident)
        day += timedelta(days=1)
    return sorted(found, key=lambda i: i.start)


def demo_labels(*, start: datetime, end: datetime, seed: int = 7, users: int = 300,
                service_accounts: int = 8) -> list[Incident]:
    """The demo's incidents in [start, end): the labels ``analytics.evaluation`` scores against."""
    traffic = DemoTraffic(seed=seed, users=users, service_accounts=service_accounts)
    return demo_incidents(traffic, start, end)


def default_pipeline(pool: ConnectionPool) -> IngestPipeline:
    """The ingest pipeline with default policy and redaction, writing straight to the store."""
    return IngestPipeline(pool=pool, committer=EventWriter(pool), geo=geo_lookup(None),
                          redactor=Redactor(DEFAULT_SENSITIVE_KEYS), policy=IngestPolicy())


def seed_demo(pool: ConnectionPool, *, start: datetime, end: datetime, now: datetime, seed: int = 7,
              users: int = 300, service_accounts: int = 8, pipeline: IngestPipeline | None = None,
              progress: Callable[[datetime], None] | None = None) -> SeedResult:
    """Store the demo events of [start, end) and refresh the rollups up to ``now``.

    ``pipeline`` defaults to ``default_pipeline(pool)``; ``progress`` is called with the end of
    each generated hour.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("give start and end with a time zone (UTC)")
    if start >= end:
        raise ValueError("the seed range is empty: start must be before end")
    if end > now:
        raise ValueError("the demo history cannot reach into the future (R2): end must be at or before now")
    if users < 60:
        raise ValueError("the demo needs at least 60 users (password spraying targets 60 accounts)")
    traffic = DemoTraffic(seed=seed, users=users, service_accounts=service_accounts)
    pipeline = pipeline or default_pipeline(pool)
    catalog.register_users(pool, [u.registration() for u in traffic.users], "seed-demo")
    ctx = RequestContext(principal="seed-demo", backfill=True, rate_limited=False, source="demo")
    totals = [0, 0, 0]
    batch: list[dict] = []

    def flush() -> None:
        result = pipeline.ingest(batch, ctx)
        totals[0] += result.accepted
        totals[1] += result.duplicates
        totals[2] += result.rejected
        batch.clear()

    hour = start
    while hour < end:
        following = min(hour.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1), end)
        batch.extend(traffic.events(hour, following))
        if len(batch) >= BATCH:
            flush()
        if progress:
            progress(following)
        hour = following
    if batch:
        flush()
    rollups.refresh(pool, now=now)
    return SeedResult(*totals, incidents=demo_incidents(traffic, start, end))
