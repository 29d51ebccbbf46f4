"""WidgetAIO: one All-in-One component class serving every widget instance through MATCH callbacks.

A widget instance is its config (a dict validated by ``dashboard.config``) in a Store; the
MATCH callbacks re-render only the instance whose config, or the shared range, cross-filter
or refresh tick, changed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from dash import ALL, MATCH, Dash, Input, Output, State, ctx, dcc, html, no_update
from flask import request

from dashboard import config as dashboard_config
from dashboard import ids, timerange, widget_input
from dashboard.auth import user
from dashboard.context import current
from dashboard.errors import DashboardError
from dashboard.registry import HEIGHTS, WIDTHS, Param, Registry
from dashboard.render import RenderContext, empty
from dashboard.tree import compact
from storage.errors import StorageError
from storage.events import Outcome
from storage.timescale.widgets_queries import Filters

ANY = "__any__"  # the dropdown value standing for an empty choice ("any" / "follow the global range")


def card_class(widget: dict[str, Any]) -> str:
    return f"aw-card w{widget['w']} h{widget['h']} t-{widget['type']}"


def _control(aio_id: str, param: Param, value: Any) -> html.Div:
    control_id = ids.widget_param(aio_id, param.name)
    if param.kind in ("choice", "multi"):
        labels = {"": "global" if param.name == "range" else "any"}
        options = [{"label": labels.get(c, c) if isinstance(c, str) else str(c), "value": c if c != "" else ANY}
                   for c in param.choices]
        shown = [v for v in value] if param.kind == "multi" else (ANY if value == "" else value)
        control = dcc.Dropdown(id=control_id, options=options, value=shown, multi=param.kind == "multi",
                               clearable=param.kind == "multi", searchable=False, className="aw-select")
    elif param.kind == "int":
        # No min/max in the browser: an out-of-range number would silently arrive as None; the server
        # refuses it with the allowed range instead.
        control = dcc.Input(id=control_id, type="number", value=value, step=1, className="aw-input",
                            placeholder=f"{param.low}–{param.high}")
    else:
        control = dcc.Input(id=control_id, type="text", value=value or "", maxLength=param.max_len,
                            className="aw-input", debounce=True)
    return html.Label([html.Span(param.label), control], className="aw-field", title=param.help)


class WidgetAIO(html.Div):
    """A dashboard tile: header (title, arrange buttons), editor, and a body its renderer fills."""

    ids = ids

    def __init__(self, widget: dict[str, Any], *, registry: Registry, editable: bool = False) -> None:
        aio_id = widget["id"]
        widget_type = registry.get(widget["type"])
        tools = []
        if editable:
            for sub, label, hint in (("earlier", "◀", "Move earlier"), ("later", "▶", "Move later"),
                                     ("narrower", "−", "Narrower"), ("wider", "+", "Wider"),
                                     ("taller", "↕", "Taller / shorter"), ("remove", "✕", "Remove")):
                tools.append(html.Button(label, id=ids.widget(sub, aio_id), n_clicks=0, title=hint,
                                         className=f"aw-tool aw-tool-{sub}", **{"aria-label": hint}))
        editor = None
        if editable and widget_type is not None:
            editor = html.Details([
                html.Summary("Configure", className="aw-configure"),
                html.Div([
                    html.Label([html.Span("Title"), dcc.Input(id=ids.widget_param(aio_id, "__title__"), type="text",
                                                              value=widget["title"], maxLength=120,
                                                              className="aw-input")], className="aw-field"),
                    *[_control(aio_id, p, widget["params"].get(p.name)) for p in widget_type.params],
                    html.Div([html.Button("Apply", id=ids.widget("apply", aio_id), n_clicks=0,
                                          className="aw-button small"),
                              html.Span(id=ids.widget("error", aio_id), className="aw-error")],
                             className="aw-actions"),
                ], className="aw-editor"),
            ], className="aw-details")
        super().__init__([
            dcc.Store(id=ids.widget("config", aio_id), data=widget),
            html.Div([html.H3(widget["title"], id=ids.widget("title", aio_id), className="aw-card-title"),
                      # no empty tools box on a read-only card: every Dash component costs the page (dashboard.tree)
                      html.Div(tools, className="aw-tools") if tools else None], className="aw-card-head"),
            editor,
            html.Div(html.Div("Loading…", className="aw-loading"), id=ids.widget("body", aio_id),
                     className="aw-card-body"),
        ], id=ids.widget("card", aio_id), className=card_class(widget))


def _from_control(param: Param | None, value: Any) -> Any:
    if value == ANY:
        return ""
    if param is not None and param.kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def register_callbacks(app: Dash, registry: Registry) -> None:
    """The MATCH callbacks every WidgetAIO instance shares (registered per Dash app, not globally)."""

    @app.callback(
        Output(ids.widget("config", MATCH), "data"),
        Output(ids.widget("error", MATCH), "children"),
        Output(ids.widget("body", MATCH), "children", allow_duplicate=True),
        Output(ids.widget("title", MATCH), "children", allow_duplicate=True),
        Input(ids.widget("apply", MATCH), "n_clicks"),
        Input(ids.widget("narrower", MATCH), "n_clicks"),
        Input(ids.widget("wider", MATCH), "n_clicks"),
        Input(ids.widget("taller", MATCH), "n_clicks"),
        State(ids.widget("config", MATCH), "data"),
        State(ids.widget_param(MATCH, ALL), "value"),
        State(ids.widget_param(MATCH, ALL), "id"),
        State(ids.TIME_RANGE, "data"),
        State(ids.CROSSFILTER, "data"),
        prevent_initial_call=True,
    )
    def change(_apply, _narrower, _wider, _taller, widget, values, control_ids, time_range, crossfilter):
        """Apply the editor's values and redraw in the same round trip, or resize (the chart reflows itself)."""
        action = ctx.triggered_id["subcomponent"]
        try:
            widget = widget_input.checked_widget(registry, widget)  # the stored config is browser state too
        except DashboardError as exc:
            return no_update, str(exc), no_update, no_update
        if action in ("narrower", "wider"):
            index = WIDTHS.index(widget["w"]) + (1 if action == "wider" else -1)
            widget["w"] = WIDTHS[max(0, min(index, len(WIDTHS) - 1))]
            return widget, "", no_update, no_update
        if action == "taller":
            widget["h"] = HEIGHTS[(HEIGHTS.index(widget["h"]) + 1) % len(HEIGHTS)]
            return widget, "", no_update, no_update
        widget_type = registry.get(widget["type"])
        params, title = {}, widget["title"]
        for control_id, value in zip(control_ids, values, strict=True):
            if control_id["param"] == "__title__":
                title = value
            else:
                params[control_id["param"]] = _from_control(widget_type.param(control_id["param"]), value)
        try:
            widget = dashboard_config.validate_widget(registry, {**widget, "title": title, "params": params},
                                                      widget["title"])
        except DashboardError as exc:
            return no_update, str(exc), no_update, no_update
        body = render_widget(registry, widget, time_range, crossfilter, now=datetime.now(UTC))
        return widget, "", body, widget["title"]

    app.clientside_callback(
        "function(w){ return w ? ('aw-card w' + w.w + ' h' + w.h + ' t-' + w.type) : window.dash_clientside.no_update; }",
        Output(ids.widget("card", MATCH), "className"),
        Input(ids.widget("config", MATCH), "data"),
    )

    @app.callback(
        Output(ids.widget("body", MATCH), "children"),
        Output(ids.widget("title", MATCH), "children"),
        Input(ids.widget("card", MATCH), "id"),  # never changes: fires once, when the widget appears
        Input(ids.TIME_RANGE, "data"),
        Input(ids.CROSSFILTER, "data"),
        Input(ids.TICK, "data"),
        Input(ids.ALERTS_VERSION, "data"),
        State(ids.widget("config", MATCH), "data"),
    )
    def draw(_card, time_range, crossfilter, _tick, _alerts_version, widget):
        """Query and draw one widget instance for the current range, cross-filter and refresh tick."""
        refresh = ctx.triggered_id in (ids.TICK, ids.ALERTS_VERSION)
        return draw_widget(registry, widget, time_range, crossfilter, now=datetime.now(UTC), refresh=refresh)


