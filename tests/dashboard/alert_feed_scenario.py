"""The alert feed in the browser: viewers see, admins acknowledge and silence; shared by both feed tests."""

from __future__ import annotations

import psycopg

from tests.dashboard.browser import TIMEOUT, card, expect, shot, sign_in, wait_for_widgets


def run(browser, live, keys, seeded, *, title: str, screenshot: str) -> None:
    viewer = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        page = viewer.new_page()
        page.set_default_timeout(TIMEOUT)
        sign_in(page, live.url, keys["viewer"])
        wait_for_widgets(page, 15)
        feed = card(page, "alerts")
        expect(feed).to_contain_text(title)
        assert feed.get_by_role("button", name="Acknowledge").count() == 0  # viewers see, they do not act
        expect(card(page, "kpi-alerts").locator(".aw-kpi-value")).not_to_have_text("—")
    finally:
        viewer.close()

    admin = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        page = admin.new_page()
        page.set_default_timeout(TIMEOUT)
        sign_in(page, live.url, keys["admin"])
        wait_for_widgets(page, 15)
        feed = card(page, "alerts")
        item = feed.locator(".aw-alert", has_text=title).first
        item.get_by_role("button", name="Acknowledge").click()
        expect(page.locator("#aw-alerts-status")).to_contain_text("Acknowledged")
        expect(feed.locator(".aw-alert", has_text=title).first).to_contain_text("ack by apikey:dash-admin")
        feed.locator(".aw-alert", has_text=title).first.get_by_role("button", name="Silence 1 h").click()
        expect(page.locator("#aw-alerts-status")).to_contain_text("Silenced")
        expect(feed.locator(".aw-alert", has_text=title).first).to_contain_text("silenced")
        shot(page, screenshot)
    finally:
        admin.close()
    with psycopg.connect(seeded.url) as conn:
        audited = conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'config_change' "
                               "AND user_id = 'apikey:dash-admin' AND metadata->>'via' = 'dashboard'").fetchone()[0]
    assert audited >= 2
