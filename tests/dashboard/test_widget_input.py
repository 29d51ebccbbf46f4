"""Issue 14 #4: the widget config, range and cross-filter a browser sends are checked on the server, and
widget reads are audited. Each case calls the registered Dash ``draw`` callback itself (no browser), with a
forged config as its State, against a real database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from dash._callback_context import context_value
from dash._utils import AttributeDict
from flask import Flask, g

import dashboard
from dashboard import ids
from dashboard.auth import DashboardUser
from dashboard.config import new_widget
from dashboard.registry import build
from storage.auth import Role
from storage.events import EventRecord, Outcome
from storage.timescale import catalog
from storage.timescale.writer import EventWriter

N_EVENTS = 80


@pytest.fixture
def draw(services) -> Iterator[Any]:
    """Call the dashboard's ``draw`` callback as a signed-in viewer; ``trigger`` is the input that fired."""
    now = datetime.now(UTC)
    EventWriter(services.pool).write([EventRecord(
        event_id=uuid.uuid4(), timestamp=now - timedelta(seconds=10 + i), received_at=now, event_type="user_login",
        user_id=f"user{i % 5}", outcome=Outcome.FAILURE if i % 2 else Outcome.SUCCESS) for i in range(N_EVENTS)])
    key, _ = catalog.create_key(services.pool, "forger", Role.VIEWER, "tests")
    server = Flask("widget-input-test")
    app = dashboard.mount(server, pool=services.pool, authenticate=services.authenticate, audit=services.audit,
                          audit_record=services.audit_record, secret_key="test-secret")
    callback = next(c["callback"] for c in app.callback_map.values()
                    if getattr(c.get("callback"), "__wrapped__", None) and c["callback"].__wrapped__.__name__ == "draw")

    def call(widget: Any, *, time_range: Any = None, crossfilter: Any = None, trigger: str | None = None):
        with server.test_request_context("/dashboard/_dash-update-component", method="POST"):
            g.dashboard_user = DashboardUser(key.key_id, key.name, key.role)
            token = context_value.set(AttributeDict(
                triggered_inputs=[{"prop_id": f"{trigger}.data", "value": 1}] if trigger else []))
            try:
                body, title = callback.__wrapped__(None, time_range, crossfilter, 0, 0, widget)
            finally:
                context_value.reset(token)
        return repr(body), title

    return call


def events_widget(**params: Any) -> dict[str, Any]:
    widget = new_widget(build(), "events")
    widget["params"].update(params)
    return widget


def widget_reads(conn: psycopg.Connection, outcome: str = "success") -> list[dict]:
    return [r[0] for r in conn.execute(
        "SELECT metadata FROM audit_events WHERE event_type = 'query_executed' AND user_id = 'apikey:forger' "
        "AND metadata->>'route' = 'dashboard_widget' AND outcome = %s ORDER BY received_at", (outcome,))]


def rows_shown(body: str) -> int:
    return body.count("'aw-o-")  # one outcome cell per event row (as a component or inside a dashboard.tree.Tree)


def test_a_huge_limit_is_refused_before_anything_is_read(draw, conn):
    body, title = draw(events_widget(limit=50_000_000))
    assert "Cannot show this widget" in body and "widget.params.limit: must be a whole number from 1 to 50" in body
    assert rows_shown(body) == 0 and title == "Invalid widget"
    refused = widget_reads(conn, "failure")
    assert len(refused) == 1 and "limit" in refused[0]["refused"] and refused[0]["widget_type"] == "events"


@pytest.mark.parametrize(("forged", "message"), [
    ({**events_widget(), "type": "sql_console"}, "unknown widget type 'sql_console'"),
    (events_widget(limit="10; DROP TABLE users"), "must be a whole number from 1 to 50"),
    (events_widget(limit=True), "must be a whole number from 1 to 50"),
    (events_widget(event_types="user_login' OR 1=1"), "must be a list of values from"),
    (events_widget(outcome=["success"]), "is not one of"),
    (events_widget(user_id="x" * 10_000), "longer than 256 characters"),
    ({**events_widget(), "params": {"limit": 10, "query": "SELECT 1"}}, "events has no parameter 'query'"),
    ({**events_widget(), "w": 10**9}, "widget.w: must be one of"),
    ({**events_widget(), "id": {"$ne": 1}}, "is not a widget config"),
    ("not a widget", "is not a widget config"),
])
def test_forged_configs_are_refused_with_a_message(draw, forged, message):
    body, _ = draw(forged)
    assert "Cannot show this widget" in body and message in body
    assert rows_shown(body) == 0


@pytest.mark.parametrize(("time_range", "crossfilter", "message"), [
    ({"preset": "custom", "start": "1900-01-01T00:00", "end": "2026-01-01T00:00"}, None, "longer than 400 days"),
    ({"preset": ["24h"]}, None, "must be short text"),
    ({"preset": "custom", "start": "0001-01-01T00:00:00+01:00", "end": "2026-01-01T00:00"}, None,
     "is not a date and time"),
    ({"preset": "24h", "where": "1=1"}, None, "must hold only preset, start, end"),
    (None, {"metadata": "x"}, "cannot filter by 'metadata'"),
    (None, {"user_id": "u" * 5000}, "cross-filter.user_id: must be text of at most 256"),
    (None, {"outcome": "evil"}, "cross-filter.outcome: must be one of"),
    (None, {"source_ip": ["10.0.0.0/8"]}, "cross-filter.source_ip"),
    (None, "user0", "cross-filter: must be a mapping"),
])
def test_forged_ranges_and_cross_filters_are_refused(draw, conn, time_range, crossfilter, message):
    body, _ = draw(events_widget(), time_range=time_range, crossfilter=crossfilter)
    assert "Cannot show this widget" in body and message in body
    assert rows_shown(body) == 0 and widget_reads(conn) == []


def test_each_draw_of_a_widget_is_audited_once_and_refresh_ticks_are_not(draw, conn):
    widget = events_widget(limit=25)
    body, title = draw(widget)  # the widget appears
    assert rows_shown(body) == 25 and title == widget["title"]
    [read] = widget_reads(conn)
    assert read["widget_type"] == "events" and read["params"]["limit"] == 25 and read["filters"] == {}
    assert datetime.fromisoformat(read["end"]) - datetime.fromisoformat(read["start"]) == timedelta(hours=24)

    draw(widget, trigger=ids.TICK)  # the auto-refresh re-reads the same widget: not recorded again
    draw(widget, trigger=ids.ALERTS_VERSION)
    assert len(widget_reads(conn)) == 1

    body, _ = draw(widget, crossfilter={"user_id": "user1"}, trigger=ids.CROSSFILTER)
    assert rows_shown(body) == N_EVENTS // 5
    reads = widget_reads(conn)
    assert len(reads) == 2 and reads[1]["filters"] == {"user_id": "user1"}
    # Recorded through the one self-audit builder: sealed, attributed, with the widget as the resource.
    assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'query_executed' "
                        "AND resource_id = %s AND source = 'auditwatch' AND batch_seq IS NOT NULL",
                        (widget["id"],)).fetchone()[0] == 2
