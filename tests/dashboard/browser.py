"""Helpers for the browser tests: sign in, wait for widgets to have drawn, screenshots."""

from __future__ import annotations

from urllib.parse import quote

from playwright.sync_api import FloatRect, Locator, Page, expect

from tests.dashboard.conftest import SCREENSHOTS

TIMEOUT = 15_000
# Waiting for a page's widgets to draw: generous, since a cold server and browser on a loaded CI machine are
# slow the first time; a passing run does not wait longer for it.
DRAW_TIMEOUT = 60_000


def sign_in(page: Page, base: str, key: str, path: str = "/dashboard/") -> None:
    page.goto(f"{base}/dashboard/login?next={quote(path)}")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{path}*", timeout=TIMEOUT)


def wait_for_widgets(page: Page, count: int | None = None) -> None:
    """Every widget on the page has rendered its body (and every chart has drawn)."""
    page.wait_for_function(
        """(count) => {
            const cards = document.querySelectorAll('.aw-card');
            if (!cards.length || (count !== null && cards.length !== count)) return false;
            for (const card of cards) {
                const body = card.querySelector('.aw-card-body [data-render]');
                if (!body) return false;
                const graph = body.querySelector('.js-plotly-plot');
                if (body.querySelector('.aw-graph') && !graph) return false;
            }
            return true;
        }""", arg=count, timeout=DRAW_TIMEOUT)


def card(page: Page, widget_id: str):
    return page.locator(f"[id*='\"aio_id\":\"{widget_id}\"'][id*='\"subcomponent\":\"card\"']")


def box(locator: Locator) -> FloatRect:
    """The drawn box of ``locator``, waiting for it to be visible.

    A chart's SVG is redrawn whole when its data refreshes, so the element found a moment ago may be
    gone (no box) when it is measured: it is looked up again until one is there to measure.
    """
    for _ in range(20):
        expect(locator).to_be_visible()
        found = locator.bounding_box()
        if found is not None:
            return found
    raise AssertionError(f"{locator} was visible but never had a box to measure: redrawn 20 times in a row")


def shot(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # a full-page capture of a scrolled page repeats the sticky header
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


__all__ = ["TIMEOUT", "box", "card", "expect", "shot", "sign_in", "wait_for_widgets"]
