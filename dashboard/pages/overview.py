"""The default Security overview: KPI tiles and the widgets an analyst opens the day with."""

from __future__ import annotations

from typing import Any

import dash
from dash import Dash, dcc, html

from dashboard import ids
from dashboard.registry import Registry
from dashboard.widget_aio import grid


def overview_document() -> dict[str, Any]:
    """The overview as a dashboard document (fixed widget ids; a user can copy it and change it)."""
    def w(widget_id: str, type_name: str, title: str, width: int, height: int = 1, **params: Any) -> dict[str, Any]:
        return {"id": widget_id, "type": type_name, "title": title, "w": width, "h": height, "params": params}

    return {"version": 1, "name": "Security overview", "widgets": [
        w("kpi-rate", "kpi", "Events / min", 2, metric="events_per_min"),
        w("kpi-total", "kpi", "Events in range", 2, metric="events_total"),
        w("kpi-failed", "kpi", "Failed logins, last hour", 2, metric="failed_logins_hour"),
        w("kpi-alerts", "kpi", "Active alerts", 2, metric="active_alerts"),
        w("kpi-anomalies", "kpi", "Anomalies today", 2, metric="anomalies_today"),
        w("kpi-lag", "kpi", "Ingest lag (P95)", 2, metric="ingest_lag"),
        w("ts-type", "timeseries", "Events over time by type", 8, group_by="event_type", chart="area"),
        w("ts-outcome", "timeseries", "Events over time by outcome", 4, group_by="outcome", chart="bar"),
        # Tables with inline bars: as readable as a bar chart, clickable, and no chart to draw (speed).
        w("top-users", "top", "Top users by failures", 4, dimension="user_id", outcome="failure", limit=10,
          chart="table"),
        w("top-ips", "top", "Top source IPs by failures", 4, dimension="source_ip", outcome="failure", limit=10,
          chart="table"),
        w("countries", "countries", "Source countries", 4, limit=10),
        w("heatmap", "heatmap", "Hour-of-week activity (UTC)", 6, range="7d"),
        w("anomalies", "anomalies", "Anomaly timeline", 6),
        w("alerts", "alerts", "Alert feed", 6),
        w("latest", "events", "Latest events", 6, limit=10),
    ]}


def layout(registry: Registry, **_query: Any) -> html.Div:
    from dashboard import config

    document = config.validate(registry, overview_document())
    return html.Div([
        dcc.Location(id=ids.NAV_REDIRECT, refresh=True),
        html.Div([html.H1("Security overview"),
                  html.Button("Copy to my dashboards", id=ids.COPY_OVERVIEW, n_clicks=0,
                              className="aw-button small ghost")], className="aw-page-head"),
        grid(registry, document["widgets"], editable=False),
    ])


def register(app: Dash, registry: Registry) -> None:
    dash.register_page("dashboard.pages.overview", path="/", name="Overview", title="Security overview · Auditwatch",
                       layout=lambda **query: layout(registry, **query))
