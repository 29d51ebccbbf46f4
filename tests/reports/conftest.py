"""A seeded store for the reports: one week of a small organisation's audit trail, signed, partly archived.

Period: 2024-05-01 to 2024-05-08. Users and keys are backdated (the catalogue stamps them with the
database clock); the first three days go to the cold tier, so every report reads both tiers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from reports.source import Source
from storage.auth import Role
from storage.cold.store import ColdStore
from storage.dataapi import AuditData
from storage.events import EventRecord, Outcome
from storage.integrity import checkpoints
from storage.timescale import alerts, anomalies, archive, catalog, sealing, self_audit
from storage.timescale.writer import insert_rows_sealed, row_of

START = datetime(2024, 5, 1, tzinfo=UTC)
END = datetime(2024, 5, 8, tzinfo=UTC)
ARCHIVED_BEFORE = datetime(2024, 5, 4, tzinfo=UTC)
SPRAY_IP = "203.0.113.5"
SPRAY_FP = "fp-spray-203.0.113.5"
CLOCK = datetime(2024, 8, 20, tzinfo=UTC)  # when the platform archived and signed (after the period)


@dataclass
class Seeded:
    pool: object
    store: ColdStore
    key: object
    events: list[EventRecord]

    def source(self) -> Source:
        return Source(AuditData(self.pool, read_only=False, cold=self.store))

    @property
    def trusted(self) -> frozenset[bytes]:
        return frozenset({checkpoints.public_bytes(self.key)})


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n, version=4)


def trail() -> list[EventRecord]:
    """The week's events, deterministic."""
    out: list[EventRecord] = []

    def add(at: datetime, event_type: str, user: str, outcome: str = "success", **fields) -> None:
        out.append(EventRecord(event_id=_id(len(out) + 1), timestamp=at, event_type=event_type, user_id=user,
                               received_at=at + timedelta(seconds=2), outcome=Outcome(outcome), **fields))

    for day in range(7):
        midnight = START + timedelta(days=day)
        for i, user in enumerate(("alice", "bob", "carol")):
            add(midnight + timedelta(hours=8 + i, minutes=5), "user_login", user, source="sso",
                source_ip=f"10.0.0.{i + 1}")
        add(midnight + timedelta(hours=9), "user_login", "alice", "failure", source="sso", source_ip="10.0.0.1")
        for h in range(0, 24, 2):
            if day == 4 and 2 <= h < 14:  # hr-app went quiet for 12 hours on 2024-05-05
                continue
            add(midnight + timedelta(hours=h, minutes=30), "record_updated", "bob", source="hr-app",
                resource_id=f"employee-{h}")
        add(midnight + timedelta(hours=10), "file_download", "apikey:ingest-key", source="sync",
            resource_id=f"batch-{day}")
    # The spray of 2024-05-02 08:00-08:45: 30 failures over 6 accounts from one address, then a lockout.
    targets = ("alice", "bob", "carol", "dave", "frank", "grace")
    for i in range(30):
        add(datetime(2024, 5, 2, 8, tzinfo=UTC) + timedelta(minutes=i * 1.5), "user_login", targets[i % 6],
            "failure", source="sso", source_ip=SPRAY_IP, metadata={"reason": "bad_password"})
    add(datetime(2024, 5, 2, 8, 46, tzinfo=UTC), "user_login", "bob", "failure", source="sso",
        source_ip=SPRAY_IP, metadata={"reason": "account_locked"})
    for i in range(4):
        add(datetime(2024, 5, 6, 14, i, tzinfo=UTC), "user_login", "bob", "failure", source="sso",
            source_ip="198.51.100.7", metadata={"reason": "bad_password"})
    # Privileged changes: two at night.
    add(datetime(2024, 5, 3, 3, 12, tzinfo=UTC), "permission_change", "carol", source="admin-console",
        resource_id="bob", metadata={"granted": "admin", "target_user": "bob"})
    add(datetime(2024, 5, 3, 10, 0, tzinfo=UTC), "permission_change", "carol", source="admin-console",
        resource_id="bob", metadata={"revoked": "admin", "target_user": "bob"})
    add(datetime(2024, 5, 5, 2, 0, tzinfo=UTC), "config_change", "carol", source="admin-console",
        resource_id="audit.retention", metadata={"setting": "audit.retention_days", "before": "365", "after": "30"})
    add(datetime(2024, 5, 6, 11, 0, tzinfo=UTC), "config_change", "carol", source="admin-console",
        metadata={"setting": "sso.mfa_required", "before": "false", "after": "true"})
    # Sensitive data: HR exports of employees (PII), alice's queries of patient records (PHI), and an untagged one.
    for day, rows in ((2, 1200), (5, 800)):
        add(START + timedelta(days=day, hours=15), "data_export", "bob", source="hr-app",
            metadata={"dataset": "employees", "rows": rows, "format": "csv"})
    for minute in (0, 10, 20):
        add(datetime(2024, 5, 6, 16, minute, tzinfo=UTC), "data_query", "alice", source="ehr",
            resource_id="patient_records", metadata={"rows": 5})
    add(datetime(2024, 5, 6, 17, 0, tzinfo=UTC), "data_export", "alice", source="erp",
        metadata={"dataset": "general_ledger", "rows": 50})
    # Outside the period: must not count.
    add(datetime(2024, 4, 30, 23, 0, tzinfo=UTC), "permission_change", "carol", source="admin-console",
        metadata={"granted": "auditor", "target_user": "alice"})
    add(datetime(2024, 5, 8, 0, 30, tzinfo=UTC), "user_login", "alice", "failure", source="sso", source_ip=SPRAY_IP)
    return out


