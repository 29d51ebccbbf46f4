"""The dashboard while its database is down (a private cluster, stopped and started again): a live view says
its numbers may be stale instead of keeping them silently, a page opened meanwhile says why in words (not a
JSON error), and both recover by themselves once the database answers."""

from __future__ import annotations

import pytest

from bench.faultcluster import private_cluster
from storage.auth import Role
from storage.timescale import catalog, db
from storage.timescale.cluster import DATABASE
from tests.conftest import start_server
from tests.dashboard.browser import DRAW_TIMEOUT, TIMEOUT, expect, shot, sign_in, wait_for_widgets
from tests.dashboard.conftest import seed_database


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory):
    with private_cluster() as cluster:
        url = cluster.url_for(DATABASE)
        seed_database(url)
        pool = db.open_pool(url, min_size=1, max_size=2, name="outage-keys")
        try:
            key = catalog.create_key(pool, "outage-viewer", Role.VIEWER, "tests")[1]
        finally:
            pool.close()
        # No key cache: every request looks its session's key up, as one does once the 5 s cache has run out.
        server = start_server(url, tmp_path_factory.mktemp("outage-server"), AUDITWATCH_KEY_CACHE_SECONDS="0")
        try:
            yield cluster, server, key
        finally:
            server.stop()


def test_an_outage_is_said_while_it_lasts_and_the_dashboard_recovers_by_itself(browser, outage_stack):
    cluster, server, key = outage_stack
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(TIMEOUT)
    try:
        page = context.new_page()
        page.clock.install()
        sign_in(page, server.url, key)
        wait_for_widgets(page, 15)
        banner = page.locator("#aw-outage")
        expect(banner).to_have_count(0)  # nothing failed yet, so no banner at all
        page.locator("#aw-refresh").click()
        page.get_by_role("option", name="Every 10 s", exact=True).click()

        cluster.down()
        page.clock.run_for(11_000)  # the next refresh meets the outage
        expect(banner).to_be_visible(timeout=DRAW_TIMEOUT)
        expect(banner).to_contain_text("The server has not answered since")
        expect(banner).to_contain_text(" UTC (")
        expect(banner).to_contain_text("HTTP 503: the database is unavailable; retry later")
        shot(page, "40-outage-banner")

        # A page opened during the outage, and the sign-in page: words and a retry, not a JSON error.
        other = context.new_page()
        for path in ("/dashboard/search?user_id=mallory", "/dashboard/login"):
            response = other.goto(server.url + path)
            assert response is not None and response.status == 503, path
            assert response.headers.get("retry-after") == "10"
            expect(other.locator("#aw-outage-page")).to_contain_text("cannot reach its database")
            assert other.locator("meta[http-equiv=refresh]").count() == 1
        shot(other, "41-outage-page")
        # Scripts and styles need no database: they are still served.
        assert other.request.get(server.url + "/dashboard/assets/style.css").status == 200

        cluster.up(install=False)
        # The live view recovers on a later refresh; the pool's circuit lets a request through within seconds.
        for _ in range(12):
            page.clock.run_for(11_000)
            if not banner.is_visible():
                break
            page.wait_for_timeout(2_000)
        expect(banner).to_be_hidden(timeout=DRAW_TIMEOUT)
        wait_for_widgets(page, 15)
        # And the page opened during the outage opens once the database answers.
        response = other.goto(server.url + "/dashboard/search?user_id=mallory")
        assert response is not None and response.status == 200
        expect(other.locator("h1")).to_have_text("Event search")
    finally:
        context.close()


def test_a_session_that_ends_under_a_live_view_says_so_and_offers_sign_in(browser, seeded, live):
    pool = db.open_pool(seeded.url, min_size=1, max_size=2, name="outage-revoke")
    try:
        key = catalog.create_key(pool, "revoked-under-a-live-view", Role.VIEWER, "tests")[1]
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(TIMEOUT)
        try:
            page = context.new_page()
            page.clock.install()
            sign_in(page, live.url, key, "/dashboard/?from=revoked")
            wait_for_widgets(page, 15)
            page.locator("#aw-refresh").click()
            page.get_by_role("option", name="Every 10 s", exact=True).click()
            catalog.revoke_key(pool, "revoked-under-a-live-view", "tests")
            banner = page.locator("#aw-outage")
            # The server looks a session's key up again every key_cache_seconds (5 s by default).
            for _ in range(10):
                page.wait_for_timeout(1_000)
                page.clock.run_for(11_000)
                if banner.is_visible():
                    break
            expect(banner).to_be_visible(timeout=DRAW_TIMEOUT)
            expect(banner).to_contain_text("Your session has ended")
            link = banner.get_by_role("link", name="Sign in again")
            assert link.get_attribute("href") == "/dashboard/login?next=%2Fdashboard%2F%3Ffrom%3Drevoked"
            shot(page, "42-session-ended-banner")
        finally:
            context.close()
    finally:
        pool.close()
