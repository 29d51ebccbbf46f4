"""The frame around every page: navigation, global time range, auto-refresh, cross-filter bar, modal.

Its callbacks are the global ones: range and refresh (clientside, pausing while the tab is
hidden), cross-filtering from any chart or table, the anomaly explanation, alert actions.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import dash
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from flask import g

from dashboard import csrf, ids
from dashboard.auth import user
from dashboard.context import current
from dashboard.render import search_href
from dashboard.timerange import DEFAULT, PRESETS
from dashboard.tree import click_value
from dashboard.widgets import anomalies as anomaly_widget
from dashboard.widgets.alerts import SILENCE_HOURS
from storage.timescale import anomalies as anomaly_store

FILTER_KEYS = ("event_type", "outcome", "user_id", "source_ip")
FILTER_LABELS = {"event_type": "type", "outcome": "outcome", "user_id": "user", "source_ip": "IP"}
REFRESH_OPTIONS = [{"label": "Refresh: off", "value": 0}, {"label": "Every 10 s", "value": 10},
                   {"label": "Every 30 s", "value": 30}, {"label": "Every 1 min", "value": 60}]
NAV = (("Overview", "/dashboard/"), ("Search", "/dashboard/search"), ("Entity", "/dashboard/entity"),
       ("Alerts", "/dashboard/alerts"), ("Dashboards", "/dashboard/dashboards"), ("Reports", "/dashboard/reports"),
       ("Operations", "/dashboard/ops"))


def layout() -> html.Div:
    """The app layout: served once per page load, pages swap inside ``dash.page_container``."""
    who = g.get("dashboard_user")  # None only while Dash validates the layout outside a signed-in request
    return html.Div([
        dcc.Store(id=ids.TIME_RANGE, storage_type="memory"),
        dcc.Store(id=ids.CROSSFILTER, storage_type="session", data={}),
        dcc.Store(id=ids.TICK, data=0),
        dcc.Store(id=ids.ALERTS_VERSION, data=0),
        dcc.Interval(id=ids.INTERVAL, interval=30_000, disabled=True),
        html.Header([
            html.A([html.Span("◉", className="aw-logo"), " Auditwatch"], href="/dashboard/", className="aw-brand"),
            html.Nav([dcc.Link(label, href=href, className="aw-nav-link") for label, href in NAV],
                     className="aw-nav"),
            html.Div([
                dcc.Dropdown(id=ids.TIME_PRESET, value=DEFAULT, clearable=False, searchable=False,
                             persistence=True, persistence_type="session", className="aw-select aw-range",
                             options=[{"label": label, "value": key} for key, (label, _) in PRESETS.items()]
                             + [{"label": "Custom range…", "value": "custom"}]),
                html.Div([
                    dcc.Input(id=ids.TIME_START, type="datetime-local", persistence=True,
                              persistence_type="session", className="aw-input", debounce=True, placeholder="start (UTC)"),
                    html.Span("→"),
                    dcc.Input(id=ids.TIME_END, type="datetime-local", persistence=True,
                              persistence_type="session", className="aw-input", debounce=True, placeholder="end (UTC)"),
                    html.Span("UTC", className="aw-note"),
                ], id=ids.TIME_CUSTOM, className="aw-custom", style={"display": "none"}),
                dcc.Dropdown(id=ids.REFRESH, value=0, clearable=False, searchable=False, persistence=True,
                             persistence_type="session", options=REFRESH_OPTIONS, className="aw-select aw-refresh"),
            ], className="aw-controls"),
            html.Div([
                html.Span([html.Span(who.name, className="aw-user-name", title=who.name),
                           html.Span(str(who.role), className=f"aw-role aw-role-{who.role}")],
                          className="aw-user") if who else None,
                html.Form([csrf.hidden_field() if who else None,
                           html.Button("Sign out", type="submit", className="aw-button small ghost")],
                          method="post", action="/dashboard/logout"),
            ], className="aw-account"),
        ], className="aw-header"),
        # Always in the layout (hidden when empty): Dash needs every static Input of a callback present.
        html.Div([html.Span("Filtered by", className="aw-note"), html.Div(id=ids.CROSSFILTER_CHIPS,
                                                                          className="aw-xf-chips"),
                  html.Button("Clear", id=ids.CROSSFILTER_CLEAR, n_clicks=0, className="aw-button small ghost")],
                 id=ids.CROSSFILTER_BAR, className="aw-xf-bar hidden"),
        html.Div(id=ids.ALERTS_STATUS, className="aw-flash", role="status"),
        html.Main(dash.page_container, className="aw-main"),
        html.Div(html.Div([
            html.Button("✕", id=ids.MODAL_CLOSE, n_clicks=0, className="aw-modal-close", **{"aria-label": "Close"}),
            html.Div(id=ids.MODAL_BODY),
        ], className="aw-modal-box", role="dialog"), id=ids.MODAL, className="aw-modal"),
    ], className="aw-app")


def crossfilter_bar(filters: dict[str, Any] | None) -> list[Any]:
    filters = {k: v for k, v in (filters or {}).items() if k in FILTER_KEYS and v}
    if not filters:
        return []
    chips = [html.Span([f"{FILTER_LABELS[k]}: {v}",
                        html.Button("✕", id=ids.filter_chip_remove(k), n_clicks=0, className="aw-chip-x",
                                    **{"aria-label": f"Remove the {FILTER_LABELS[k]} filter"})],
                       className="aw-chip") for k, v in filters.items()]
    entity = []
    if filters.get("user_id"):
        entity.append(dcc.Link(f"Open user {filters['user_id']} →", className="aw-button small ghost",
                               href=f"/dashboard/entity?kind=user&value={quote(filters['user_id'])}"))
    if filters.get("source_ip"):
        entity.append(dcc.Link(f"Open IP {filters['source_ip']} →", className="aw-button small ghost",
                               href=f"/dashboard/entity?kind=ip&value={quote(filters['source_ip'])}"))
    return [*chips, dcc.Link("Show matching events →", href=search_href(**filters), className="aw-button small",
                             id="aw-drilldown"), *entity]


def register_callbacks(app: Dash) -> None:
    app.clientside_callback(
        """function(preset, start, end) {
            const custom = preset === 'custom';
            return [{preset: preset, start: start || null, end: end || null},
                    {display: custom ? 'flex' : 'none'}];
        }""",
        Output(ids.TIME_RANGE, "data"), Output(ids.TIME_CUSTOM, "style"),
        Input(ids.TIME_PRESET, "value"), Input(ids.TIME_START, "value"), Input(ids.TIME_END, "value"),
    )
    app.clientside_callback(
        "function(seconds){ return [!seconds, (seconds || 30) * 1000]; }",
        Output(ids.INTERVAL, "disabled"), Output(ids.INTERVAL, "interval"), Input(ids.REFRESH, "value"),
    )
    # Ticks reach the widgets only while the tab is visible: a hidden dashboard costs the server nothing.
    app.clientside_callback(
        "function(n){ return document.hidden ? window.dash_clientside.no_update : n; }",
        Output(ids.TICK, "data"), Input(ids.INTERVAL, "n_intervals"), prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.CROSSFILTER, "data"),
        Input(ids.graph(ALL), "clickData"),
        Input(ids.filter_link(ALL), "n_clicks"),
        Input(ids.tree("xf", ALL), "click"),
        Input(ids.filter_chip_remove(ALL), "n_clicks"),
        Input(ids.CROSSFILTER_CLEAR, "n_clicks"),
        State(ids.CROSSFILTER, "data"),
        prevent_initial_call=True,
    )
    def crossfilter(_clicks, _links, _tree_links, _removes, _clear, current_filters):
        """Any chart point or table cell narrows every widget; chips and Clear widen again."""
        trigger = ctx.triggered_id
        value = ctx.triggered[0]["value"] if ctx.triggered else None
        if trigger is None or not value:
            return no_update
        filters = dict(current_filters or {})
        if trigger == ids.CROSSFILTER_CLEAR:
            return {}
        kind = trigger.get("type")
        if kind == "aw-xf-remove":
            filters.pop(trigger["key"], None)
            return filters
        raw = trigger["f"] if kind == "aw-xf" else click_value(value) if kind == "aw-tree" else _clicked(value)
        try:
            chosen = json.loads(raw) if raw else {}
        except (TypeError, ValueError):
            return no_update
        if not isinstance(chosen, dict):
            return no_update
        chosen = {k: str(v) for k, v in chosen.items() if k in FILTER_KEYS and v}
        return {**filters, **chosen} if chosen else no_update

    @app.callback(Output(ids.CROSSFILTER_CHIPS, "children"), Output(ids.CROSSFILTER_BAR, "className"),
                  Input(ids.CROSSFILTER, "data"))
    def show_crossfilter(filters):
        chips = crossfilter_bar(filters)
        return chips, "aw-xf-bar" if chips else "aw-xf-bar hidden"

    @app.callback(
        Output(ids.MODAL, "className"), Output(ids.MODAL_BODY, "children"),
        Input(ids.anomaly_graph(ALL), "clickData"),
        Input(ids.anomaly_row(ALL), "n_clicks"),
        Input(ids.tree("open", ALL), "click"),
        Input(ids.MODAL_CLOSE, "n_clicks"),
        prevent_initial_call=True,
    )
    def explain(_clicks, _rows, _tree_rows, _close):
        """Clicking an anomaly opens its explanation."""
        trigger = ctx.triggered_id
        value = ctx.triggered[0]["value"] if ctx.triggered else None
        if trigger is None or not value or trigger == ids.MODAL_CLOSE:
            return "aw-modal", no_update
        kind = trigger.get("type")
        raw = (trigger["anomaly_id"] if kind == "aw-anomaly-row" else click_value(value) if kind == "aw-tree"
               else _clicked(value))
        try:
            anomaly_id = uuid.UUID(str(raw))
        except ValueError:
            return no_update, no_update
        return "aw-modal open", anomaly_widget.explanation(anomaly_store.get_anomaly(current().pool, anomaly_id))

    @app.callback(
        Output(ids.ALERTS_VERSION, "data"), Output(ids.ALERTS_STATUS, "children"),
        Input(ids.alert_action(ALL, ALL), "n_clicks"),
        Input(ids.tree("alert", ALL), "click"),
        State(ids.ALERTS_VERSION, "data"),
        prevent_initial_call=True,
    )
    def alert_action(_clicks, _tree_clicks, version):
        """Acknowledge or silence from the feed; only roles that configure may, and it is audited."""
        trigger = ctx.triggered_id
        value = ctx.triggered[0]["value"] if ctx.triggered else None
        if trigger is None or not value:
            return no_update, no_update
        if trigger.get("type") == "aw-tree":
            chosen = click_value(value)
            if not isinstance(chosen, dict) or chosen.get("action") not in ("ack", "silence") \
                    or not isinstance(chosen.get("fp"), str):
                return no_update, no_update
            action, fingerprint = chosen["action"], chosen["fp"]
        else:
            action, fingerprint = trigger["action"], trigger["fp"]
        return (version or 0) + 1, act_on_alert(action, fingerprint, now=datetime.now(UTC))


def _clicked(click_data: Any) -> Any:
    points = (click_data or {}).get("points") or []
    return points[0].get("customdata") if points else None


def act_on_alert(action: str, fingerprint: str, *, now: datetime) -> html.Span:
    """Run one feed action through the alerts package's contract; the message says what happened."""
    who = user()
    if not who.can_configure:
        return html.Span(f"The {who.role} role may not acknowledge or silence alerts; ask an admin.",
                         className="aw-error")
    context = current()
    actions = context.alert_actions  # handed in by the host (app.py): the dashboard does not import alerts/
    if actions is None:
        return html.Span("Alerting is not configured.", className="aw-error")

    def audit(resource_id: str, metadata: dict[str, Any]):  # the record; actions stores it with the change
        return context.record("config_change", who.principal, resource_id=resource_id,
                              metadata={"via": "dashboard", **metadata})

    if action == "ack":
        view = actions.acknowledge(context.pool, fingerprint, by=who.principal,
                                   comment="acknowledged from the dashboard", audit=audit, now=now)
        return html.Span(f"Acknowledged “{view.title}”.", className="aw-ok")
    alert = next((a for a in actions.list_alerts(context.pool, limit=1000) if a.fingerprint == fingerprint), None)
    if alert is None:
        return html.Span("That alert is gone (resolved and expired); nothing to silence.", className="aw-error")
    matchers = {"rule_id": alert.rule_id, **alert.group_values}
    actions.create_silence(context.pool, matchers=matchers, starts_at=now, ends_at=now + timedelta(hours=SILENCE_HOURS),
                           created_by=who.principal, comment=f"silenced from the dashboard: {alert.title}",
                           audit=audit)
    return html.Span(f"Silenced “{alert.title}” for {SILENCE_HOURS} h.", className="aw-ok")
