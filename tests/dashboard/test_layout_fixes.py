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
