"""Dashboard speed in a real browser: the overview until every widget has data, and one widget's update.

Loads N events (default 10 M) over 30 days with bench/query.py's SQL-side generator, refreshes the
rollups, scores a few hundred anomalies, starts the real server, and drives Debian's chromium
headless with Playwright:

- overview: from navigation start until all 15 widgets have rendered data (charts drawn), per run;
- single widget: on a saved copy of the overview, Apply a changed parameter on one widget
  (top users by failures, limit 10 <-> 9) until that widget has redrawn;
- the first view right after the load and the rollup refresh (the server's caches cold, the rows fresh),
  timed once before any warm-up; the browser has only loaded the empty dashboard, for its bundles;
- baselines measured in the same run, to read the figures on a busy machine: the same page with no
  widgets (Dash's own cost in this browser), and the 15 widgets' queries and rendering in Python alone
  (the server's share).

Targets (issue 6, 10 M events): overview P95 <= 1.5 s, single widget P95 <= 200 ms.

    python bench/dashboard.py [--url postgresql://...] [--events 10000000] [--runs 20] [--range 24h]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from bench.harness import database, percentile, server
from bench.query import load
from dashboard import config
from dashboard.pages.overview import overview_document
from dashboard.registry import build
from storage.auth import Role
from storage.timescale import catalog, dashboards, db, rollups

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ALL_DRAWN = """(count) => {
    const cards = document.querySelectorAll('.aw-card');
    if (cards.length !== count) return false;
    for (const card of cards) {
        const body = card.querySelector('.aw-card-body [data-render]');
        if (!body) return false;
        if (body.querySelector('.aw-graph') && !body.querySelector('.js-plotly-plot .main-svg')) return false;
    }
    window.__drawnAt = window.__drawnAt || performance.now();  // since this navigation started
    return true;
}"""
# Apply one widget's changed config and time, inside the page, from the click to its redrawn chart.
UPDATE = """([cardId, before]) => new Promise((resolve, reject) => {
    const card = document.getElementById(cardId);
    const drawn = () => {
        const body = card.querySelector('[data-render]');
        return body && body.dataset.render !== before
            && (!body.querySelector('.aw-graph') || body.querySelector('.js-plotly-plot .main-svg'));
    };
    setTimeout(() => reject(new Error('the widget did not redraw within 30 s')), 30000);
    const started = performance.now();
    const observer = new MutationObserver(() => {
        if (drawn()) { observer.disconnect(); requestAnimationFrame(() => resolve(performance.now() - started)); }
    });
    observer.observe(card, {subtree: true, childList: true, attributes: true});
    card.querySelector('[id*="apply"]').click();
})"""


def prepare(url: str, events: int) -> tuple[str, uuid.UUID, uuid.UUID]:
    load(url, events)
    pool = db.open_pool(url, min_size=1, max_size=4, name="bench-dashboard")
    try:
        began = time.perf_counter()
        result = rollups.refresh(pool, now=datetime.now(UTC),
                                 progress=lambda low, high: print(f"\r  rollups up to {high:%Y-%m-%d %H:%M}",
                                                                  end="", flush=True))
        print(f"\n  rollups refreshed in {time.perf_counter() - began:.1f} s ({len(result.ranges)} ranges)")
        now = datetime.now(UTC)
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(300):
                conn.execute(
                    "INSERT INTO anomalies (detector, detector_version, entity_type, entity_value, window_start, "
                    "window_end, score, severity, explanation) VALUES (%s, '1', 'user', %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (("volume", "login_failures", "rare_hour")[i % 3], f"user{i * 31 % 10000:05d}",
                     now - timedelta(hours=i * 2.4), now - timedelta(hours=i * 2.4 - 1), (i % 100) / 100,
                     ("low", "medium", "high", "critical")[i % 4], Jsonb({"summary": f"synthetic anomaly {i}"})))
        name = f"bench-viewer-{uuid.uuid4().hex[:6]}"
        _, secret = catalog.create_key(pool, name, Role.VIEWER, "bench")
        document = config.validate(build(), overview_document())
        saved = dashboards.create(pool, owner=f"apikey:{name}", name=f"bench {name}", config=document)
        empty = dashboards.create(pool, owner=f"apikey:{name}", name=f"empty {name}",
                                  config={"version": 1, "name": "empty", "widgets": []})
        return secret, saved.dashboard_id, empty.dashboard_id
    finally:
        pool.close()


def server_side(url: str, runs: int, time_range: str) -> list[float]:
    """The 15 overview widgets queried and rendered in Python, one after another (no HTTP, no browser)."""
    from dashboard import timerange
    from dashboard.render import RenderContext

    registry = build()
    document = config.validate(registry, overview_document())
    pool = db.open_pool(url, min_size=1, max_size=2, name="bench-dashboard-render")
    took = []
    try:
        for run in range(runs + 1):
            now = datetime.now(UTC)
            started = time.perf_counter()
            for widget in document["widgets"]:
                start, end = timerange.resolve({"preset": time_range}, now=now,
                                               override=widget["params"].get("range") or None)
                registry.get(widget["type"]).render(
                    RenderContext(pool=pool, aio_id=widget["id"], start=start, end=end, now=now), widget["params"])
            if run:
                took.append(time.perf_counter() - started)
    finally:
        pool.close()
    return took


def measure(base: str, key: str, dashboard_id: uuid.UUID, empty_id: uuid.UUID, runs: int,
            time_range: str) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {"first": [], "overview": [], "widget": [], "table": [], "empty": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        # Log in to the empty dashboard: it warms the browser's cache of Dash's and Plotly's bundles and the
        # server's imports, not the data, so the overview's first view after the load is timed cold on the server.
        page.goto(f"{base}/dashboard/login?next=/dashboard/d/{empty_id}")
        page.fill("#key", key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/dashboard/d/{empty_id}")
        page.wait_for_function("() => document.querySelector('#aw-grid') && document.querySelector('h1')")
        page.goto(f"{base}/dashboard/")
        if time_range == "24h":
            page.wait_for_function(ALL_DRAWN, arg=15, timeout=600_000)
            results["first"].append(page.evaluate("window.__drawnAt") / 1000)
        else:
            page.locator("#aw-time-preset").click()
            page.get_by_role("option", name={"15m": "Last 15 minutes", "1h": "Last hour", "6h": "Last 6 hours",
                                             "7d": "Last 7 days", "30d": "Last 30 days"}[time_range]).click()
        page.wait_for_function(ALL_DRAWN, arg=15)
        for run in range(runs + 1):  # the first is a warm-up (imports, connection pool, browser cache)
            page.goto(f"{base}/dashboard/")
            page.wait_for_function(ALL_DRAWN, arg=15, polling="raf")
            took = page.evaluate("window.__drawnAt")
            if run:
                results["overview"].append(took / 1000)
        for run in range(runs + 1):
            page.goto(f"{base}/dashboard/d/{empty_id}")
            page.wait_for_function("() => document.querySelector('#aw-grid') && document.querySelector('h1') "
                                   "&& (window.__drawnAt = performance.now())", polling="raf")
            if run:
                results["empty"].append(page.evaluate("window.__drawnAt") / 1000)
        page.goto(f"{base}/dashboard/d/{dashboard_id}")
        page.wait_for_function(ALL_DRAWN, arg=15)

        def card(widget_id: str):
            return page.locator(f"""[id*='"aio_id":"{widget_id}"'][id*='"subcomponent":"card"']""")

        # A chart: "Events over time by outcome" switched between bars and area.
        chart = card("ts-outcome")
        chart.locator("summary").click()
        for run in range(runs + 1):
            chart.locator("""button[id*='"param":"chart"']""").click()
            page.get_by_role("option", name="area" if run % 2 == 0 else "bar", exact=True).click()
            took = page.evaluate(UPDATE, [chart.get_attribute("id"),
                                          chart.locator("[data-render]").get_attribute("data-render")])
            if run:
                results["widget"].append(took / 1000)
        # A table: "Top users by failures", 10 <-> 9 rows.
        table = card("top-users")
        table.locator("summary").click()
        for run in range(runs + 1):
            table.locator("""[id*='"param":"limit"']""").fill(str(9 if run % 2 == 0 else 10))
            took = page.evaluate(UPDATE, [table.get_attribute("id"),
                                          table.locator("[data-render]").get_attribute("data-render")])
            if run:
                results["table"].append(took / 1000)
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing database to load into (default: a throwaway local cluster)")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--range", default="24h", choices=["15m", "1h", "6h", "24h", "7d", "30d"])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with database(args.url, keep=args.keep) as url:
        key, dashboard_id, empty_id = prepare(url, args.events)
        with server(url) as base:
            results = measure(base, key, dashboard_id, empty_id, args.runs, args.range)
        results["server"] = server_side(url, args.runs, args.range)
    print(f"\n{args.events:,} events, global range {args.range}, {args.runs} runs each (after one warm-up):")
    if results["first"]:
        print(f"  {'first view right after the load':<38} {results['first'][0] * 1000:7.0f} ms  (target <= 1500 ms: "
              f"{'meets' if results['first'][0] <= 1.5 else 'MISSES'})")
    for name, target, label in (("overview", 1.5, "overview, all 15 widgets with data"),
                                ("widget", 0.2, "single widget update (a chart)"),
                                ("table", 0.2, "single widget update (a table)")):
        values = results[name]
        p50, p95 = percentile(values, 50), percentile(values, 95)
        verdict = "meets" if p95 <= target else "MISSES"
        print(f"  {label:<38} P50 {p50 * 1000:7.0f} ms  P95 {p95 * 1000:7.0f} ms  "
              f"(target P95 <= {target * 1000:.0f} ms: {verdict})")
    for name, label in (("empty", "baseline: the page with no widgets"),
                        ("server", "baseline: 15 widgets rendered in Python")):
        values = results[name]
        print(f"  {label:<38} P50 {percentile(values, 50) * 1000:7.0f} ms  P95 {percentile(values, 95) * 1000:7.0f} ms")
    print(f"  load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
