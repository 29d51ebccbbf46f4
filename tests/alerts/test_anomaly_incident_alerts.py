"""Anomaly incidents through the real alerting path: a growing incident pages once, and a critical
anomaly on an entity does not page a second time as a high one."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from alerts import actions
from alerts.lifecycle import fingerprint
from storage.events import EventRecord, Outcome
from tests.alerts.conftest import T0, insert_anomaly, seconds

ENTITY = {"entity_type": "user", "entity_value": "carol"}


def _sink(rig) -> list[dict]:
    path = rig.receivers.sink_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _firing_in_sink(rig) -> list[tuple[str, str]]:
    return [(a["rule_id"], n["receiver"]) for n in _sink(rig) for a in n["alerts"] if a["status"] == "firing"]


def test_a_critical_anomaly_pages_once_not_also_as_high(rig, fakes):
    slack, pd = fakes
    insert_anomaly(rig.pool, detector="login_volume", **ENTITY, window_start=T0 - timedelta(minutes=10),
                   window_end=T0 - timedelta(minutes=1), score=0.97, severity="critical", summary="41 failures")
    for step in range(4):
        rig.tick(T0 + seconds(10 * step))
    assert len(pd.incidents) == 1
    assert pd.actions(fingerprint("critical_anomaly", ENTITY)) == ["trigger"]
    assert slack.in_channel("#sec-alerts") == []  # the high alert on the same entity is inhibited
    assert {rule for rule, _ in _firing_in_sink(rig)} == {"critical_anomaly"}


def test_an_incident_that_grows_into_critical_is_one_page_and_the_high_is_muted(rig, fakes):
    slack, pd = fakes
    insert_anomaly(rig.pool, detector="login_volume", **ENTITY, window_start=T0 - timedelta(minutes=10),
                   window_end=T0 - timedelta(minutes=1), score=0.85, severity="high", summary="first")
    for step in range(3):
        rig.tick(T0 + seconds(10 * step))
    assert len(slack.in_channel("#sec-alerts")) == 1 and pd.incidents == {}
    # The incident grows (a later, overlapping window scores critical): the same incident, now critical.
    later = T0 + timedelta(minutes=5)
    insert_anomaly(rig.pool, detector="login_volume", **ENTITY, window_start=T0 - timedelta(minutes=5),
                   window_end=later - timedelta(minutes=1), score=0.97, severity="critical", summary="peak")
    for step in range(4):
        rig.tick(later + seconds(10 * step))
    assert len(pd.incidents) == 1
    stored = actions.list_alerts(rig.pool, states=["firing"], now=later)
    assert {a.rule_id for a in stored} <= {"critical_anomaly", "high_anomaly"}
    assert len(slack.in_channel("#sec-alerts")) == 1  # no second warning message about carol
    assert len(slack.in_channel("#sec-oncall")) == 1


def test_a_growing_incident_with_quiet_gaps_does_not_page_again(rig, fakes):
    slack, pd = fakes
    fp = fingerprint("critical_anomaly", ENTITY)
    # Half-hour windows of one incident, each scored critical as it ends, 40 quiet minutes apart (under the
    # merge gap): one incident that grows, quiet for 55 minutes at a time as far as the 15-minute lookback sees.
    for k in range(3):
        end = T0 + timedelta(minutes=70 * k)
        insert_anomaly(rig.pool, detector="login_volume", **ENTITY, window_start=end - timedelta(minutes=30),
                       window_end=end, score=0.97, severity="critical", summary=f"window {k}")
        for step in range(0, 70 * 60, 60):  # the evaluator every minute until the next window ends
            rig.tick(end + seconds(step))
    [incident] = [a for a in actions.list_alerts(rig.pool, now=T0 + timedelta(minutes=210))
                  if a.rule_id == "critical_anomaly"]
    assert incident.state == "firing"
    assert pd.actions(fp) == ["trigger"]  # no resolve and trigger again at each quiet gap
    assert len(slack.in_channel("#sec-oncall")) == 1


def test_a_spray_and_the_critical_anomaly_about_the_same_address_page_once(rig, fakes):
    """Seen live on `make up`: the spraying rule and the detectors' critical anomaly on the same address were
    two pages for one attack."""
    slack, pd = fakes
    ip = "203.0.113.9"
    rig.write([EventRecord(event_id=uuid.uuid4(), timestamp=T0 - seconds(300 - i * 4), received_at=T0,
                           event_type="user_login", user_id=f"u{i}", outcome=Outcome.FAILURE, source_ip=ip)
               for i in range(60)])
    insert_anomaly(rig.pool, detector="password_spraying", entity_type="source_ip", entity_value=ip,
                   window_start=T0 - timedelta(minutes=10), window_end=T0 - timedelta(minutes=1), score=0.99,
                   severity="critical", summary="60 accounts from one address")
    for step in range(4):
        rig.tick(T0 + seconds(10 * step))
    firing = {a.rule_id for a in actions.list_alerts(rig.pool, states=["firing"], now=T0)}
    assert {"password_spraying", "critical_anomaly"} <= firing  # both stay visible on the alerts page
    assert list(pd.incidents) == [fingerprint("password_spraying", {"source_ip": ip})]
    assert len(slack.in_channel("#sec-oncall")) == 1
    assert {rule for rule, _ in _firing_in_sink(rig)} >= {"password_spraying"}


def test_a_critical_anomaly_about_another_address_still_pages(rig, fakes):
    _slack, pd = fakes
    rig.write([EventRecord(event_id=uuid.uuid4(), timestamp=T0 - seconds(300 - i * 4), received_at=T0,
                           event_type="user_login", user_id=f"u{i}", outcome=Outcome.FAILURE,
                           source_ip="203.0.113.9") for i in range(60)])
    insert_anomaly(rig.pool, detector="password_spraying", entity_type="source_ip", entity_value="198.51.100.4",
                   window_start=T0 - timedelta(minutes=10), window_end=T0 - timedelta(minutes=1), score=0.99,
                   severity="critical", summary="another address")
    for step in range(4):
        rig.tick(T0 + seconds(10 * step))
    assert set(pd.incidents) == {fingerprint("password_spraying", {"source_ip": "203.0.113.9"}),
                                 fingerprint("critical_anomaly", {"entity_type": "source_ip",
                                                                  "entity_value": "198.51.100.4"})}
