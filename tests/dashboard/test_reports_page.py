"""The Reports page in headless Chromium against the real server: an auditor generates a report, finds it in the
history, downloads its files (checked against the stored hashes), every step audited; a viewer is refused."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import psycopg
import pytest

from storage.timescale import db
from storage.timescale import reports as stored_reports
from tests.dashboard.browser import TIMEOUT, expect, shot, sign_in

GENERATE_TIMEOUT = 180_000  # verify + WeasyPrint on a loaded shared machine


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    ctx.set_default_timeout(TIMEOUT)
    yield ctx
    ctx.close()


def choose(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id}").click()
    page.locator(".Select-menu-outer, .dash-dropdown-options, [role=listbox]").get_by_text(option, exact=True).click()


def _history(url: str) -> list[stored_reports.StoredReport]:
    pool = db.open_pool(url, min_size=1, max_size=1, name="reports-page-check")
    try:
        return stored_reports.history(pool, limit=100)
    finally:
        pool.close()


def _audited(url: str, event_type: str, route: str) -> list[tuple[str, str | None, dict]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT user_id, resource_id, metadata FROM audit_events WHERE event_type = %s "
                            "AND metadata->>'route' = %s ORDER BY timestamp", (event_type, route)).fetchall()


def test_an_auditor_generates_a_report_sees_it_in_the_history_and_downloads_it(context, live, keys, seeded,
                                                                               tmp_path: Path):
    before = {r.report_id for r in _history(seeded.url)}
    page = context.new_page()
    sign_in(page, live.url, keys["auditor"], "/dashboard/reports")
    expect(page.locator("h1")).to_have_text("Reports")
    expect(page.locator("#aw-report-about")).to_contain_text("CC6.2")  # the access review's controls
    choose(page, "aw-report-name", "Authentication failures and lockouts")
    expect(page.locator("#aw-report-about")).to_contain_text("10.2.1.4")
    choose(page, "aw-report-scope-kind", "One user")
    page.click("#aw-report-generate")
    expect(page.locator("#aw-report-status")).to_contain_text("Give the one user")  # a value is needed
    page.fill("#aw-report-scope-value", seeded.attacker)
    page.click("#aw-report-generate")
    expect(page.locator("#aw-report-status .aw-spinner")).to_have_count(1)  # progress while it runs
    shot(page, "30-reports-generating")
    expect(page.locator("#aw-report-status")).to_contain_text("Generated auth-failures", timeout=GENERATE_TIMEOUT)

    new = [r for r in _history(seeded.url) if r.report_id not in before]
    assert len(new) == 1
    run = new[0]
    assert (run.name, run.scope, run.generated_by) == ("auth-failures", f"user:{seeded.attacker}", "apikey:dash-auditor")
    assert run.figures, "the stored run keeps its figures"
    row = page.locator(f"tr[data-report-id='{run.report_id}']")
    expect(row).to_contain_text("Authentication failures and lockouts")
    expect(row).to_contain_text(f"user:{seeded.attacker}")
    expect(row).to_contain_text("apikey:dash-auditor")
    expect(row).to_contain_text(run.sha256[:12])
    shot(page, "31-reports-history")

    for label, name in (("PDF", "report.pdf"), ("XLSX", "appendix.xlsx")):
        with page.expect_download() as caught:
            row.get_by_role("button", name=label, exact=True).click()
        saved = tmp_path / name
        caught.value.save_as(saved)
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == run.files[name]
        assert caught.value.suggested_filename.endswith(name)
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")

    asked = _audited(seeded.url, "query_executed", "report_generate")
    assert [(who, rid) for who, rid, _ in asked][-1] == ("apikey:dash-auditor", str(run.report_id))
    assert asked[-1][2]["scope"] == f"user:{seeded.attacker}" and asked[-1][2]["report"] == "auth-failures"
    downloads = [(rid, meta["file"], meta["sha256"]) for _, rid, meta in
                 _audited(seeded.url, "export_requested", "report_download")]
    assert downloads[-2:] == [(str(run.report_id), "report.pdf", run.files["report.pdf"]),
                              (str(run.report_id), "appendix.xlsx", run.files["appendix.xlsx"])]
    with psycopg.connect(seeded.url) as conn:  # the run itself, stored with its record (reports.engine.store)
        assert conn.execute("SELECT user_id FROM audit_events WHERE event_type = 'report_generated' "
                            "AND resource_id = %s", (str(run.report_id),)).fetchall() == [("apikey:dash-auditor",)]

    # A download without the page's CSRF token is refused, and so is a file the run did not record.
    status = page.evaluate("""async (rid) => {
        const r = await fetch('/dashboard/reports/download', {method: 'POST',
            body: new URLSearchParams({report_id: rid, file: 'report.pdf'})});
        return r.status; }""", str(run.report_id))
    assert status == 403
    token = next(c["value"] for c in context.cookies() if c["name"] == "_csrf_token")
    answer = page.evaluate("""async ([rid, token]) => {
        const r = await fetch('/dashboard/reports/download', {method: 'POST',
            body: new URLSearchParams({report_id: rid, file: '../../dashboard-secret-key', csrf_token: token})});
        return [r.status, await r.text()]; }""", [str(run.report_id), token])
    assert answer[0] == 404 and "has no file" in json.loads(answer[1])["message"]


def test_a_viewer_is_refused_the_page_the_callbacks_and_the_downloads(context, live, keys, seeded):
    page = context.new_page()
    sign_in(page, live.url, keys["viewer"])
    answer = page.goto(live.url + "/dashboard/reports")
    assert answer is not None and answer.status == 403
    expect(page.locator("#aw-reports-403 h1")).to_contain_text("403")
    expect(page.locator("#aw-reports-403")).to_contain_text("viewer key")
    shot(page, "32-reports-viewer-403")
    page.goto(live.url + "/dashboard/ops")  # a light page (no charts), so the click is not queued behind drawing
    expect(page.locator("h1")).to_have_text("Operations", timeout=60_000)
    # in-app navigation (no request for the page itself): the same refusal, drawn by Dash
    page.locator(".aw-nav-link", has_text="Reports").click(timeout=60_000)
    expect(page.locator("#aw-reports-403")).to_contain_text("Reports need the auditor role")
    assert page.locator("#aw-report-generate").count() == 0
    token = next(c["value"] for c in context.cookies() if c["name"] == "_csrf_token")
    status = page.evaluate("""async ([rid, token]) => {
        const r = await fetch('/dashboard/reports/download', {method: 'POST',
            body: new URLSearchParams({report_id: rid, file: 'report.pdf', csrf_token: token})});
        return r.status; }""", [str(uuid.uuid4()), token])
    assert status == 403