def draw_widget(registry: Registry, widget: Any, time_range: Any, crossfilter: Any, *, now: datetime,
                refresh: bool = False) -> tuple[html.Div, str]:
    """The body and title of one widget from what the browser sent: checked first (``widget_input``), so a
    forged config is refused inside the tile and reads nothing."""
    try:
        widget = widget_input.checked_widget(registry, widget)
    except DashboardError as exc:
        _audit_refusal(widget, str(exc))
        return html.Div(empty("Cannot show this widget", str(exc)), className="aw-body-inner",
                        **{"data-render": uuid.uuid4().hex[:8]}), "Invalid widget"
    return render_widget(registry, widget, time_range, crossfilter, now=now, audit=not refresh), widget["title"]


def _audit_refusal(widget: Any, problem: str) -> None:
    """A refused widget config is recorded (a failed ``query_executed``): nobody sends one by accident."""
    who = user()
    current().audit("query_executed", who.principal, outcome=Outcome.FAILURE, source_ip=request.remote_addr,
                    metadata={"route": "dashboard_widget", "refused": problem[:500],
                              "widget_type": str(widget.get("type"))[:64] if isinstance(widget, dict) else None})


def _audit_read(widget: dict[str, Any], filters: Filters, start: datetime, end: datetime) -> None:
    """One ``query_executed`` record per draw of a widget, like the API's reads: the widget, its parameters
    (those set), the cross-filter and the range read. Refresh ticks of an unchanged widget are not
    recorded again (the first draw's record stands for them); see ``draw``."""
    who = user()
    current().audit("query_executed", who.principal, source_ip=request.remote_addr, resource_id=widget["id"],
                    metadata={"route": "dashboard_widget", "widget_type": widget["type"],
                              "params": {k: v for k, v in widget["params"].items() if v not in ("", [], None)},
                              "filters": {k: v for k, v in vars(filters).items() if v},
                              "start": start.isoformat(), "end": end.isoformat()})


