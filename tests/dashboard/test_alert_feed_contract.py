"""The alert feed end to end against a stand-in that follows the alerts.actions contract exactly.

The real package is exercised by test_alert_feed.py once it is merged; this one runs now, so the
feed's acknowledge and silence paths (and who may use them) are tested in the browser today.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ROOT, start_server
from tests.dashboard import alert_feed_scenario
from tests.dashboard.contract_alerts import AlertView, seed


@pytest.fixture(scope="module")
def contract_live(seeded, keys, tmp_path_factory):
    state = tmp_path_factory.mktemp("alerts") / "alerts.json"
    now = datetime.now(UTC)
    seed(state, [AlertView(
        fingerprint="fp-burst", rule_id="failed_login_burst", title="Failed-login burst from 203.0.113.66",
        severity="high", state="firing", labels={"team": "soc"}, group_values={"source_ip": "203.0.113.66"},
        started_at=now - timedelta(minutes=40), updated_at=now, resolved_at=None, count=60,
        acknowledged_by=None, acknowledged_until=None, silenced=False, runbook_url="https://runbooks.example/burst")])
    server = start_server(seeded.url, tmp_path_factory.mktemp("alerts-server"),
                          AUDITWATCH_DASHBOARD_ALERTS_MODULE="tests.dashboard.contract_alerts",
                          AUDITWATCH_TEST_ALERTS_FILE=str(state), PYTHONPATH=str(ROOT))
    try:
        yield server
    finally:
        server.stop()


def test_viewers_see_alerts_and_admins_acknowledge_and_silence_them(browser, contract_live, keys, seeded):
    alert_feed_scenario.run(browser, contract_live, keys, seeded, title="Failed-login burst from 203.0.113.66",
                            screenshot="11-alert-feed")
