"""A labelled demo history in the store, through the real ingest pipeline.

For notebooks and CI pointed at an empty database: the same validation, redaction and
enrichment as ``auditwatch ingest`` (a backfill), then a rollup refresh so series and
detectors see it at once. The demo generator is seeded, so the same arguments give the same
events (re-seeding reports duplicates and changes nothing) and the same injected incidents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from analytics.scenarios import Incident as LabelledIncident
from auditwatch.services import Services
from auditwatch.settings import Settings
from ingest.demo import DemoTraffic, Incident
from ingest.pipeline import RequestContext
from storage.timescale import catalog, rollups

BATCH = 5000


@dataclass(frozen=True)
class SeedResult:
    accepted: int
    duplicates: int
    rejected: int
    incidents: list[Incident]


def demo_incidents(traffic: DemoTraffic, start: datetime, end: datetime) -> list[Incident]:
    """The attacks the generator injected in [start, end): the labels for a backtest."""
    found = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        found.extend(i for i in traffic.incidents(day) if start <= i.start < end)
        day += timedelta(days=1)
    return sorted(found, key=lambda i: i.start)


def demo_labels(*, start: datetime, end: datetime, seed: int = 7, users: int = 300,
                service_accounts: int = 8) -> list[LabelledIncident]:
    """The demo's incidents in [start, end) as ``analytics`` labels (the entities an anomaly must name)."""
    traffic = DemoTraffic(seed=seed, users=users, service_accounts=service_accounts)
    return [LabelledIncident(i.scenario, i.start, i.end, frozenset(e for e in (i.user_id, i.source_ip) if e))
            for i in demo_incidents(traffic, start, end)]


def seed_demo(settings: Settings, *, start: datetime, end: datetime, now: datetime, seed: int = 7,
              users: int = 300, service_accounts: int = 8,
              progress: Callable[[datetime], None] | None = None) -> SeedResult:
    """Store the demo events of [start, end) and refresh the rollups up to ``now``.

    ``progress`` is called with the end of each generated hour.
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
    services = Services.open(settings.replace(pool_max=4, pool_min=1))
    try:
        catalog.register_users(services.pool, [u.registration() for u in traffic.users], "seed-demo")
        ctx = RequestContext(principal="seed-demo", backfill=True, rate_limited=False, source="demo")
        totals = [0, 0, 0]
        batch: list[dict] = []

        def flush() -> None:
            result = services.pipeline.ingest(batch, ctx)
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
        rollups.refresh(services.pool, now=now)
    finally:
        services.close()
    return SeedResult(*totals, incidents=demo_incidents(traffic, start, end))
