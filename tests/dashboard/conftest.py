"""Dashboard fixtures: a seeded database, keys per role, and (for browser tests) a live server + Chromium."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from storage.auth import Role
from storage.events import EventRecord, Outcome
from storage.timescale import catalog, db, rollups
from storage.timescale.writer import EventWriter
from tests.conftest import ROOT, fresh_database, start_server

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TYPES = ("user_login", "file_download", "data_export", "user_logout", "permission_change")


@dataclass
class Seeded:
    url: str
    now: datetime
    events: list[EventRecord]
    attacker: str = "mallory"
    attacker_ip: str = "203.0.113.66"
    anomaly_id: uuid.UUID | None = None

    def count(self, since: datetime, **match) -> int:
        return sum(1 for e in self.events if e.timestamp >= since and all(getattr(e, k) == v
                                                                          for k, v in match.items()))


def components_of(component: Any) -> Iterator[Any]:
    """Every Dash component in a rendered tree, parents before their children."""
    if isinstance(component, list | tuple):
        for c in component:
            yield from components_of(c)
    elif hasattr(component, "children"):
        yield component
        yield from components_of(component.children)


def text_of(component: Any) -> str:
    """Every string in a rendered Dash component tree, in order."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(text_of(c) for c in component)
    return text_of(getattr(component, "children", None))


def seed_events(now: datetime, n: int = 1200) -> list[EventRecord]:
    """A day of ordinary traffic from twelve users plus a failed-login burst by one attacker IP."""
    events = []
    for i in range(n):
        at = now - timedelta(seconds=30) - timedelta(seconds=(i * 71) % 86_000)
        user = f"user{(i * 7) % 12:02d}"
        events.append(EventRecord(
            event_id=uuid.uuid5(uuid.NAMESPACE_OID, f"seed-{i}"), timestamp=at, event_type=TYPES[i % len(TYPES)],
            user_id=user, received_at=at + timedelta(milliseconds=150 + i % 700),
            outcome=Outcome.FAILURE if i % 17 == 0 else Outcome.SUCCESS, source="seed",
            source_ip=f"81.2.69.{10 + i % 20}", source_country="GB" if i % 3 else "DE",
            metadata={"dataset": ("crm", "hr", "billing")[i % 3], "seq": i}))
    for i in range(60):
        at = now - timedelta(minutes=50) + timedelta(seconds=20 * i)
        events.append(EventRecord(
            event_id=uuid.uuid5(uuid.NAMESPACE_OID, f"attack-{i}"), timestamp=at, event_type="user_login",
            user_id="mallory", received_at=at + timedelta(milliseconds=80), outcome=Outcome.FAILURE,
            source="seed", source_ip="203.0.113.66", source_country="US", metadata={"reason": "bad_password"}))
    return events


def insert_anomaly(conn: psycopg.Connection, now: datetime, *, entity: str = "mallory", score: float = 0.93,
                   sample: list[uuid.UUID] | None = None) -> uuid.UUID:
    """One anomaly row in the 0007 shape, as the analytics jobs will write it."""
    return conn.execute(
        """INSERT INTO anomalies (detector, detector_version, entity_type, entity_value, window_start, window_end,
                                  score, severity, explanation, sample_event_ids)
           VALUES ('login_failures', '1', 'user', %s, %s, %s, %s, 'high', %s, %s) RETURNING anomaly_id""",
        (entity, now - timedelta(minutes=50), now - timedelta(minutes=30), score,
         Jsonb({"summary": f"{entity} failed 60 logins in 20 minutes from one IP",
                "observed": {"failed_logins": 60}, "expected": {"failed_logins": 0.4},
                "features": [{"name": "failed_logins", "value": 60, "contribution": 0.81},
                             {"name": "distinct_ips", "value": 1, "contribution": 0.05}]}),
         sample or []),
    ).fetchone()[0]


@pytest.fixture(scope="session")
def seeded(server_url: str, template_db: str) -> Iterator[Seeded]:
    """One seeded database per test module, rollups refreshed, one anomaly scored."""
    with fresh_database(server_url, template_db) as url:
        yield seed_database(url)


def seed_database(url: str) -> Seeded:
    """The seeded day, its rollups (leaving a raw tail, as in production) and one scored anomaly."""
    now = datetime.now(UTC)
    events = seed_events(now)
    pool = db.open_pool(url, min_size=1, max_size=4, name="dashboard-seed")
    try:
        EventWriter(pool).write(events)
        rollups.refresh(pool, now=now - timedelta(minutes=5))
    finally:
        pool.close()
    with psycopg.connect(url, autocommit=True) as conn:
        anomaly_id = insert_anomaly(conn, now, sample=[e.event_id for e in events if e.user_id == "mallory"][:3])
    return Seeded(url=url, now=now, events=events, anomaly_id=anomaly_id)


@pytest.fixture(scope="session")
def keys(seeded: Seeded) -> dict[str, str]:
    """A key string per role (and a system key the dashboard must refuse)."""
    pool = db.open_pool(seeded.url, min_size=1, max_size=2, name="dashboard-keys")
    try:
        return {role.value: catalog.create_key(pool, f"dash-{role.value}", role, "tests")[1] for role in Role}
    finally:
        pool.close()


@pytest.fixture(scope="session")
def live(seeded: Seeded, keys, tmp_path_factory: pytest.TempPathFactory):
    server = start_server(seeded.url, tmp_path_factory.mktemp("dash-server"))
    try:
        yield server
    finally:
        server.stop()


# Package scope: Playwright's sync API keeps an event loop running in this thread while it is open, which
# would break asyncio.run() in the test modules that come after the dashboard's.
@pytest.fixture(scope="package")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
