"""Alerting fixtures: a pool on a fresh database, event writing, fake receivers, and a wired pipeline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest
from psycopg_pool import ConnectionPool

from alerts import engine
from alerts.dispatch import DispatchResult, RetryPolicy, dispatch
from alerts.engine import AlertConfig, EvaluationResult
from alerts.notifiers import Notifier, ReceiverSettings, build_notifiers, keepalive_of
from alerts.routing import load_routing
from alerts.rule_files import RuleSource, load_file
from alerts.rules import PACKAGED_RULES
from alerts.testing import FakePagerDuty, FakeSlack
from storage.events import EventRecord
from storage.timescale import anomalies
from storage.timescale.writer import EventWriter

# A fixed clock: every event and evaluation time in these tests is relative to it.
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)




def insert_anomaly(pool: ConnectionPool, *, detector: str, entity_type: str, entity_value: str,
                   window_start: datetime, window_end: datetime, score: float, severity: str,
                   summary: str = "", detector_version: str = "test") -> None:
    """One anomaly row through the one writer (``anomalies.upsert``), as a scoring job would store it."""
    frame = pl.DataFrame([{"detector": detector, "detector_version": detector_version, "entity_type": entity_type,
                           "entity_value": entity_value, "window_start": window_start, "window_end": window_end,
                           "score": score, "severity": severity, "explanation": orjson.dumps({"summary": summary}).decode(),
                           "sample_event_ids": []}],
                         schema_overrides={"sample_event_ids": pl.List(pl.String)})
    anomalies.upsert(pool, frame, detected_at=window_end)


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.close()


@pytest.fixture(scope="module")
def pagerduty(tmp_path_factory) -> Iterator[FakePagerDuty]:
    server = FakePagerDuty(tmp_path_factory.mktemp("pd"))
    yield server
    server.close()


@pytest.fixture
def fakes(slack: FakeSlack, pagerduty: FakePagerDuty):
    """Both fakes, emptied for this test."""
    for server in (slack, pagerduty):
        server.requests.clear()
        server.handled = 0
        server._script.clear()
    slack.messages.clear()
    slack.webhook_messages.clear()
    pagerduty.events.clear()
    pagerduty.incidents.clear()
    return slack, pagerduty


@dataclass
class Rig:
    """The whole alerting path on one database with the clock in the test's hands."""

    pool: ConnectionPool
    config: AlertConfig
    notifiers: dict[str, Notifier]
    receivers: ReceiverSettings
    policy: RetryPolicy = RetryPolicy(jitter=0)

    def write(self, events: list[EventRecord]) -> None:
        EventWriter(self.pool).write(events)

    def evaluate(self, now: datetime) -> EvaluationResult:
        return engine.evaluate(self.pool, self.config, now=now)

    def dispatch(self, now: datetime) -> DispatchResult:
        return dispatch(self.pool, self.notifiers, now=now, policy=self.policy, secrets=self.receivers.secrets())

    def tick(self, now: datetime) -> tuple[EvaluationResult, DispatchResult]:
        return self.evaluate(now), self.dispatch(now)


def security_rules(tmp_path: Path) -> RuleSource:
    """The packaged rules about the audited systems, without the platform-health ones: these tests run no worker
    (so no leader) and drive a clock of their own; tests/alerts/test_health_rules.py covers the health rules."""
    directory = tmp_path / "security-rules"
    directory.mkdir(exist_ok=True)
    for path in sorted(PACKAGED_RULES.glob("*.yml")):
        if load_file(path).kind != "health":
            shutil.copy(path, directory / path.name)
    return RuleSource(directory)


def make_rig(pool: ConnectionPool, tmp_path: Path, slack: FakeSlack | None, pagerduty: FakePagerDuty | None,
             **receiver_changes) -> Rig:
    values = dict(
        sink_path=tmp_path / "sink" / "notifications.jsonl",
        slack_token=FakeSlack.TOKEN if slack else "", slack_api_url=slack.url if slack else "",
        pagerduty_routing_key=FakePagerDuty.ROUTING_KEY if pagerduty else "",
        pagerduty_url=pagerduty.url if pagerduty else "",
        pagerduty_ca_bundle=str(pagerduty.ca_path) if pagerduty else "", timeout=5)
    receivers = ReceiverSettings(**{**values, **receiver_changes})
    notifiers = build_notifiers(receivers)
    config = AlertConfig(routing=load_routing(), receivers=frozenset(notifiers), rules_dir=None,
                         public_url="https://auditwatch.example.com", rules=security_rules(tmp_path),
                         keepalive=keepalive_of(notifiers))
    return Rig(pool, config, notifiers, receivers)


@pytest.fixture
def rig(pool, tmp_path, fakes) -> Rig:
    slack, pagerduty = fakes
    return make_rig(pool, tmp_path, slack, pagerduty)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)
