"""A fresh server process draws the overview once in the background, so the first analyst does not pay for
its first reads; it records nothing and never stops the server."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from flask import Flask

import dashboard
from storage.events import EventRecord, Outcome
from storage.timescale import db
from storage.timescale.writer import EventWriter


def _mount(services, pool=None) -> Flask:
    server = Flask(f"warm-up-{uuid.uuid4().hex[:6]}")
    dashboard.mount(server, pool=pool or services.pool, authenticate=services.authenticate, audit=services.audit,
                    audit_record=services.audit_record, secret_key="test-secret")
    return server


def test_the_warm_up_draws_every_overview_widget_and_records_no_read(services, conn, caplog):
    now = datetime.now(UTC)
    EventWriter(services.pool).write([EventRecord(
        event_id=uuid.uuid4(), timestamp=now - timedelta(minutes=i), received_at=now, event_type="user_login",
        user_id=f"user{i % 3}", outcome=Outcome.FAILURE if i % 2 else Outcome.SUCCESS, source_country="GB")
        for i in range(50)])
    before = conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'query_executed'").fetchone()[0]
    with caplog.at_level(logging.DEBUG, logger="auditwatch.dashboard"):
        thread = dashboard.warm_up(_mount(services))
        thread.join(timeout=120)
    assert not thread.is_alive() and thread.daemon
    assert any("dashboard warmed up in" in r.getMessage() for r in caplog.records), caplog.text
    assert not any("stopped early" in r.getMessage() for r in caplog.records), caplog.text
    # The server's own reads: no analyst read them, so nothing is recorded as one.
    assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'query_executed'").fetchone()[0] == before


def test_a_database_that_does_not_answer_only_makes_the_warm_up_stop_early(services, db_url, caplog):
    pool = db.open_pool(db_url, min_size=1, max_size=2, name="warm-up-test")
    server = _mount(services, pool)
    pool.close()  # every read now fails at once
    with caplog.at_level(logging.INFO, logger="auditwatch.dashboard"):
        thread = dashboard.warm_up(server)
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert any("dashboard warm-up stopped early" in r.getMessage() and "first view will be slower" in r.getMessage()
               for r in caplog.records), caplog.text