def render_widget(registry: Registry, widget: dict[str, Any], time_range: Any, crossfilter: Any,
                  *, now: datetime, audit: bool = True) -> html.Div:
    """The body of one widget (its config already checked against the registry); the range and
    cross-filter are checked here. Errors become a readable state inside the tile, never a broken page."""
    widget_type = registry.get(widget.get("type"))
    token = uuid.uuid4().hex[:8]  # changes on every render: the browser tests and bench wait on it
    if widget_type is None:
        body = empty(f"Unknown widget type {widget.get('type')!r}", "Remove this widget or fix the dashboard YAML.")
    else:
        try:
            filters = widget_input.checked_filters(crossfilter)
            start, end = timerange.resolve(widget_input.checked_range(time_range), now=now,
                                           override=widget["params"].get("range") or None)
            who = user()
            context = current()
            rc = RenderContext(pool=context.reads, aio_id=widget["id"], start=start, end=end, now=now,
                               filters=filters, principal=who.principal, can_configure=who.can_configure,
                               alert_actions=context.alert_actions)
            body = widget_type.render(rc, widget["params"])
            if audit:
                _audit_read(widget, filters, start, end)
        except DashboardError as exc:
            body = empty("Cannot show this widget", str(exc))
        except (StorageError, psycopg.OperationalError) as exc:
            body = empty("The database did not answer", f"Retry in a moment ({type(exc).__name__}).")
    return html.Div(compact(body), className="aw-body-inner", **{"data-render": token})


def grid(registry: Registry, widgets: list[dict[str, Any]], *, editable: bool) -> html.Div:
    """The 12-column grid of widgets (one column on a phone)."""
    return html.Div([WidgetAIO(w, registry=registry, editable=editable) for w in widgets], id=ids.GRID,
                    className="aw-grid")
