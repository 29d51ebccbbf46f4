"""A dispatcher killed between sending and recording: the next one neither loses nor doubles a page."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from storage.events import EventRecord, Outcome
from storage.timescale import outbox
from tests.alerts.conftest import T0, make_rig, seconds
from tests.conftest import ROOT


@pytest.mark.parametrize("receiver", ["pagerduty", "slack-oncall"])
def test_a_crash_mid_delivery(pool, tmp_path, fakes, db_url, receiver):
    slack, pd = fakes
    # One remote receiver at a time (plus the local sink), so the held request is the one in flight.
    rig = make_rig(pool, tmp_path, slack if receiver == "slack-oncall" else None,
                   pd if receiver == "pagerduty" else None)
    server, path = (pd, "/v2/enqueue") if receiver == "pagerduty" else (slack, "/api/chat.postMessage")
    rig.write([EventRecord(event_id=uuid.uuid4(), timestamp=T0 - seconds(30 - i), received_at=T0,
                           event_type="user_login", user_id="victim", outcome=Outcome.FAILURE) for i in range(12)])
    rig.evaluate(T0)
    rig.evaluate(T0 + seconds(10))
    # The receiver takes the request in and never answers; the dispatcher is killed while it waits.
    held = server.hold_next(path)
    values = {k: str(v) if k == "sink_path" else v for k, v in dataclasses.asdict(rig.receivers).items()}
    child = subprocess.Popen([sys.executable, "-m", "tests.alerts.crash_child", db_url, json.dumps(values),
                              (T0 + seconds(10)).isoformat()], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        server.wait_for(1, timeout=30)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        held.set()
    note = outbox.notifications(rig.pool, receiver=receiver)[0]
    assert note.status == "sending"  # sent, never recorded
    if receiver == "pagerduty":
        assert pd.actions() == ["trigger"]
    else:
        assert len(slack.messages) == 1, [(r["path"], r["status"], r["body"]) for r in slack.requests]

    assert rig.dispatch(T0 + seconds(30)).delivered == []  # still leased: nobody else touches it
    result = rig.dispatch(T0 + seconds(75))  # lease (60 s) over: the next dispatcher takes it
    note = outbox.notifications(rig.pool, receiver=receiver)[0]
    assert note.status == "delivered"
    if receiver == "pagerduty":
        # Sent again with the same dedup_key: PagerDuty folds it into the one open incident.
        assert pd.actions() == ["trigger", "trigger"] and len(pd.incidents) == 1
        assert pd.incidents[note.payload["alerts"][0]["fingerprint"]]["opened"] == 1
        assert note.notification_id in result.delivered
    else:
        # Found in the channel by its message metadata: not posted a second time.
        assert len(slack.messages) == 1 and note.notification_id in result.confirmed
    assert all(n.status == "delivered" for n in outbox.notifications(rig.pool))
    assert rig.dispatch(T0 + seconds(300)).delivered == []
