"""End to end in headless Chromium against the real server: what an analyst does, screen by screen.

One server and one browser for the module; each test opens its own context (cookies) and
saves a screenshot of what it saw to test-artifacts/screenshots/.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.dashboard.browser import DRAW_TIMEOUT, TIMEOUT, box, card, expect, shot, sign_in, wait_for_widgets
from tests.dashboard.conftest import SCREENSHOTS


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    ctx.set_default_timeout(TIMEOUT)
    yield ctx
    ctx.close()


def test_sign_in_refuses_a_bad_key_then_lands_on_the_overview(context, live, keys):
    page = context.new_page()
    page.goto(live.url + "/dashboard/")
    assert "/dashboard/login" in page.url
    page.fill("#key", "aw_not_a_real_key")
    page.click("button[type=submit]")
    expect(page.locator(".aw-login-error")).to_contain_text("unknown, malformed or revoked")
    shot(page, "01-login-refused")
    page.fill("#key", keys["viewer"])
    page.click("button[type=submit]")
    page.wait_for_url(live.url + "/dashboard/")
    expect(page.locator(".aw-user")).to_contain_text("dash-viewer")
    expect(page.locator("h1")).to_have_text("Security overview")


def test_the_overview_shows_the_seeded_data(context, live, keys, seeded):
    page = context.new_page()
    sign_in(page, live.url, keys["viewer"])
    wait_for_widgets(page, 15)
    # The seeded day plus the platform's own audit trail (sign-ins, searches, widget reads), counted from raw
    # events. Each widget's read is recorded as it draws, so the tile counts between none and all of this
    # page's other 14 widget-read records, depending on the order they drew in.
    with psycopg.connect(seeded.url) as conn:
        total = conn.execute("SELECT count(*) FROM audit_events WHERE \"timestamp\" > now() - interval '24 hours'"
                             ).fetchone()[0]
    assert len(seeded.events) < total < len(seeded.events) + 400  # plus sign-ins, searches, reads of other tests
    shown = int(card(page, "kpi-total").locator(".aw-kpi-value").inner_text().replace(",", ""))
    assert total - 15 <= shown <= total, (shown, total)
    failed = seeded.count(datetime.now(UTC) - timedelta(hours=1), event_type="user_login", outcome="failure")
    assert failed >= 60
    expect(card(page, "kpi-failed").locator(".aw-kpi-value")).to_have_text(f"{failed:,}")
    # "Anomalies today" counts windows ending after 00:00 UTC: the seeded one ends 30 minutes before the seed, so in
    # a day's first half hour it is yesterday's (CI at 00:35 saw 0).
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = 1 if seeded.now - timedelta(minutes=30) > midnight else 0
    expect(card(page, "kpi-anomalies").locator(".aw-kpi-value")).to_have_text(str(today))
    # Alerting is on, and nothing fires on this database (the alert feed's own test fires a burst elsewhere).
    expect(card(page, "kpi-alerts").locator(".aw-kpi-value")).to_have_text("0")
    expect(card(page, "top-users")).to_contain_text("mallory")
    expect(card(page, "top-ips")).to_contain_text("203.0.113.66")
    expect(card(page, "countries")).to_contain_text("US")
    expect(card(page, "alerts")).to_contain_text("No alerts")
    expect(card(page, "anomalies")).to_contain_text("mallory failed 60 logins")
    # The timeline's time axis stays inside its chart, above the list of top anomalies (it was drawn over it).
    # Plotly hides a tick label that would overflow the plot (the last one, at some times of day): the drawn ones count.
    listed = box(card(page, "anomalies").locator(".aw-anomaly-list"))
    expect(card(page, "anomalies").locator(".xtick text").first).to_be_attached()
    ticks = [b for b in (t.bounding_box() for t in card(page, "anomalies").locator(".xtick text").all()) if b]
    assert ticks, "no time-axis label is drawn"
    lowest = max(b["y"] + b["height"] for b in ticks)
    assert lowest <= listed["y"] + 1, (lowest, listed)
    # Latest events are the systems' events, not this dashboard's own reads of them (recorded as apikey:...).
    expect(card(page, "latest").locator("tbody tr")).to_have_count(10)
    expect(card(page, "latest")).not_to_contain_text("apikey:")
    shot(page, "02-overview")
    # An anomaly opens its explanation.
    card(page, "anomalies").locator(".aw-anomaly-list button").first.click()
    modal = page.locator("#aw-modal")
    expect(modal).to_have_class("aw-modal open")
    expect(modal).to_contain_text("Observed")
    expect(modal).to_contain_text("failed_logins")
    page.screenshot(path=str(SCREENSHOTS / "03-anomaly-explanation.png"))


def test_a_chart_click_cross_filters_and_drills_down_to_an_event(context, live, keys, seeded):
    page = context.new_page()
    sign_in(page, live.url, keys["viewer"])
    wait_for_widgets(page, 15)
    # Click the tallest failure bar of "Events over time by outcome", like a person would.
    failure_bars = card(page, "ts-outcome").locator(".barlayer .trace").nth(1).locator(".point path")
    boxes = [b for b in (p.bounding_box() for p in failure_bars.all()) if b and b["height"] > 0]
    tallest = max(boxes, key=lambda b: b["height"])
    page.mouse.click(tallest["x"] + tallest["width"] / 2, tallest["y"] + tallest["height"] / 2)
    expect(page.locator(".aw-chip")).to_have_text(["outcome: failure✕"])
    # Then a table value: mallory among the top users by failures.
    card(page, "top-users").get_by_role("button", name="mallory", exact=True).click()
    expect(page.locator(".aw-chip")).to_have_text(["outcome: failure✕", "user: mallory✕"])
    page.get_by_role("button", name="Remove the outcome filter").click()
    expect(page.locator(".aw-chip")).to_have_text(["user: mallory✕"])
    # Every widget redraws for mallory only.
    latest = card(page, "latest")
    expect(latest.locator("tbody tr").first).to_contain_text("mallory")
    rows = latest.locator("tbody tr")
    expect(rows).to_have_count(10)
    for text in rows.all_inner_texts():
        assert "mallory" in text and "203.0.113.66" in text
    expect(card(page, "top-ips").locator("tbody tr")).to_have_count(1)
    expect(card(page, "kpi-total").locator(".aw-kpi-value")).to_have_text("60")
    wait_for_widgets(page, 15)
    shot(page, "04-cross-filtered")
    # Drill down: the matching events in search, then one event's JSON.
    page.click("#aw-drilldown")
    page.wait_for_url("**/dashboard/search?user_id=mallory")
    results = page.locator("#aw-search-results tbody tr")
    expect(results).to_have_count(25)  # one page of 60
    expect(page.locator("#aw-search-status")).to_contain_text("more older")
    page.click("#aw-search-older")
    expect(page.locator("#aw-search-status")).to_contain_text("page 2")
    page.click("#aw-search-older")
    expect(page.locator("#aw-search-status")).to_contain_text("page 3")
    expect(results).to_have_count(10)
    page.click("#aw-search-newer")
    expect(page.locator("#aw-search-status")).to_contain_text("page 2")
    first = results.first
    first.locator("button").click()
    detail = page.locator("#aw-event-json")
    expect(detail).to_contain_text('"user_id": "mallory"')
    expect(detail).to_contain_text('"reason": "bad_password"')
    assert page.locator("#aw-search-export button").count() == 0  # viewers do not export
    shot(page, "05-search-detail")
    # An address that names no event says so in the detail, as text.
    aside = page.locator(".aw-detail")
    page.goto(live.url + "/dashboard/search?event_id=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    expect(aside).to_have_text("That is not an event id.")
    page.goto(live.url + "/dashboard/search?event_id=00000000-0000-4000-8000-000000000000")
    expect(aside).to_have_text("No stored event has this id (it may have been erased).")
    expect(results).to_have_count(25)  # the search itself still runs


def test_the_entity_view_shows_one_users_activity_anomalies_and_baseline(context, live, keys):
    page = context.new_page()
    sign_in(page, live.url, keys["auditor"], "/dashboard/entity?kind=user&value=mallory")
    wait_for_widgets(page, 9)
    expect(page.locator("h1")).to_have_text("User mallory")
    expect(card(page, "e-mallory-total").locator(".aw-kpi-value")).to_have_text("60")
    expect(card(page, "e-mallory-other")).to_contain_text("203.0.113.66")
    expect(card(page, "e-mallory-anomalies")).to_contain_text("mallory failed 60 logins")
    expect(card(page, "e-mallory-baseline").locator(".js-plotly-plot")).to_have_count(1)
    expect(card(page, "e-mallory-alerts")).to_contain_text("No alerts")
    for text in card(page, "e-mallory-events").locator("tbody tr").all_inner_texts():
        assert "mallory" in text
    shot(page, "08-entity")
    # A bad IP is answered, not a broken page.
    page.goto(live.url + "/dashboard/entity?kind=ip&value=999.1.1.1")
    expect(page.locator(".aw-error")).to_contain_text("not an IP address")


def test_auditors_export_what_they_searched(context, live, keys):
    page = context.new_page()
    sign_in(page, live.url, keys["auditor"], "/dashboard/search?user_id=mallory")
    expect(page.locator("#aw-search-results tbody tr")).to_have_count(25)
    with page.expect_download() as download:  # a POST of the page's form, carrying its CSRF token
        page.locator("#aw-search-export button", has_text="Export CSV").click()
    lines = Path(download.value.path()).read_text().strip().splitlines()
    assert len(lines) == 61 and all(",mallory," in line for line in lines[1:])


def test_auto_refresh_ticks_and_pauses_while_the_tab_is_hidden(context, live, keys):
    page = context.new_page()
    page.clock.install()
    sign_in(page, live.url, keys["viewer"])
    wait_for_widgets(page, 15)
    token = card(page, "kpi-total").locator("[data-render]")
    choose_refresh = page.locator("#aw-refresh")
    choose_refresh.click()
    page.get_by_role("option", name="Every 10 s", exact=True).click()
    first = token.get_attribute("data-render")
    before = page.eval_on_selector_all(".aw-card-body [data-render]", "els => els.map(e => e.dataset.render)")
    page.clock.run_for(11_000)
    expect(token).not_to_have_attribute("data-render", first)
    # Every widget has drawn the tick before the tab hides: a draw still in flight is not a hidden tab's request
    # (under load, 4 of the tick's 15 draws were still on their way when counting began).
    page.wait_for_function("""(before) => {
        const now = [...document.querySelectorAll('.aw-card-body [data-render]')].map(e => e.dataset.render);
        return now.length === before.length && now.every((token, i) => token !== before[i]);
    }""", arg=before, timeout=DRAW_TIMEOUT)
    wait_for_widgets(page, 15)
    # Hidden tab: the interval keeps running in the browser, but no widget asks the server for anything.
    page.evaluate("Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
    updates: list[str] = []
    page.on("request", lambda r: updates.append(r.url) if "_dash-update-component" in r.url else None)
    paused = token.get_attribute("data-render")
    page.clock.run_for(35_000)
    page.wait_for_timeout(500)
    assert updates == [] and token.get_attribute("data-render") == paused
    page.evaluate("Object.defineProperty(document, 'hidden', {value: false, configurable: true})")
    page.clock.run_for(11_000)
    expect(token).not_to_have_attribute("data-render", paused)


@pytest.fixture
def phone(browser):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                              device_scale_factor=2)
    ctx.set_default_timeout(TIMEOUT)
    yield ctx
    ctx.close()


def test_the_phone_layout_is_one_readable_column(phone, live, keys):
    page = phone.new_page()
    sign_in(page, live.url, keys["viewer"])
    wait_for_widgets(page, 15)
    boxes = [c.bounding_box() for c in page.locator(".aw-grid > .aw-card").all()]
    assert len({round(b["x"]) for b in boxes}) == 1, "cards side by side on a phone"
    assert all(b["width"] >= 340 for b in boxes)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
    font = page.eval_on_selector(".aw-kpi-value", "e => parseFloat(getComputedStyle(e).fontSize)")
    assert font >= 24
    shot(page, "09-phone-overview")
    page.screenshot(path=str(SCREENSHOTS / "09-phone-overview-first-screen.png"))
    card(page, "ts-type").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "09-phone-overview-charts.png"))
    page.goto(live.url + "/dashboard/search?user_id=mallory")
    expect(page.locator("#aw-search-results tbody tr")).to_have_count(25)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "10-phone-search")
