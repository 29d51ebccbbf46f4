"""End to end against the fake Slack and PagerDuty: burst → one incident and one message per group,
repeats suppressed, resolve once, silences and acknowledgements honoured, retries with Retry-After."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from alerts import actions
from alerts.lifecycle import fingerprint
from storage.events import EventRecord, Outcome
from storage.timescale import alerts as store
from storage.timescale import outbox, self_audit
from tests.alerts.conftest import T0, make_rig, seconds


def failures(user: str, start, n: int, spacing: float = 2.0, ip: str | None = None) -> list[EventRecord]:
    return [EventRecord(event_id=uuid.uuid4(), timestamp=start + seconds(i * spacing), received_at=start,
                        event_type="user_login", user_id=user, outcome=Outcome.FAILURE, source_ip=ip)
            for i in range(n)]


BURST_FP = fingerprint("failed_login_burst", {"user_id": "victim"})


def test_a_burst_pages_once_and_posts_once_then_resolves_once(rig, fakes):
    slack, pd = fakes
    rig.write(failures("victim", T0 - seconds(40), 20))
    rig.tick(T0)
    assert pd.events == [] and slack.messages == []  # group_wait: 10 s to gather the group
    alert = actions.list_alerts(rig.pool, now=T0)[0]
    assert (alert.fingerprint, alert.state, alert.count) == (BURST_FP, "firing", 20)

    # The burst goes on; evaluations every 10 s.
    for step in range(1, 7):
        now = T0 + seconds(10 * step)
        rig.write(failures("victim", now - seconds(9), 4))
        rig.tick(now)
    assert len(pd.incidents) == 1 and pd.incidents[BURST_FP]["opened"] == 1
    assert pd.actions(BURST_FP) == ["trigger"]
    trigger = pd.events[0]
    assert trigger["payload"]["severity"] == "critical" and "victim" in trigger["payload"]["summary"]
    assert trigger["links"][0]["href"] == f"https://auditwatch.example.com/dashboard/alerts?fingerprint={BURST_FP}"
    assert len(slack.in_channel("#sec-oncall")) == 1 and slack.in_channel("#sec-alerts") == []
    blocks = json.dumps(slack.messages[0]["blocks"])
    for needle in ("Failed-login burst for victim", "critical", "user_id=victim", "Count",
                   "https://auditwatch.example.com/dashboard/alerts?fingerprint="):
        assert needle in blocks, needle

    # Quiet: the window empties, the 2-minute cooldown passes, then exactly one resolve.
    quiet = T0 + seconds(60)
    for step in range(1, 30):
        rig.tick(quiet + seconds(10 * step))
    assert pd.actions(BURST_FP) == ["trigger", "resolve"] and pd.incidents[BURST_FP]["status"] == "resolved"
    assert len(slack.in_channel("#sec-oncall")) == 2
    assert "RESOLVED" in slack.messages[1]["text"]
    states = [h.to_state for h in reversed(store.history(rig.pool, fingerprint=BURST_FP))]
    assert states == ["firing", "resolved"]
    sink = [json.loads(line) for line in rig.receivers.sink_path.read_text().splitlines()]
    assert [n["status"] for n in sink] == ["firing", "resolved"]
    assert all(n.status == "delivered" for n in outbox.notifications(rig.pool))


def test_one_message_per_group_and_one_incident_per_alert(rig, fakes):
    slack, pd = fakes
    for user in ("amy", "ben", "cat"):
        rig.write(failures(user, T0 - seconds(30), 12))
    rig.tick(T0)
    rig.tick(T0 + seconds(10))
    rig.tick(T0 + seconds(20))
    assert len(pd.incidents) == 3  # one per fingerprint (dedup_key)
    oncall = slack.in_channel("#sec-oncall")
    assert len(oncall) == 1  # one group: rule_id
    assert "(+2 more)" in oncall[0]["text"]


def test_a_critical_alert_inhibits_its_warnings(rig, fakes):
    slack, pd = fakes
    # 60 users failing from one address: spraying (critical) and brute force (warning) on the same IP.
    rig.write([EventRecord(event_id=uuid.uuid4(), timestamp=T0 - seconds(300 - i * 4), received_at=T0,
                           event_type="user_login", user_id=f"u{i}", outcome=Outcome.FAILURE,
                           source_ip="203.0.113.9") for i in range(60)])
    for step in range(3):
        rig.tick(T0 + seconds(10 * step))
    firing = {a.rule_id for a in actions.list_alerts(rig.pool, states=["firing"], now=T0)}
    assert firing == {"password_spraying", "ip_brute_force"}
    assert slack.in_channel("#sec-alerts") == []  # the warning is inhibited
    assert len(slack.in_channel("#sec-oncall")) == 1 and len(pd.incidents) == 1


def recording(calls: list):
    """An ``actions`` audit builder that also notes its calls; actions stores the record with the change."""
    def build(resource_id, metadata):
        calls.append((resource_id, metadata))
        return self_audit.record("config_change", "tests", now=datetime.now(UTC), metadata=metadata,
                                 resource_id=resource_id)
    return build


def test_a_silence_mutes_and_its_end_releases(rig, fakes):
    slack, pd = fakes
    calls = []
    actions.create_silence(rig.pool, matchers={"rule_id": "failed_login_burst", "user_id": "victim"},
                           starts_at=T0 - seconds(60), ends_at=T0 + seconds(60), created_by="oncall",
                           comment="pentest", audit=recording(calls))
    assert calls and calls[0][1]["change"] == "silence_created"
    for step in range(5):
        now = T0 + seconds(10 * step)
        rig.write(failures("victim", now - seconds(9), 12, spacing=0.5))
        rig.tick(now)
    assert pd.events == [] and slack.messages == []
    view = actions.list_alerts(rig.pool, now=T0 + seconds(40))[0]
    assert view.state == "firing" and view.silenced
    # The silence ends while the burst goes on: now it pages.
    for step in range(6, 9):
        now = T0 + seconds(10 * step)
        rig.write(failures("victim", now - seconds(9), 12, spacing=0.5))
        rig.tick(now)
    assert pd.actions(BURST_FP) == ["trigger"] and len(slack.in_channel("#sec-oncall")) == 1


def test_acknowledge_tells_pagerduty_once_and_stops_repeats(rig, fakes):
    slack, pd = fakes

    def burst_at(now):
        rig.write(failures("victim", now - seconds(20), 12, spacing=1))
        return rig.tick(now)

    for step in range(3):
        burst_at(T0 + seconds(10 * step))
    assert pd.actions(BURST_FP) == ["trigger"]
    audit = []
    view = actions.acknowledge(rig.pool, BURST_FP, by="alice", comment="looking", now=T0 + seconds(25),
                               audit=recording(audit))
    assert view.acknowledged_by == "alice" and audit[0][0] == BURST_FP
    burst_at(T0 + seconds(30))
    burst_at(T0 + seconds(40))
    assert pd.actions(BURST_FP) == ["trigger", "acknowledge"]
    # Four hours on, still bursting: an unacknowledged alert would be repeated; this one is not.
    later = T0 + timedelta(hours=4, minutes=1)
    burst_at(later)
    burst_at(later + seconds(10))
    assert pd.actions(BURST_FP) == ["trigger", "acknowledge"]
    assert len(slack.in_channel("#sec-oncall")) == 2  # the firing message and the acknowledgement


def test_an_unacknowledged_alert_repeats_after_the_repeat_interval(rig, fakes):
    slack, pd = fakes
    for now in (T0, T0 + seconds(10), T0 + timedelta(hours=4, seconds=20), T0 + timedelta(hours=4, seconds=30)):
        rig.write(failures("victim", now - seconds(20), 12, spacing=1))
        rig.tick(now)
    assert pd.actions(BURST_FP) == ["trigger", "trigger"] and len(pd.incidents) == 1
    assert len(slack.in_channel("#sec-oncall")) == 2


def test_429_with_retry_after_and_500s_are_retried_by_the_dispatcher(rig, fakes):
    slack, pd = fakes
    slack.fail_next("/api/chat.postMessage", 429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "7"})
    pd.fail_next("/v2/enqueue", 500, {"status": "error"}, times=2)
    rig.write(failures("victim", T0 - seconds(30), 12))
    rig.evaluate(T0)
    rig.evaluate(T0 + seconds(10))
    first = rig.dispatch(T0 + seconds(10))
    assert len(first.retrying) == 2 and slack.messages == [] and pd.events == []
    pd_id = outbox.notifications(rig.pool, receiver="pagerduty")[0].notification_id
    # PD: 5 s backoff after the first 500, then 10 s; Slack: exactly its Retry-After of 7 s.
    assert rig.dispatch(T0 + seconds(14)).retrying == []
    assert rig.dispatch(T0 + seconds(16)).retrying == [pd_id]
    assert rig.dispatch(T0 + seconds(17)).delivered and len(slack.messages) == 1
    assert rig.dispatch(T0 + seconds(25)).delivered == []
    assert rig.dispatch(T0 + seconds(26)).delivered == [pd_id]
    assert pd.actions(BURST_FP) == ["trigger"]
    attempts = outbox.attempts(rig.pool)
    slack_attempts = [(a.outcome, a.status_code, a.retry_after) for a in reversed(attempts) if a.receiver == "slack-oncall"]
    assert slack_attempts == [("retry", 429, 7.0), ("delivered", None, None)]
    pd_attempts = [(a.outcome, a.status_code) for a in reversed(attempts) if a.receiver == "pagerduty"]
    assert pd_attempts == [("retry", 500), ("retry", 500), ("delivered", None)]


def test_a_refused_credential_fails_for_good_without_leaking_it(pool, tmp_path, fakes):
    slack, pd = fakes
    rig = make_rig(pool, tmp_path, slack, pd)
    bad = make_rig(pool, tmp_path, None, None, slack_token="xoxb-wrong-secret-1234", slack_api_url=slack.url)
    rig.notifiers["slack-oncall"] = bad.notifiers["slack-oncall"]
    rig.write(failures("victim", T0 - seconds(30), 12))
    rig.evaluate(T0)
    rig.evaluate(T0 + seconds(10))
    result = rig.dispatch(T0 + seconds(10))
    slack_notes = outbox.notifications(rig.pool, receiver="slack-oncall")
    assert slack_notes[0].status == "failed" and slack_notes[0].notification_id in result.failed
    assert "invalid_auth" in slack_notes[0].last_error and "xoxb-wrong" not in slack_notes[0].last_error


def test_no_credentials_means_the_local_sink(pool, tmp_path):
    rig = make_rig(pool, tmp_path, None, None)
    assert set(rig.notifiers) == {"local"}
    rig.write(failures("victim", T0 - seconds(30), 12))
    rig.tick(T0)
    rig.tick(T0 + seconds(10))
    lines = [json.loads(x) for x in rig.receivers.sink_path.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["alerts"][0]["fingerprint"] == BURST_FP
    from alerts.notifiers import read_feed
    assert read_feed(rig.receivers.sink_path)[0]["notification_id"] == lines[0]["notification_id"]


def test_evaluating_twice_at_the_same_instant_changes_nothing(rig, fakes):
    rig.write(failures("victim", T0 - seconds(30), 12))
    rig.evaluate(T0)
    first = rig.evaluate(T0 + seconds(10))
    again = rig.evaluate(T0 + seconds(10))
    assert first.enqueued and again.enqueued == []
    assert [c for c in again.changes if c.from_state != c.to_state] == []


def test_a_resolve_is_delivered_even_when_silenced_meanwhile(rig, fakes):
    slack, pd = fakes
    for step in range(3):
        now = T0 + seconds(10 * step)
        rig.write(failures("victim", now - seconds(9), 12, spacing=0.5))
        rig.tick(now)
    assert pd.actions(BURST_FP) == ["trigger"]
    actions.create_silence(rig.pool, matchers={"user_id": "victim"}, starts_at=T0 + seconds(25),
                           ends_at=T0 + timedelta(hours=1), created_by="oncall", comment="known, mitigating")
    for step in range(3, 30):
        rig.tick(T0 + seconds(10 * step))  # quiet: the alert resolves while silenced
    assert pd.actions(BURST_FP) == ["trigger", "resolve"]
    assert [m["text"].split("]")[0] for m in slack.in_channel("#sec-oncall")] == ["[FIRING", "[RESOLVED"]


def test_an_acknowledgement_for_a_time_ends_and_repeats_resume(rig, fakes):
    slack, pd = fakes

    def burst_at(now):
        rig.write(failures("victim", now - seconds(20), 12, spacing=1))
        rig.tick(now)

    burst_at(T0)
    burst_at(T0 + seconds(10))
    view = actions.acknowledge(rig.pool, BURST_FP, by="bob", until=T0 + timedelta(hours=1), now=T0 + seconds(15))
    assert view.acknowledged_until == T0 + timedelta(hours=1)
    burst_at(T0 + seconds(20))
    assert actions.list_alerts(rig.pool, now=T0 + timedelta(hours=2))[0].acknowledged_by is None  # expired
    burst_at(T0 + timedelta(hours=4, seconds=20))
    assert pd.actions(BURST_FP) == ["trigger", "acknowledge", "trigger"]  # the reminder is back
