"""Layout problems found by trying the dashboard as a new user would, measured in the browser."""

from __future__ import annotations

import pytest

from tests.dashboard.browser import TIMEOUT, expect, shot, sign_in, wait_for_widgets


@pytest.fixture
def wide(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    ctx.set_default_timeout(TIMEOUT)
    yield ctx
    ctx.close()


@pytest.mark.parametrize("path", ["/dashboard/entity", "/dashboard/entity?kind=user&value=mallory"])
def test_the_entity_id_input_is_wide_enough_to_type_in_at_1440_px(wide, live, keys, path):
    page = wide.new_page()
    sign_in(page, live.url, keys["viewer"], path)
    if "value=" in path:
        wait_for_widgets(page, 9)
    field = page.locator("#aw-entity-value")
    expect(field).to_be_visible()
    box = field.bounding_box()
    kind = page.locator("select[name=kind]").bounding_box()
    assert box["width"] >= 240, f"the id input is {box['width']:.0f} px wide"
    assert abs(box["y"] - kind["y"]) < 8, "the input and the kind selector sit on one line"
    # Typing a long id shows it, not a few characters of it.
    field.fill("a-rather-long-user-id@example.com")
    assert page.evaluate("document.querySelector('#aw-entity-value').scrollWidth <= "
                         "document.querySelector('#aw-entity-value').clientWidth + 1")
    shot(page, "30-entity-form" + ("-value" if "value=" in path else ""))


def test_a_long_key_name_keeps_the_header_on_one_row_at_1440_px(wide, live, seeded):
    # `make up`'s admin key is local-admin-<timestamp>: signed in with it, the header wrapped onto two rows.
    from storage.auth import Role
    from storage.timescale import catalog, db

    name = "local-admin-20261206214328"
    pool = db.open_pool(seeded.url, min_size=1, max_size=2, name="layout-long-name")
    try:
        key = catalog.create_key(pool, name, Role.ADMIN, "tests")[1]
    finally:
        pool.close()
    page = wide.new_page()
    sign_in(page, live.url, key)
    wait_for_widgets(page, 15)
    nav = page.locator(".aw-nav").bounding_box()
    account = page.locator(".aw-account").bounding_box()
    assert abs(nav["y"] + nav["height"] / 2 - (account["y"] + account["height"] / 2)) < 8, "the header wrapped"
    assert page.locator(".aw-header").bounding_box()["height"] < 70
    expect(page.locator(".aw-user-name")).to_have_attribute("title", name)  # the whole name, on hover
    shot(page, "43-header-long-name")
