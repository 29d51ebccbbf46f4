"""Storage fixtures: a pool on the test's fresh database and a factory for events."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from storage.events import EventRecord, Outcome

# A fixed clock: every event time in these tests is relative to it.
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)



@pytest.fixture
def make_event():
    """Build an EventRecord; every field has a sensible default and can be overridden."""
    counter = itertools.count()

    def make(**fields) -> EventRecord:
        n = next(counter)
        defaults = {
            "event_id": uuid.uuid4(),
            "timestamp": T0 - timedelta(minutes=n),
            "event_type": "user_login",
            "user_id": "alice",
            "received_at": T0,
            "outcome": Outcome.SUCCESS,
        }
        return EventRecord(**{**defaults, **fields})

    return make


@pytest.fixture
def key():
    """A fresh Ed25519 checkpoint signing key."""
    from storage.integrity import checkpoints

    return checkpoints.generate()


@pytest.fixture
def check(pool, key):
    """Run verify with the test key trusted; returns the report."""
    from storage.integrity import checkpoints
    from storage.timescale import verify

    def run(**kwargs) -> verify.VerifyReport:
        return verify.verify(pool, trusted_keys=[checkpoints.public_bytes(key)], **kwargs)

    return run


def migrate_up_to(conn, version: int) -> None:
    """Apply the migrations up to ``version`` as an old release did (on an autocommit connection)."""
    from storage.timescale import migrations

    conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                 "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
    for m in migrations.available():
        if m.version <= version:
            conn.execute(m.sql)
            conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (m.version, m.name, m.checksum))
