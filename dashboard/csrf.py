"""Cross-site request forgery defences for the dashboard (issue 14 #13).

The session cookie is ``SameSite=Lax``: a browser still sends it on a top-level GET from another
site, so a link on any page could make a signed-in auditor run a search (an audited read in their
name) or an export. Three checks close that:

- every state-changing request (sign-in, sign-out, Dash callbacks, export) must come from our own
  origin (``Sec-Fetch-Site``, else ``Origin``/``Referer``) and carry the session's token: a hidden
  form field, or for Dash callbacks the ``X-CSRFToken`` header that dash-renderer copies from the
  readable ``_csrf_token`` cookie (double submit, bound to the signed session);
- export is a POST of a form holding the token; a GET is refused;
- a page opened from another site with parameters (``/dashboard/search?user_id=...``) does not run:
  the user gets a page that says where the link came from and continues with one click of their own.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

import flask
from flask import Flask, request, session
from markupsafe import escape

SESSION_KEY = "csrf"
COOKIE = "_csrf_token"  # dash-renderer's default csrf_token_name
HEADER = "X-CSRFToken"  # ... and csrf_header_name
FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token() -> str:
    """This session's token (made on first use; a new session after sign-in gets a new one)."""
    value = session.get(SESSION_KEY)
    if not isinstance(value, str) or len(value) < 32:
        value = secrets.token_urlsafe(32)
        session[SESSION_KEY] = value
    return value


def _matches(sent: str | None) -> bool:
    expected = session.get(SESSION_KEY)
    return bool(sent) and isinstance(expected, str) and hmac.compare_digest(sent.encode(), expected.encode())


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else "invalid"


def cross_site() -> bool:
    """Whether the browser says this request was started by another site."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    ours = _origin(request.host_url)
    theirs = _origin(request.headers.get("Origin")) or _origin(request.headers.get("Referer"))
    return theirs is not None and theirs != ours


def refusal(why: str) -> flask.Response:
    return flask.Response(flask.json.dumps({"code": "csrf_refused", "message": why}), 403,
                          mimetype="application/json")


def check_unsafe(*, is_callback: bool) -> flask.Response | None:
    """For a POST (or other unsafe method): None when it is ours, else the 403 to answer."""
    if cross_site():
        return refusal("this request came from another site; use the dashboard itself")
    sent = request.headers.get(HEADER) if is_callback else request.form.get(FIELD)
    if not _matches(sent):
        return refusal("the page's security token is missing or stale; reload the page and try again")
    return None


def confirmation_page(target: str) -> str:
    """What a cross-site link to a page with parameters gets instead of running it."""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Continue? · Auditwatch</title>
<link rel="stylesheet" href="/dashboard/assets/style.css"></head>
<body class="aw-login-body"><main class="aw-login">
<h1><span class="aw-logo">◉</span> Auditwatch</h1>
<p class="aw-note">You followed a link from another site. Opening it runs a search of the audit log in your
name (and records it). Continue only if you meant to.</p>
<p><code>{escape(target)}</code></p>
<p><a class="aw-button" href="{escape(target)}" rel="noreferrer">Continue</a>
<a class="aw-button ghost" href="/dashboard/">Go to the dashboard</a></p>
</main></body></html>"""


def install(server: Flask) -> None:
    """Hand dash-renderer the token as a readable cookie beside the (HttpOnly) session cookie."""

    @server.after_request
    def _token_cookie(response: flask.Response) -> flask.Response:
        if not request.path.startswith("/dashboard"):
            return response
        value = session.get(SESSION_KEY)
        if isinstance(value, str) and request.cookies.get(COOKIE) != value:
            response.set_cookie(COOKIE, value, path="/dashboard", samesite="Strict", httponly=False,
                                secure=request.is_secure)
        return response


def hidden_field() -> Any:
    """The token as a form field, for forms the dashboard renders server-side (Dash html)."""
    from dash import dcc

    return dcc.Input(type="hidden", name=FIELD, value=token())