def _seed_catalogue(pool) -> None:
    catalog.register_users(pool, [{"user_id": u, "department": d} for u, d in (
        ("alice", "finance"), ("bob", "hr"), ("carol", "it_admin"), ("dave", "sales"), ("erin", "sales"))],
        registered_by="tests")
    for name, role in (("ingest-key", Role.SYSTEM), ("admin-old", Role.ADMIN), ("auditor-1", Role.AUDITOR),
                       ("late-key", Role.VIEWER)):
        catalog.create_key(pool, name, role, created_by="tests")
    with pool.connection() as conn:  # backdate what the catalogue stamped with the database clock
        conn.execute("UPDATE users SET created_at = '2024-01-02T00:00:00Z'")
        conn.execute("UPDATE users SET disabled_at = '2024-04-01T00:00:00Z' WHERE user_id = 'erin'")
        conn.execute("UPDATE api_keys SET created_at = '2024-01-02T00:00:00Z'")
        conn.execute("UPDATE api_keys SET revoked_at = '2024-05-03T00:00:00Z' WHERE name = 'auditor-1'")
        conn.execute("UPDATE api_keys SET created_at = '2024-06-01T00:00:00Z' WHERE name = 'late-key'")


def _seed_detection(pool) -> None:
    frame = pl.DataFrame([{
        "detector": "password_spraying", "detector_version": "1", "entity_type": "source_ip",
        "entity_value": SPRAY_IP, "window_start": datetime(2024, 5, 2, 8, tzinfo=UTC),
        "window_end": datetime(2024, 5, 2, 9, tzinfo=UTC), "score": 0.99, "severity": "high",
        "explanation": '{"summary": "30 failed sign-ins over 6 accounts"}', "sample_event_ids": []}],
        schema={"detector": pl.String, "detector_version": pl.String, "entity_type": pl.String,
                "entity_value": pl.String, "window_start": pl.Datetime("us", "UTC"),
                "window_end": pl.Datetime("us", "UTC"), "score": pl.Float64, "severity": pl.String,
                "explanation": pl.String, "sample_event_ids": pl.List(pl.String)})
    anomalies.upsert(pool, frame, detected_at=datetime(2024, 5, 2, 9, 1, tzinfo=UTC))
    started = datetime(2024, 5, 2, 9, 2, tzinfo=UTC)
    row = alerts.AlertRow(
        fingerprint=SPRAY_FP, rule_id="password_spraying", title="Password spraying from 203.0.113.5",
        severity="critical", state="resolved", labels={}, group_values={"entity_type": "source_ip",
                                                                    "entity_value": SPRAY_IP},
        started_at=started, updated_at=datetime(2024, 5, 2, 12, tzinfo=UTC), firing_at=started,
        resolved_at=datetime(2024, 5, 2, 12, tzinfo=UTC), value=30, count=1, acknowledged_by="carol",
        acknowledged_at=datetime(2024, 5, 2, 9, 20, tzinfo=UTC))
    with pool.connection() as conn, conn.transaction():
        alerts.save_alert(conn, row)
        for at, before, after in ((started, None, "firing"), (datetime(2024, 5, 2, 12, tzinfo=UTC), "firing",
                                                              "resolved")):
            alerts.add_history(conn, row, at=at, from_state=before, to_state=after)


@pytest.fixture
def seeded(pool, tmp_path: Path) -> Seeded:
    events = trail()
    with pool.connection() as conn, conn.transaction():
        insert_rows_sealed(conn, [row_of(e) for e in events])
    _seed_catalogue(pool)
    _seed_detection(pool)
    store = ColdStore(tmp_path / "archive")
    result = archive.run(pool, store, now=ARCHIVED_BEFORE + timedelta(days=90), hot_days=90,
                         audit=self_audit.auditor("tests", lambda: CLOCK))
    assert result.rows > 0, "the seed must put part of the period in the cold tier"
    key = checkpoints.generate()
    assert sealing.write_checkpoint(pool, key, now=CLOCK) is not None
    return Seeded(pool, store, key, events)
