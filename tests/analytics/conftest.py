"""Analytics fixtures: a small normal history from the scenario generator, and event builders."""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from analytics import scenarios
from analytics.events import from_records, to_records
from auditwatch.cli.main import main

_ids = itertools.count()


@pytest.fixture(scope="session")
def small_dataset() -> scenarios.Dataset:
    """200 people over 8 days, attacks on the last 2 (deterministic)."""
    return scenarios.generate(users=200, days=8, attack_days=2, seed=11)


@pytest.fixture(scope="session")
def history(small_dataset) -> pl.DataFrame:
    """The attack-free part of the small dataset."""
    return small_dataset.events.filter(pl.col("timestamp") < small_dataset.attack_start)


def event(at: datetime, user: str, event_type: str = "user_login", *, outcome: str = "success",
          ip: str | None = "24.48.1.1", country: str | None = "US", asn: str | None = "AS7922",
          ua: str = "Mozilla/5.0 test", metadata: dict[str, Any] | None = None, resource: str | None = None
          ) -> dict[str, Any]:
    """One event as the ingest API takes it (with enrichment fields filled)."""
    return {"event_id": str(uuid.UUID(int=next(_ids) + (7 << 124))), "timestamp": at.isoformat(),
            "event_type": event_type, "user_id": user, "outcome": outcome, "source_ip": ip,
            "source_country": country, "source_asn": asn, "user_agent": ua, "metadata": metadata or {},
            "resource_id": resource}


def frame(*events: dict[str, Any]) -> pl.DataFrame:
    return from_records(events)


def burst(start: datetime, user: str, n: int, *, seconds: float = 90, ip: str = "185.220.1.2") -> list[dict]:
    """``n`` failed logins at ``user`` from ``ip`` within ``seconds``."""
    step = seconds / max(n, 1)
    return [event(start + timedelta(seconds=i * step), user, outcome="failure", ip=ip, country="RU",
                  asn="AS60729", ua="python-requests/2.31") for i in range(n)]


T0 = datetime(2024, 3, 12, 10, 0, tzinfo=UTC)  # after the small dataset, a Tuesday



def records(frame_: pl.DataFrame) -> list:
    """EventRecords (what the writer stores) from an analytics events frame."""
    return to_records(frame_)


@pytest.fixture(scope="session")
def tiny_dataset() -> scenarios.Dataset:
    """40 people over 4 days (no attacks injected: tests add their own)."""
    return scenarios.generate(users=40, days=4, attack_days=1, seed=5, attacks_per_day=0)


# The API tests' module-scoped app on one database (cheap parametrized checks), shared with tests/auditwatch.
from tests.auditwatch.conftest import (  # noqa: E402, F401
    role_keys,
    shared_app,
    shared_client,
    shared_db_url,
    shared_services,
    shared_settings,
)


@pytest.fixture
def run(tmp_path, monkeypatch):
    """The `auditwatch` CLI in-process, in an empty directory with no AUDITWATCH_* settings."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("AUDITWATCH_"):
            monkeypatch.delenv(name)

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return invoke
