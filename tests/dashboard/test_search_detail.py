"""The search page's event detail, drawn with the page (``dashboard.pages.search``): what the address names, a
refused id, and a database that does not answer, each shown in the detail instead of breaking the page."""

from __future__ import annotations

import uuid

import flask
from psycopg_pool import ConnectionPool

from dashboard.auth import DashboardUser
from dashboard.context import EXTENSION, DashboardContext
from dashboard.pages.search import event_detail, layout
from storage.auth import Role
from tests.dashboard.conftest import text_of


def _app(pool: ConnectionPool, audited: list) -> flask.Flask:
    app = flask.Flask(__name__)
    app.extensions[EXTENSION] = DashboardContext(pool=pool, authenticate=lambda _key: None,
                                                 audit=lambda *args, **fields: audited.append((args, fields)))
    return app


def test_a_database_that_does_not_answer_is_said_in_the_detail_and_the_page_still_draws():
    # Nothing listens on port 1: every connection is refused, as when PostgreSQL is stopped.
    pool = ConnectionPool("postgresql://auditwatch@127.0.0.1:1/auditwatch?connect_timeout=1", min_size=0, max_size=1,
                          timeout=1.0, open=True)
    audited: list = []
    try:
        with _app(pool, audited).test_request_context("/dashboard/search"):
            flask.g.dashboard_user = DashboardUser(uuid.uuid4(), "analyst", Role.VIEWER)
            shown = event_detail(str(uuid.uuid4()))
            assert "The database did not answer; reload in a moment" in text_of(shown)
            page = layout(event_id=str(uuid.uuid4()), user_id="mallory")
            assert "The database did not answer" in text_of(page)
            assert "Event search" in text_of(page)
            # A refused id never reaches the database, and says what is wrong.
            assert text_of(event_detail("<img src=x>")) == "That is not an event id."
            assert "Click an event" in text_of(layout())
    finally:
        pool.close()
    assert audited == []  # nothing was read, so no read is recorded
