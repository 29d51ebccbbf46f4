"""End to end: build a dashboard in the browser, save it, reload it, share it, export and import YAML."""

from __future__ import annotations

import psycopg
import pytest
import yaml

from tests.dashboard.browser import TIMEOUT, card, expect, shot, sign_in, wait_for_widgets


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    ctx.set_default_timeout(TIMEOUT)
    yield ctx
    ctx.close()


def choose(page, dropdown, option: str) -> None:
    """Pick an option of a dcc.Dropdown the way a person does: open it, click the option."""
    dropdown.click()
    page.get_by_role("option", name=option, exact=True).click()


def widget_ids(page) -> list[str]:
    return page.eval_on_selector_all(
        ".aw-grid > .aw-card", "cards => cards.map(c => JSON.parse(c.id).aio_id)")


def test_build_configure_save_reload_share_and_export(context, live, keys, seeded, browser):
    page = context.new_page()
    sign_in(page, live.url, keys["viewer"], "/dashboard/dashboards")
    expect(page.locator(".aw-empty")).to_contain_text("No dashboards yet")
    page.fill("#aw-dash-new-name", "SOC morning")
    page.click("#aw-dash-create")
    page.wait_for_url("**/dashboard/d/*")
    dashboard_url = page.url
    expect(page.locator("h1")).to_have_text("SOC morning")

    # Add two widgets: events over time (the default type), then top values.
    page.click("#aw-dash-add")
    expect(page.locator(".aw-grid > .aw-card")).to_have_count(1)
    choose(page, page.locator("#aw-dash-add-type"), "Top values")
    page.click("#aw-dash-add")
    expect(page.locator(".aw-grid > .aw-card")).to_have_count(2)
    wait_for_widgets(page, 2)
    timeseries_id, top_id = widget_ids(page)
    top = card(page, top_id)
    expect(top.locator(".aw-card-title")).to_have_text("Top values")

    # Configure it: top 3 source IPs of any outcome, titled.
    top.locator("summary").click()
    choose(page, top.locator("button[id*='\"param\":\"dimension\"']"), "source_ip")
    choose(page, top.locator("button[id*='\"param\":\"outcome\"']"), "any")
    top.locator("[id*='\"param\":\"limit\"']").fill("3")
    top.locator("[id*='\"param\":\"__title__\"']").fill("Top 3 source IPs")
    top.locator("[id*='\"subcomponent\":\"apply\"']").click()
    expect(top.locator(".aw-card-title")).to_have_text("Top 3 source IPs")
    expect(top.locator(".bars .point")).to_have_count(3)
    # A bad value is refused with a reason, and the widget keeps its last good config.
    top.locator("[id*='\"param\":\"limit\"']").fill("500")
    top.locator("[id*='\"subcomponent\":\"apply\"']").click()
    expect(top.locator(".aw-error")).to_contain_text("from 1 to 50")
    top.locator("[id*='\"param\":\"limit\"']").fill("3")

    # Resize and reorder.
    top.locator(".aw-tool-wider").click()
    expect(top).to_have_class("aw-card w6 h1 t-top")
    top.locator(".aw-tool-earlier").click()
    expect(page.locator(".aw-grid > .aw-card").first).to_contain_text("Top 3 source IPs")
    assert widget_ids(page) == [top_id, timeseries_id]
    wait_for_widgets(page, 2)

    # Save, share read-only with everyone, reload: the same dashboard comes back.
    page.check("#aw-dash-share-all input")
    page.click("#aw-dash-save")
    expect(page.locator("#aw-saved")).to_contain_text("version 2")
    shot(page, "06-custom-dashboard")
    page.reload()
    wait_for_widgets(page, 2)
    assert widget_ids(page) == [top_id, timeseries_id]
    top = card(page, top_id)
    expect(top.locator(".aw-card-title")).to_have_text("Top 3 source IPs")
    expect(top).to_have_class("aw-card w6 h1 t-top")
    expect(top.locator(".bars .point")).to_have_count(3)

    # Export YAML: the document another user can import.
    with page.expect_download() as download:
        page.click("#aw-dash-export")
    document = yaml.safe_load(open(download.value.path()).read())
    assert document["name"] == "SOC morning" and document["version"] == 1
    assert [w["type"] for w in document["widgets"]] == ["top", "timeseries"]
    assert document["widgets"][0]["params"] | {"dimension": "source_ip", "limit": 3, "outcome": ""} == \
        document["widgets"][0]["params"]
    assert document["widgets"][0]["w"] == 6

    # Another user sees it shared, read-only.
    other = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        auditor = other.new_page()
        auditor.set_default_timeout(TIMEOUT)
        sign_in(auditor, live.url, keys["auditor"], "/dashboard/dashboards")
        expect(auditor.locator(".aw-dash-list")).to_contain_text("shared by apikey:dash-viewer")
        auditor.goto(dashboard_url)
        wait_for_widgets(auditor, 2)
        expect(auditor.locator(".aw-tag")).to_contain_text("Read-only")
        assert auditor.locator("#aw-dash-save").count() == 0
        assert auditor.locator(".aw-tool").count() == 0
    finally:
        other.close()

    # Remove a widget, save again; every change was audited as a config_change.
    card(page, timeseries_id).locator(".aw-tool-remove").click()
    expect(page.locator(".aw-grid > .aw-card")).to_have_count(1)
    page.click("#aw-dash-save")
    expect(page.locator("#aw-saved")).to_contain_text("version 3")
    with psycopg.connect(seeded.url) as conn:
        changes = [r[0] for r in conn.execute(
            "SELECT metadata->>'change' FROM audit_events WHERE event_type = 'config_change' "
            "AND user_id = 'apikey:dash-viewer' ORDER BY \"timestamp\"")]
    assert changes == ["dashboard_created", "dashboard_saved", "dashboard_saved"]


