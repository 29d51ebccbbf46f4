"""Sign-in with an API key, kept as a session cookie; the same roles as the API decide what each user may do."""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import flask
import psycopg
from flask import Flask, g, redirect, request, session
from flask.sessions import SecureCookieSessionInterface
from markupsafe import escape

from dashboard import csrf
from dashboard.context import current
from dashboard.errors import NotAllowed
from storage.auth import ROLE_PERMISSIONS, Permission, Role
from storage.errors import DatabaseUnavailable
from storage.timescale import catalog

PREFIX = "/dashboard/"
PUBLIC_PREFIXES = ("/dashboard/login", "/dashboard/assets/", "/dashboard/_dash-component-suites/",
                   "/dashboard/_favicon.ico")
COOKIE_NAME = "auditwatch_session"


@dataclass(frozen=True)
class DashboardUser:
    key_id: uuid.UUID
    name: str
    role: Role

    @property
    def principal(self) -> str:
        """The same principal the API audits this key's actions under."""
        return f"apikey:{self.name}"

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    @property
    def can_export(self) -> bool:
        return self.can(Permission.EXPORT)

    @property
    def can_configure(self) -> bool:
        """Acknowledging and silencing alerts: the same permission the alerts API asks for."""
        return self.can(Permission.RESPOND_TO_ALERTS)


def user() -> DashboardUser:
    """The signed-in user of this request (the guard has already refused anonymous ones)."""
    found = g.get("dashboard_user")
    if found is None:
        raise NotAllowed("sign in again: the session has ended")
    return found


def secret_key(configured: str, path: Path) -> str:
    """The configured session secret, or one generated once into the data directory (mode 0600)."""
    if configured:
        return configured
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole to a private temp file, then published with link(), which fails if another
        # server worker won the race: every worker ends up signing with the same secret.
        value = secrets.token_urlsafe(48)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".dashboard-secret-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(value + "\n")
            os.chmod(temp, 0o600)
            try:
                os.link(temp, path)
                return value
            except FileExistsError:
                pass
        finally:
            os.unlink(temp)
    value = path.read_text().strip()
    if len(value) < 32:
        raise RuntimeError(f"{path} holds no usable session secret; delete it and restart")
    return value


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app) or (flask.has_request_context() and request.is_secure))


def install(server: Flask, *, secret: str, session_hours: float) -> None:
    """Session settings, the sign-in routes and the guard in front of every dashboard URL."""
    server.secret_key = secret
    server.session_interface = _SessionInterface()
    server.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_HTTPONLY=True,
                         SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_PATH="/dashboard",
                         PERMANENT_SESSION_LIFETIME=timedelta(hours=session_hours))

    @server.before_request
    def guard() -> Any:
        if not request.path.startswith(PREFIX) and request.path != PREFIX.rstrip("/"):
            return None
        callback = request.path.startswith("/dashboard/_dash")
        public = request.path.startswith(PUBLIC_PREFIXES)
        try:
            g.dashboard_user = who = _session_user()
        except (DatabaseUnavailable, psycopg.OperationalError) as exc:
            # The session's key cannot be looked up. Scripts, styles and the sign-in page need no database;
            # a page says so in words and tries again; a callback answers 503, which assets/outage.js shows.
            if public:
                g.dashboard_user = who = None
            elif request.method == "GET" and not callback:
                return _outage_response(exc)
            else:
                raise
        if who is None and not public:
            if request.method == "GET" and not callback:
                return redirect(f"/dashboard/login?next={_safe_next(request.full_path)}")
            return flask.Response('{"code":"unauthenticated","message":"sign in again at /dashboard/login"}', 401,
                                  mimetype="application/json")
        if request.method not in csrf.SAFE_METHODS:
            return csrf.check_unsafe(is_callback=callback)
        if who is not None and request.query_string and not public and not callback and csrf.cross_site():
            return csrf.confirmation_page(request.full_path.rstrip("?"))
        return None

    csrf.install(server)
    server.add_url_rule("/dashboard/login", "dashboard_login", _login, methods=["GET", "POST"])
    server.add_url_rule("/dashboard/logout", "dashboard_logout", _logout, methods=["POST"])


