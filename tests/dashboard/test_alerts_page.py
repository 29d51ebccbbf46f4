"""The alerts page, reached the way on-call reaches it: from the link in a delivered Slack / PagerDuty
notification, in a real browser, against the real server; then acknowledge (which PagerDuty is told),
silence and resolve, each audited."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest

from alerts import actions, engine
from alerts.dispatch import RetryPolicy, dispatch
from alerts.engine import AlertConfig
from alerts.lifecycle import fingerprint
from alerts.notifiers import ReceiverSettings, build_notifiers
from alerts.routing import load_routing
from alerts.testing import FakePagerDuty, FakeSlack
from storage.auth import Role
from storage.events import EventRecord, Outcome
from storage.timescale import alerts as alert_store
from storage.timescale import catalog, db
from storage.timescale.writer import EventWriter
from tests.conftest import fresh_database, start_server
from tests.dashboard.browser import DRAW_TIMEOUT, TIMEOUT, expect, shot
from tests.dashboard.conftest import seed_database

VICTIM = "oncall-victim"
FP = fingerprint("failed_login_burst", {"user_id": VICTIM})


@pytest.fixture(scope="module")
def seeded(server_url, template_db):
    with fresh_database(server_url, template_db) as url:
        yield seed_database(url)


@pytest.fixture(scope="module")
def keys(seeded):
    pool = db.open_pool(seeded.url, min_size=1, max_size=2, name="alerts-page-keys")
    try:
        return {role.value: catalog.create_key(pool, f"page-{role.value}", role, "tests")[1] for role in Role}
    finally:
        pool.close()


@pytest.fixture(scope="module")
def live(seeded, keys, tmp_path_factory):
    server = start_server(seeded.url, tmp_path_factory.mktemp("alerts-page-server"))
    try:
        yield server
    finally:
        server.stop()


class Delivery:
    """The alerting path of the worker, delivering to the fake Slack and PagerDuty, links to ``live``."""

    def __init__(self, url: str, public_url: str, tmp) -> None:
        self.slack = FakeSlack()
        self.pd = FakePagerDuty(tmp)
        self.receivers = ReceiverSettings(sink_path=tmp / "sink.jsonl", slack_token=FakeSlack.TOKEN,
                                          slack_api_url=self.slack.url, pagerduty_routing_key=FakePagerDuty.ROUTING_KEY,
                                          pagerduty_url=self.pd.url, pagerduty_ca_bundle=str(self.pd.ca_path),
                                          timeout=5)
        self.notifiers = build_notifiers(self.receivers)
        self.config = AlertConfig(routing=load_routing(), receivers=frozenset(self.notifiers), rules_dir=None,
                                  public_url=public_url)
        self.pool = db.open_pool(url, min_size=1, max_size=4, name="alerts-page")

    def tick(self, now: datetime) -> None:
        engine.evaluate(self.pool, self.config, now=now)
        engine.flush(self.pool, self.config, now=now)
        dispatch(self.pool, self.notifiers, now=now, policy=RetryPolicy(jitter=0), secrets=self.receivers.secrets())

    def close(self) -> None:
        self.pool.close()
        self.slack.close()
        self.pd.close()


@pytest.fixture(scope="module")
def delivered(seeded, live, tmp_path_factory):
    """A burst for one user happening now, evaluated and delivered like the worker does it."""
    rig = Delivery(seeded.url, live.url, tmp_path_factory.mktemp("alerts-page-delivery"))
    try:
        now = datetime.now(UTC)
        EventWriter(rig.pool).write([EventRecord(
            event_id=uuid.uuid4(), timestamp=now - timedelta(seconds=30 - 2 * i), received_at=now,
            event_type="user_login", user_id=VICTIM, outcome=Outcome.FAILURE, source_ip="198.51.100.23")
            for i in range(12)])
        rig.tick(now)
        rig.tick(now + timedelta(seconds=11))  # after group_wait
        yield rig, now
    finally:
        rig.close()


def slack_link(message: dict) -> str:
    """The dashboard link as Slack shows it: <url|Open in dashboard> in a context block."""
    for block in message["blocks"]:
        for element in block.get("elements", []):
            found = re.search(r"<([^|>]+)\|Open in dashboard>", element.get("text", ""))
            if found:
                return found.group(1).replace("&amp;", "&")
    raise AssertionError(f"no dashboard link in {message['blocks']}")


def test_viewers_see_the_alert_but_cannot_act(browser, live, keys, delivered):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    ctx.set_default_timeout(TIMEOUT)
    try:
        page = ctx.new_page()
        page.goto(f"{live.url}/dashboard/alerts?fingerprint={FP}")
        page.fill("#key", keys["viewer"])
        page.click("button[type=submit]")
        expect(page.locator("#aw-alert-title")).to_contain_text(VICTIM, timeout=DRAW_TIMEOUT)
        expect(page.locator("#aw-alert-ack")).to_have_count(0)
        expect(page.locator(".aw-panel", has_text="Your role sees alerts")).to_have_count(1)
    finally:
        ctx.close()


def test_a_delivered_notification_links_to_the_alert_and_on_call_acknowledges_it(browser, live, keys, seeded,
                                                                                   delivered):
    rig, started = delivered
    oncall = rig.slack.in_channel("#sec-oncall")
    assert oncall, f"nothing reached #sec-oncall: {rig.slack.messages}"
    message = next(m for m in oncall if VICTIM in str(m["blocks"]))
    link = slack_link(message)
    trigger = next(e for e in rig.pd.events if e.get("dedup_key") == FP)
    assert trigger["links"][0]["href"] == link  # both receivers point at the same page
    assert link == f"{live.url}/dashboard/alerts?fingerprint={FP}"

    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    ctx.set_default_timeout(TIMEOUT)
    try:
        page = ctx.new_page()
        # On-call follows the link without a session: sign-in, then back to the alert, query string intact.
        page.goto(link)
        assert "/dashboard/login" in page.url
        page.fill("#key", keys["admin"])
        page.click("button[type=submit]")
        page.wait_for_url(link, timeout=TIMEOUT)
        expect(page.locator("#aw-alert-title")).to_have_text(f"Failed-login burst for {VICTIM}", timeout=DRAW_TIMEOUT)
        facts = page.locator("#aw-alert-facts")
        expect(facts.locator(".aw-state")).to_have_text("firing")
        expect(facts).to_contain_text("failed_login_burst")
        expect(facts).to_contain_text(f"user_id={VICTIM}")
        expect(facts).to_contain_text("12")
        expect(page.locator("#aw-alert-history")).to_contain_text("— → firing")
        told = page.locator("#aw-alert-notifications tbody tr")
        expect(told.filter(has_text="pagerduty")).to_have_count(1)
        expect(told.filter(has_text="slack-oncall")).to_contain_text("delivered")
        events = page.locator("#aw-alert-events tbody tr")
        expect(events.first).to_contain_text(VICTIM)
        assert 1 <= events.count() <= 10  # the rule's sample events (the evaluator keeps a few), up to ten
        for text in events.all_inner_texts():
            assert VICTIM in text and "user_login" in text and "failure" in text
        expect(page.locator("#aw-alert-anomalies")).to_contain_text("No anomaly was scored")
        expect(page.locator("#aw-alert-facts a", has_text="Open the runbook")).to_have_attribute(
            "href", re.compile(r"docs/runbooks/.+#failed_login_burst$"))
        shot(page, "20-alert-detail")

        # Acknowledge: the page says so, and the next evaluation tells PagerDuty.
        page.click("#aw-alert-ack")
        expect(page.locator("#aw-alert-flash")).to_contain_text("Acknowledged")
        expect(page.locator("#aw-alert-facts")).to_contain_text("ack by apikey:page-admin")
        expect(page.locator("#aw-alert-ack")).to_be_disabled()
        rig.tick(datetime.now(UTC) + timedelta(seconds=20))
        assert rig.pd.actions(FP) == ["trigger", "acknowledge"]

        # Silence needs a reason; then for four hours, with the reason kept.
        page.click("#aw-alert-silence")
        expect(page.locator("#aw-alert-flash")).to_contain_text("Say why")
        page.locator("#aw-alert-silence-for").click()
        page.get_by_role("option", name="4 hours", exact=True).click()
        page.fill("#aw-alert-reason", "pen test until 16:00")
        page.click("#aw-alert-silence")
        expect(page.locator("#aw-alert-flash")).to_contain_text("Silenced")
        expect(page.locator("#aw-alert-facts")).to_contain_text("silenced")
        shot(page, "21-alert-acked-silenced")

        page.fill("#aw-alert-reason", "known pen test account")
        page.click("#aw-alert-resolve")
        expect(page.locator("#aw-alert-flash")).to_contain_text("Resolved")
        expect(page.locator("#aw-alert-facts .aw-state")).to_have_text("resolved")
        expect(page.locator("#aw-alert-history")).to_contain_text("firing → resolved")
        expect(page.locator("#aw-alert-actions")).to_have_count(0)

        # The list, filtered.
        page.goto(f"{live.url}/dashboard/alerts?state=resolved&severity=critical&rule=failed_login_burst")
        row = page.locator("#aw-alerts-table tbody tr", has_text=VICTIM)
        expect(row).to_have_count(1)
        expect(row.locator(".aw-state")).to_have_text("resolved")
        shot(page, "22-alerts-list")
        page.goto(f"{live.url}/dashboard/alerts?state=firing&severity=info")
        expect(page.locator(".aw-empty-title")).to_have_text("No alerts")
        row_link = f"{live.url}/dashboard/alerts?state=resolved"
        page.goto(row_link)
        page.locator("#aw-alerts-table a", has_text=VICTIM).click()
        page.wait_for_url(f"**/dashboard/alerts?fingerprint={FP}")
        expect(page.locator("#aw-alert-title")).to_contain_text(VICTIM, timeout=DRAW_TIMEOUT)
        page.goto(f"{live.url}/dashboard/alerts?fingerprint=nope")
        expect(page.locator("#aw-alert-missing")).to_contain_text("No alert has this fingerprint")
    finally:
        ctx.close()

    silence = actions.list_silences(rig.pool)[0]
    assert silence.matchers == {"rule_id": "failed_login_burst", "user_id": VICTIM}
    assert silence.comment == "pen test until 16:00"
    assert timedelta(hours=3, minutes=59) < silence.ends_at - silence.starts_at <= timedelta(hours=4)
    manual = [h for h in alert_store.history(rig.pool, fingerprint=FP) if h.to_state == "resolved"]
    assert manual[0].detail["by"] == "apikey:page-admin" and manual[0].detail["comment"] == "known pen test account"
    with psycopg.connect(seeded.url) as conn:
        changes = [r[0] for r in conn.execute(
            "SELECT metadata->>'change' FROM audit_events WHERE event_type = 'config_change' AND "
            "user_id = 'apikey:page-admin' AND metadata->>'via' = 'dashboard' ORDER BY \"timestamp\"").fetchall()]
    assert changes == ["alert_acknowledged", "silence_created", "alert_resolved"]
    assert urlsplit(link).path == "/dashboard/alerts"


def test_the_alert_page_fits_a_phone(browser, live, keys, delivered):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                              device_scale_factor=2)
    ctx.set_default_timeout(TIMEOUT)
    try:
        page = ctx.new_page()
        page.goto(f"{live.url}/dashboard/alerts?fingerprint={FP}")
        page.fill("#key", keys["admin"])
        page.click("button[type=submit]")
        expect(page.locator("#aw-alert-title")).to_contain_text(VICTIM, timeout=DRAW_TIMEOUT)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
        panels = [p.bounding_box() for p in page.locator(".aw-alert-grid > *").all()]
        assert len({round(b["x"]) for b in panels}) == 1, "panels side by side on a phone"
        shot(page, "23-alert-detail-phone")
        page.goto(f"{live.url}/dashboard/alerts")
        expect(page.locator("#aw-alerts-table")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "24-alerts-list-phone")
    finally:
        ctx.close()
