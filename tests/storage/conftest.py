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
def scratch_url(server_url):
    """The URL of an empty database of its own, dropped afterwards (for schemas older than the code's)."""
    import psycopg
    from psycopg import sql

    from tests.conftest import _url_with_db

    name = f"aw_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _url_with_db(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


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