def _session_user() -> DashboardUser | None:
    raw = session.get("key_id")
    if not raw:
        return None
    context = current()
    try:
        key = context.session_key(uuid.UUID(raw), lambda key_id: catalog.key_by_id(context.pool, key_id))
    except ValueError:
        key = None
    if key is None or key.revoked_at is not None or key.role == Role.SYSTEM:
        session.clear()  # a revoked key ends its sessions on their next request
        return None
    return DashboardUser(key.key_id, key.name, key.role)


def _safe_next(target: str | None) -> str:
    """Only ever redirect within the dashboard after sign-in."""
    if not target or not target.startswith(PREFIX) or target.startswith("//") or "\\" in target:
        return PREFIX
    return target.rstrip("?")


def _login() -> Any:
    target = _safe_next(request.values.get("next"))
    try:
        if request.method == "GET":
            if _session_user() is not None:
                return redirect(target)
            return _login_page(target, None)
        key = current().authenticate((request.form.get("key") or "").strip()[:512])
    except (DatabaseUnavailable, psycopg.OperationalError) as exc:  # no key can be checked now: say so
        return _outage_response(exc)
    if key is None:
        return _login_page(target, "That API key is unknown, malformed or revoked."), 401
    if key.role == Role.SYSTEM:
        return _login_page(target, "System keys ingest events; sign in with a viewer, auditor or admin key."), 403
    session.clear()  # a new session, and with it a new CSRF token
    session.permanent = True
    session["key_id"] = str(key.key_id)
    csrf.token()
    current().audit("user_login", f"apikey:{key.name}", source_ip=request.remote_addr,
                    user_agent=request.user_agent.string or None, metadata={"via": "dashboard", "role": str(key.role)})
    return redirect(target)


def _logout() -> Any:
    session.clear()
    return redirect("/dashboard/login")


def _outage_response(exc: Exception) -> tuple[str, int, dict[str, str]]:
    """What a signed-in user who opens a page while the database does not answer sees: words, not a JSON
    error, and the page opening by itself once the database is back (503, retry in 10 s)."""
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="10">
<title>Database unavailable · Auditwatch</title>
<link rel="stylesheet" href="/dashboard/assets/style.css"></head>
<body class="aw-login-body"><main class="aw-login" id="aw-outage-page">
<h1><span class="aw-logo">◉</span> Auditwatch</h1>
<p class="aw-login-error" role="alert">Auditwatch cannot reach its database ({escape(type(exc).__name__)}).</p>
<p class="aw-note">This page tries again every 10 seconds and opens by itself once the database answers.
Events acknowledged before the outage are kept; what senders send meanwhile is refused or queued, never
acknowledged and then lost.
Operators: <code>auditwatch db status</code> and the server's log say what failed.</p>
</main></body></html>"""
    return page, 503, {"Retry-After": "10"}


def _login_page(target: str, error: str | None) -> str:
    message = f'<p class="aw-login-error" role="alert">{escape(error)}</p>' if error else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in · Auditwatch</title>
<link rel="stylesheet" href="/dashboard/assets/style.css"></head>
<body class="aw-login-body"><main class="aw-login">
<h1><span class="aw-logo">◉</span> Auditwatch</h1>
<p class="aw-note">Sign in with an API key (viewer, auditor or admin). Create one with
<code>auditwatch keys create --role viewer --name you</code>.</p>
{message}
<form method="post" action="/dashboard/login">
<input type="hidden" name="{csrf.FIELD}" value="{escape(csrf.token())}">
<input type="hidden" name="next" value="{escape(target)}">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus
 placeholder="aw_…" spellcheck="false">
<button type="submit" class="aw-button">Sign in</button>
</form></main></body></html>"""
