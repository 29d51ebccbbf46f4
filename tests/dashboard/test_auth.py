"""Sign-in, the session cookie's flags, role checks and revocation, through the Flask app in-process."""

from __future__ import annotations

import re

import pytest

from auditwatch import settings as settings_mod
from auditwatch.app import create_app
from storage.timescale import catalog
from tests.conftest import opened_services


@pytest.fixture(scope="module")
def dash_app(seeded, tmp_path_factory):
    settings = settings_mod.load(config_file=None, environ={}, overrides={
        "database_url": seeded.url, "data_dir": str(tmp_path_factory.mktemp("data")), "pool_min": 1, "pool_max": 4,
        "key_cache_seconds": 0})
    with opened_services(settings) as services:
        app = create_app(settings, services=services)
        app.testing = True
        yield app


def token(client, **kwargs) -> str:
    """The CSRF token of the client's session, as the sign-in form carries it."""
    page = client.get("/dashboard/login", **kwargs).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def login(client, key: str, **kwargs):
    return client.post("/dashboard/login", data={"key": key, "next": "/dashboard/search",
                                                 "csrf_token": token(client, **kwargs)}, **kwargs)


def session_token(client) -> str:
    """The token a signed-in page hands dash-renderer (the readable _csrf_token cookie)."""
    cookie = client.get_cookie("_csrf_token", path="/dashboard")
    assert cookie is not None and cookie.http_only is False
    return cookie.value


def test_anonymous_pages_redirect_to_sign_in_and_callbacks_get_401(dash_app):
    client = dash_app.test_client()
    page = client.get("/dashboard/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/dashboard/login?next=/dashboard/")
    update = client.post("/dashboard/_dash-update-component", json={})
    assert update.status_code == 401 and b"sign in" in update.data
    assert client.post("/dashboard/export", data={"format": "csv"}).status_code == 401
    login_page = client.get("/dashboard/login")
    assert login_page.status_code == 200 and b'name="key"' in login_page.data


def test_a_bad_key_is_refused_and_sets_no_session(dash_app):
    client = dash_app.test_client()
    response = login(client, "aw_" + "0" * 32 + "_nope")
    assert response.status_code == 401
    assert b"unknown, malformed or revoked" in response.data
    assert "Set-Cookie" not in response.headers
    assert client.get("/dashboard/").status_code == 302


def test_a_system_key_may_not_sign_in(dash_app, keys):
    response = login(dash_app.test_client(), keys["system"])
    assert response.status_code == 403 and b"System keys ingest events" in response.data


