"""The Operations page renders the platform's stored state: schema, leader, checkpoint, outbox, anomalies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dash
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditwatch.app import create_app
from dashboard.pages import ops
from storage.timescale import sealing
from storage.timescale.leader import AdvisoryLeader
from tests.dashboard.conftest import components_of, text_of


def tiles(page) -> dict[str, str]:
    return {text_of(c.children[0]): c.to_plotly_json()["props"]["data-ok"] for c in components_of(page)
            if "aw-ops-tile" in (getattr(c, "className", "") or "").split()}


@pytest.fixture
def ops_app(settings, services):
    app = create_app(settings, services=services)
    app.testing = True
    return app


def test_an_unhealthy_platform_shows_red_tiles_with_what_is_wrong(ops_app, conn):
    conn.execute("INSERT INTO alert_notifications (receiver, group_key, kind, payload, created_at, next_attempt_at) "
                 "VALUES ('slack', 'g', 'firing', '{}', now() - interval '30 minutes', now())")
    with ops_app.test_request_context("/dashboard/ops"):
        page = ops.layout(now=datetime.now(UTC))
    state = tiles(page)
    assert state == {"Database schema": "true", "Analytics leader": "false", "Integrity checkpoint": "false",
                     "Alert outbox": "false"}
    text = text_of(page)
    assert "no worker scores anomalies" in text and "never" in text
    assert "1 waiting" in text and "oldest 30 min" in text
    assert "slack pending 1 30 min" in text
    assert "No anomalies stored." in text


def test_a_healthy_platform_shows_the_leader_checkpoint_and_stored_state(ops_app, pool, conn, db_url):
    now = datetime.now(UTC)
    sealing.write_checkpoint(pool, Ed25519PrivateKey.generate(), now=now - timedelta(minutes=2), force=True)
    conn.execute("INSERT INTO anomalies (detector, detector_version, entity_type, entity_value, window_start, "
                 "window_end, score, severity) VALUES ('volume', 'v1', 'user', 'alice', now() - interval '2 hours', "
                 "now() - interval '1 hour', 0.99, 'high')")
    holder = AdvisoryLeader(db_url, name="worker-under-test")
    try:
        assert holder.is_leader()
        with ops_app.test_request_context("/dashboard/ops"):
            page = ops.layout(now=now)
    finally:
        holder.release()
    assert set(tiles(page).values()) == {"true"}
    text = text_of(page)
    assert "worker-under-test" in text and "2 min ago" in text
    assert "volume high 1" in text and "Nothing waits for delivery." in text
    assert any(p["path"] == "/ops" for p in dash.page_registry.values())
