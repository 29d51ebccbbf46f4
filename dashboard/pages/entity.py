"""Entity view: one user or source IP — its events over time, baseline vs actual, anomalies, alerts."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import dash
from dash import Dash, dcc, html

from dashboard import config
from dashboard.registry import Registry
from dashboard.widget_aio import grid

KINDS = {"user": "User", "ip": "Source IP"}


def entity_document(kind: str, value: str) -> dict[str, Any]:
    """The entity view as a dashboard document of the same widgets, filtered to the entity."""
    key = "user_id" if kind == "user" else "source_ip"
    other = "source_ip" if kind == "user" else "user_id"
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:20] or "x"

    def w(name: str, type_name: str, title: str, width: int, **params: Any) -> dict[str, Any]:
        return {"id": f"e-{slug}-{name}"[:32], "type": type_name, "title": title, "w": width, "h": 1,
                "params": {key: value, **params}}

    return {"version": 1, "name": f"{KINDS[kind]} {value}", "widgets": [
        w("total", "kpi", "Events in range", 3, metric="events_total"),
        w("rate", "kpi", "Events / min", 3, metric="events_per_min"),
        w("types", "top", "By event type", 3, dimension="event_type", outcome="", chart="table", limit=8),
        w("other", "top", "Source IPs" if kind == "user" else "Users", 3, dimension=other, outcome="",
          chart="table", limit=8),
        w("timeline", "timeseries", "Events over time", 12, group_by="event_type,outcome", chart="bar"),
        w("baseline", "baseline", "Baseline vs actual (hourly)", 6),
        w("anomalies", "anomalies", "Anomalies", 6),
        w("alerts", "alerts", "Alerts", 6, states=["pending", "firing", "resolved"]),
        w("events", "events", "Latest events", 6, limit=15),
    ]}


def layout(registry: Registry, kind: str = "user", value: str = "", **_query: Any) -> html.Div:
    kind = kind if kind in KINDS else "user"
    value = (value or "").strip()[:256]
    problem = None
    if kind == "ip" and value:
        try:
            value = str(ipaddress.ip_network(value, strict=False)).removesuffix("/32").removesuffix("/128")
        except ValueError:
            problem = f"{value!r} is not an IP address or CIDR block"
    form = html.Form([
        html.Select([html.Option(label, value=k, selected=k == kind) for k, label in KINDS.items()], name="kind",
                    className="aw-input", **{"aria-label": "Entity kind"}),
        # Dash 4 wraps the field in a container (which gets the className); the flex row shrank that
        # container to the field's 16 px minimum, so the stylesheet gives it a width (aw-entity-id).
        dcc.Input(name="value", value=value, placeholder="user id or IP address", className="aw-input aw-entity-id",
                  id="aw-entity-value"),
        html.Button("Open", type="submit", className="aw-button"),
    ], method="get", action="/dashboard/entity", className="aw-entity-form")
    head = html.Div([html.H1(f"{KINDS[kind]} {value}" if value else "Entity view"), form], className="aw-page-head")
    if problem:
        return html.Div([head, html.Div(problem, className="aw-error")])
    if not value:
        return html.Div([head, html.Div("Enter a user id or an IP address to see its activity, baseline, "
                                        "anomalies and alerts. Chart and table clicks elsewhere lead here too.",
                                        className="aw-empty")])
    document = config.validate(registry, entity_document(kind, value))
    return html.Div([head, grid(registry, document["widgets"], editable=False)])


def register(app: Dash, registry: Registry) -> None:
    dash.register_page("dashboard.pages.entity", path="/entity", name="Entity", title="Entity · Auditwatch",
                       layout=lambda **query: layout(registry, **query))