def test_the_session_cookie_is_httponly_lax_and_secure_over_https(dash_app, keys):
    plain = login(dash_app.test_client(), keys["viewer"])
    assert plain.status_code == 302 and plain.headers["Location"] == "/dashboard/search"
    cookie = next(c for c in plain.headers.getlist("Set-Cookie") if c.startswith("auditwatch_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie
    assert keys["viewer"] not in cookie  # the key itself never travels in the cookie
    https = login(dash_app.test_client(), keys["viewer"], base_url="https://audit.example")
    assert all("Secure" in c for c in https.headers.getlist("Set-Cookie"))


def test_only_a_dashboard_next_target_is_followed(dash_app, keys):
    client = dash_app.test_client()
    response = client.post("/dashboard/login", data={"key": keys["viewer"], "next": "https://evil.example/",
                                                     "csrf_token": token(client)})
    assert response.headers["Location"] == "/dashboard/"
    client = dash_app.test_client()
    response = client.post("/dashboard/login", data={"key": keys["viewer"], "next": "//evil.example/x",
                                                     "csrf_token": token(client)})
    assert response.headers["Location"] == "/dashboard/"


def test_export_is_for_auditors_and_admins_and_is_audited(dash_app, keys, seeded):
    viewer = dash_app.test_client()
    login(viewer, keys["viewer"])
    refused = viewer.post("/dashboard/export", data={"format": "csv", "user_id": "mallory",
                                                     "csrf_token": session_token(viewer)})
    assert refused.status_code == 403 and b"may not export" in refused.data

    auditor = dash_app.test_client()
    login(auditor, keys["auditor"])
    response = auditor.post("/dashboard/export", data={"format": "csv", "user_id": "mallory",
                                                       "csrf_token": session_token(auditor)})
    assert response.status_code == 200
    lines = response.get_data(as_text=True).strip().splitlines()
    assert lines[0].startswith("event_id,timestamp,event_type,user_id")
    assert len(lines) - 1 == sum(1 for e in seeded.events if e.user_id == "mallory") == 60
    assert all(",mallory," in line for line in lines[1:])
    bad = auditor.post("/dashboard/export", data={"format": "csv", "source_ip": "not-an-ip",
                                                  "csrf_token": session_token(auditor)})
    assert bad.status_code == 400 and b"CIDR" in bad.data
    services = dash_app.extensions["auditwatch"]
    with services.pool.connection() as conn:
        audited = conn.execute(
            "SELECT user_id, metadata->>'format' FROM audit_events WHERE event_type = 'export_requested'").fetchall()
    assert ("apikey:dash-auditor", "csv") in audited


def test_a_revoked_key_ends_its_session(dash_app, seeded):
    services = dash_app.extensions["auditwatch"]
    _, secret = catalog.create_key(services.pool, "short-lived", "viewer", "tests")
    client = dash_app.test_client()
    assert login(client, secret).status_code == 302
    assert client.get("/dashboard/").status_code == 200
    catalog.revoke_key(services.pool, "short-lived", "tests")
    assert client.get("/dashboard/").status_code == 302


def test_the_session_secret_is_generated_once_and_shared(tmp_path):
    import threading

    from dashboard.auth import secret_key

    path = tmp_path / "data" / "dashboard-secret-key"
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(secret_key("", path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results[0]) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert secret_key("", path) == results[0]
    assert secret_key("configured-secret-value-that-is-long-enough", path).startswith("configured")
    assert list(path.parent.iterdir()) == [path]  # no temp files left behind


# -- cross-site request forgery (issue 14 #13) ----------------------------------------------------

def test_sign_in_needs_the_forms_token_and_our_origin(dash_app, keys):
    client = dash_app.test_client()
    missing = client.post("/dashboard/login", data={"key": keys["auditor"], "next": "/dashboard/"})
    assert missing.status_code == 403 and b"security token" in missing.data
    forged = client.post("/dashboard/login", data={"key": keys["auditor"], "csrf_token": "x" * 43})
    assert forged.status_code == 403
    cross = client.post("/dashboard/login", data={"key": keys["auditor"], "csrf_token": token(client)},
                        headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and b"another site" in cross.data
    assert client.get("/dashboard/").status_code == 302  # none of them signed in
    assert login(client, keys["auditor"]).status_code == 302
    assert client.get("/dashboard/").status_code == 200


def test_a_new_session_gets_a_new_token(dash_app, keys):
    client = dash_app.test_client()
    before = token(client)
    login(client, keys["viewer"])
    assert session_token(client) != before


def test_export_is_a_post_with_the_token_from_our_own_pages(dash_app, keys, seeded):
    auditor = dash_app.test_client()
    login(auditor, keys["auditor"])
    got = auditor.get("/dashboard/export?format=csv&user_id=mallory")  # only the app's not-found page
    assert "Content-Disposition" not in got.headers and ",mallory," not in got.get_data(as_text=True)
    form = {"format": "csv", "user_id": "mallory"}
    assert auditor.post("/dashboard/export", data=form).status_code == 403
    cross = auditor.post("/dashboard/export", data={**form, "csrf_token": session_token(auditor)},
                         headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    foreign = auditor.post("/dashboard/export", data={**form, "csrf_token": session_token(auditor)},
                           headers={"Referer": "https://evil.example/page"})
    assert foreign.status_code == 403
    ok = auditor.post("/dashboard/export", data={**form, "csrf_token": session_token(auditor)},
                      headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"})
    assert ok.status_code == 200 and ok.get_data(as_text=True).count(",mallory,") == 60


def test_dash_callbacks_need_the_token_header(dash_app, keys):
    client = dash_app.test_client()
    login(client, keys["viewer"])
    client.get("/dashboard/")
    without = client.post("/dashboard/_dash-update-component", json={})
    assert without.status_code == 403 and b"security token" in without.data
    cross = client.post("/dashboard/_dash-update-component", json={},
                        headers={"X-CSRFToken": session_token(client), "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    with_token = client.post("/dashboard/_dash-update-component", json={},
                             headers={"X-CSRFToken": session_token(client)})
    assert with_token.status_code != 403  # past the guard (Dash itself refuses the empty body)
    assert client.post("/dashboard/logout").status_code == 403  # sign-out is a token-carrying form too
    assert client.post("/dashboard/logout", data={"csrf_token": session_token(client)}).status_code == 302


def test_a_search_link_from_another_site_asks_before_running(dash_app, keys):
    client = dash_app.test_client()
    login(client, keys["auditor"])
    cross = client.get("/dashboard/search?user_id=ceo", headers={"Sec-Fetch-Site": "cross-site"})
    page = cross.get_data(as_text=True)
    assert cross.status_code == 200 and "followed a link from another site" in page
    assert 'href="/dashboard/search?user_id=ceo"' in page and "_dash-config" not in page  # the app did not load
    same = client.get("/dashboard/search?user_id=ceo", headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and "_dash-config" in same.get_data(as_text=True)
    typed = client.get("/dashboard/search?user_id=ceo", headers={"Sec-Fetch-Site": "none"})  # typed or bookmarked
    assert "_dash-config" in typed.get_data(as_text=True)
    plain = client.get("/dashboard/search", headers={"Sec-Fetch-Site": "cross-site"})  # no parameters: harmless
    assert "_dash-config" in plain.get_data(as_text=True)
