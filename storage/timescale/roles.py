"""Least-privilege roles: the application role may append events but never change or delete one.

``roles.sql`` is the script, documented for external servers; ``apply`` runs it as the owner (the role
that migrates) on the embedded database and in tests.
"""

from __future__ import annotations

from importlib import resources

import psycopg

APP_ROLE = "auditwatch_app"


def script() -> str:
    return resources.files("storage.timescale").joinpath("roles.sql").read_text()


def apply(conn: psycopg.Connection, *, app_role: str = APP_ROLE) -> None:
    """Create the app role if missing and (re)grant it exactly what roles.sql says; run after migrating."""
    with conn.transaction():
        conn.execute("SELECT pg_catalog.set_config('auditwatch.app_role', %s, true)", (app_role,))
        conn.execute(script())


def exists(owner_url: str, role: str = APP_ROLE) -> bool | None:
    """Whether ``role`` exists on the server (None: the server cannot be reached)."""
    try:
        with psycopg.connect(owner_url, connect_timeout=10) as conn:
            return conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)).fetchone() is not None
    except psycopg.OperationalError:
        return None