def test_importing_yaml_explains_what_is_wrong_and_accepts_an_export(context, live, keys):
    page = context.new_page()
    sign_in(page, live.url, keys["admin"], "/dashboard/dashboards")
    page.fill("#aw-dash-import-text", "name: broken\nwidgets: [\n")
    page.click("#aw-dash-import")
    expect(page.locator("#aw-import-error")).to_contain_text("not valid YAML")
    page.fill("#aw-dash-import-text", "name: x\nwidgets:\n  - type: pie_chart\n")
    page.click("#aw-dash-import")
    expect(page.locator("#aw-import-error")).to_contain_text("widgets[0].type: unknown widget type 'pie_chart'")
    shot(page, "07-import-error")
    page.fill("#aw-dash-import-text", "version: 1\nname: Imported\nwidgets:\n"
              "  - {type: kpi, params: {metric: failed_logins_hour}}\n"
              "  - {type: heatmap, w: 12}\n")
    page.click("#aw-dash-import")
    page.wait_for_url("**/dashboard/d/*")
    wait_for_widgets(page, 2)
    expect(page.locator(".aw-grid > .aw-card").first).to_contain_text("Failed logins")


def test_the_overview_can_be_copied_into_an_editable_dashboard(context, live, keys):
    page = context.new_page()
    sign_in(page, live.url, keys["auditor"])
    page.click("#aw-copy-overview")
    page.wait_for_url("**/dashboard/d/*")
    expect(page.locator("h1")).to_have_text("My security overview")
    wait_for_widgets(page, 15)
    assert page.locator(".aw-tool-remove").count() == 15
    # An open editor grows its card instead of covering the widgets below it.
    top = card(page, "top-users")
    top.locator("summary").click()
    below = card(page, "heatmap").bounding_box()
    editor = top.bounding_box()
    assert editor["y"] + editor["height"] <= below["y"]
    top.locator("[id*='\"subcomponent\":\"apply\"']").click()  # reachable, not covered by the next row
    expect(top.locator(".aw-error")).to_have_text("")
