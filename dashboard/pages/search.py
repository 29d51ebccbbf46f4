"""Event search: the query API's filters, keyset paging, one event's JSON, export for auditors."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import dash
import psycopg
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard import csrf, ids, search_filters, timerange
from dashboard.auth import user
from dashboard.context import current
from dashboard.errors import DashboardError
from dashboard.registry import EVENT_TYPES, Registry
from dashboard.tree import click_value, compact
from storage.errors import DatabaseUnavailable, InvalidCursor
from storage.timescale import queries

PAGE_SIZE = 25


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def layout(**query: Any) -> html.Div:
    types = query.get("event_type") or []
    types = [types] if isinstance(types, str) else list(types)
    # The event the address names is drawn here, with the page, not by a callback after it: on a move inside
    # the app, the results' rows appearing re-ran that callback while its first call was still on its way, and
    # Dash kept only the second answer (no click, so nothing), which left the placeholder in about 1 move in 8.
    event_id = _first(query.get("event_id"))
    shown = (event_detail(str(event_id)) if event_id
             else html.Div("Click an event to see all of its fields.", className="aw-note"))
    return html.Div([
        html.Div(html.H1("Event search"), className="aw-page-head"),
        dcc.Store(id=ids.SEARCH_INITIAL, data={"start_time": _first(query.get("start_time")),
                                               "end_time": _first(query.get("end_time"))}),
        dcc.Store(id=ids.SEARCH_PAGING, data={"cursors": [None], "page": 0}),
        html.Div([
            html.Label([html.Span("User"), dcc.Input(id=ids.SEARCH_USER, value=_first(query.get("user_id")) or "",
                                                     className="aw-input", placeholder="user id", debounce=True)],
                       className="aw-field"),
            html.Label([html.Span("Event types"), dcc.Dropdown(
                id=ids.SEARCH_TYPES, options=list(EVENT_TYPES), value=types, multi=True, className="aw-select",
                placeholder="any type")], className="aw-field wide"),
            html.Label([html.Span("Outcome"), dcc.Dropdown(
                id=ids.SEARCH_OUTCOME, options=["success", "failure", "unknown"],
                value=_first(query.get("outcome")), className="aw-select", placeholder="any")], className="aw-field"),
            html.Label([html.Span("Source IP / CIDR"), dcc.Input(
                id=ids.SEARCH_IP, value=_first(query.get("source_ip")) or "", className="aw-input",
                placeholder="10.0.0.0/8", debounce=True)], className="aw-field"),
            html.Label([html.Span("Metadata (JSON)"), dcc.Input(
                id=ids.SEARCH_METADATA, value=_first(query.get("metadata")) or "", className="aw-input",
                placeholder='{"dataset": "hr"}', debounce=True)], className="aw-field wide"),
            html.Div(html.Button("Search", id=ids.SEARCH_GO, n_clicks=0, className="aw-button"),
                     className="aw-field aw-field-button"),
        ], className="aw-filters"),
        html.Div([html.Div(id=ids.SEARCH_STATUS, className="aw-note"),
                  html.Div(id=ids.SEARCH_EXPORT, className="aw-actions")], className="aw-search-bar"),
        html.Div([
            html.Div([
                html.Div(id=ids.SEARCH_RESULTS, className="aw-results"),
                html.Div([html.Button("← Newer", id=ids.SEARCH_NEWER, n_clicks=0, className="aw-button small ghost"),
                          html.Button("Older →", id=ids.SEARCH_OLDER, n_clicks=0, className="aw-button small ghost")],
                         className="aw-actions aw-pager"),
            ], className="aw-search-main"),
            html.Aside(id=ids.SEARCH_DETAIL, className="aw-detail", children=shown),
        ], className="aw-search"),
    ])


def _results(events: list) -> html.Table:
    return html.Table([
        html.Thead(html.Tr([html.Th("time (UTC)"), html.Th("type"), html.Th("user"), html.Th("outcome"),
                            html.Th("source IP"), html.Th("country")])),
        html.Tbody([html.Tr([
            html.Td(html.Button(f"{e.timestamp:%Y-%m-%d %H:%M:%S}", id=ids.event_row(str(e.event_id)), n_clicks=0,
                                className="aw-linkish", title="Show this event")),
            html.Td(e.event_type), html.Td(e.user_id), html.Td(str(e.outcome), className=f"aw-o-{e.outcome}"),
            html.Td(e.source_ip or ""), html.Td(e.source_country or "")]) for e in events]),
    ], className="aw-table aw-events")


def search_page(values: dict[str, Any], time_range: dict | None, paging: dict, direction: str, *,
                now: datetime) -> tuple[Any, str, dict, Any]:
    """Run one page of the search; returns (results, status, paging, export links)."""
    who = user()
    if direction == "reset" or not paging.get("start"):
        # Paging walks one fixed window: "last 24 hours" is pinned when the search runs.
        start, end = timerange.resolve(time_range, now=now)
        paging = {"cursors": [None], "page": 0, "start": start.isoformat(), "end": end.isoformat()}
    start, end = datetime.fromisoformat(paging["start"]), datetime.fromisoformat(paging["end"])
    query = search_filters.parse(values, start=start, end=end, limit=PAGE_SIZE)
    fingerprint = query.fingerprint()
    if paging.get("fp") not in (None, fingerprint):
        paging = {**paging, "cursors": [None], "page": 0}
    paging["fp"] = fingerprint
    if direction == "older" and len(paging["cursors"]) > paging["page"] + 1:
        paging = {**paging, "page": paging["page"] + 1}
    elif direction == "newer" and paging["page"] > 0:
        paging = {**paging, "page": paging["page"] - 1}
    cursor = paging["cursors"][paging["page"]]
    after = queries.decode_cursor(cursor, query) if cursor else None
    context = current()
    page = queries.search(context.reads, query, after=after)
    context.audit("query_executed", who.principal, metadata={
        "route": "dashboard_search", "filters": search_filters.as_params(query), "returned": len(page.events)})
    cursors = paging["cursors"][: paging["page"] + 1]
    if page.next:
        cursors.append(queries.encode_cursor(page.next, query))
    paging = {**paging, "cursors": cursors}
    shown = f"{len(page.events)} events" if page.events else "No events match"
    status = (f"{shown} · page {paging['page'] + 1}{' · more older' if page.next else ''} · "
              f"{timerange.describe(query.start_time, query.end_time)}")
    export = None
    if who.can_export:
        params = search_filters.as_params(query)
        fields = [dcc.Input(type="hidden", name=name, value=value) for name, values in params.items()
                  for value in (values if isinstance(values, list) else [values])]
        export = html.Form([csrf.hidden_field(), *fields, *[
            html.Button(f"Export {fmt.upper()}", type="submit", name="format", value=fmt,
                        className="aw-button small ghost") for fmt in ("csv", "ndjson")]],
            method="POST", action="/dashboard/export", className="aw-actions")
    results = (compact(_results(page.events)) if page.events
               else html.Div("No events match these filters in this range.", className="aw-empty"))
    return results, status, paging, export


def event_detail(event_id: str) -> html.Div:
    who = user()
    try:
        key = uuid.UUID(event_id)
    except ValueError:
        return html.Div("That is not an event id.", className="aw-error")
    context = current()
    try:
        found = queries.get(context.reads, key)
    except (DatabaseUnavailable, psycopg.OperationalError) as exc:  # the page still draws, and says why
        return html.Div(f"The database did not answer; reload in a moment ({type(exc).__name__}).",
                        className="aw-error")
    context.audit("query_executed", who.principal, metadata={"route": "dashboard_event", "event_id": event_id,
                                                             "found": found is not None})
    if found is None:
        return html.Div("No stored event has this id (it may have been erased).", className="aw-error")
    data = found.to_json()
    return html.Div([
        html.H3(f"{found.event_type} · {found.user_id}"),
        html.Div([dcc.Link(f"User {found.user_id} →", href=f"/dashboard/entity?kind=user&value={found.user_id}",
                           className="aw-button small ghost"),
                  dcc.Link(f"IP {found.source_ip} →", href=f"/dashboard/entity?kind=ip&value={found.source_ip}",
                           className="aw-button small ghost") if found.source_ip else None],
                 className="aw-actions"),
        html.Pre(json.dumps(data, indent=2, default=str), className="aw-json", id="aw-event-json"),
    ])


def register(app: Dash, registry: Registry) -> None:
    dash.register_page("dashboard.pages.search", path="/search", name="Search", title="Event search · Auditwatch",
                       layout=layout)

    @app.callback(
        Output(ids.SEARCH_RESULTS, "children"), Output(ids.SEARCH_STATUS, "children"),
        Output(ids.SEARCH_PAGING, "data"), Output(ids.SEARCH_EXPORT, "children"),
        Input(ids.SEARCH_GO, "n_clicks"), Input(ids.SEARCH_OLDER, "n_clicks"), Input(ids.SEARCH_NEWER, "n_clicks"),
        Input(ids.TIME_RANGE, "data"),
        State(ids.SEARCH_USER, "value"), State(ids.SEARCH_TYPES, "value"), State(ids.SEARCH_OUTCOME, "value"),
        State(ids.SEARCH_IP, "value"), State(ids.SEARCH_METADATA, "value"), State(ids.SEARCH_PAGING, "data"),
        State(ids.SEARCH_INITIAL, "data"),
    )
    def run(_go, _older, _newer, time_range, user_id, types, outcome, source_ip, metadata, paging, initial):
        direction = {ids.SEARCH_OLDER: "older", ids.SEARCH_NEWER: "newer"}.get(ctx.triggered_id, "reset")
        values = {"user_id": user_id, "event_type": types or [], "outcome": outcome, "source_ip": source_ip,
                  "metadata": metadata, "start_time": (initial or {}).get("start_time"),
                  "end_time": (initial or {}).get("end_time")}
        try:
            return search_page(values, time_range, paging or {"cursors": [None], "page": 0}, direction,
                               now=datetime.now(UTC))
        except (DashboardError, InvalidCursor) as exc:
            return html.Div(str(exc), className="aw-error"), "", no_update, None

    @app.callback(
        Output(ids.SEARCH_DETAIL, "children"),
        Input(ids.event_row(ALL), "n_clicks"), Input(ids.tree("event", ALL), "click"),
        prevent_initial_call=True,
    )
    def detail(_clicks, _tree_clicks):
        # The results' rows appearing fire this too, with no click: only a real click replaces the event shown
        # (the one the address names is drawn by ``layout``).
        for fired, trigger in zip(ctx.triggered, ctx.triggered_prop_ids.values(), strict=False):
            value = fired["value"]
            if not isinstance(trigger, dict) or not value:
                continue
            if trigger.get("type") == "aw-tree":  # a row of the compacted results table (dashboard.tree)
                chosen = click_value(value)
                if isinstance(chosen, str):
                    return event_detail(chosen)
            elif trigger.get("type") == "aw-event-row":
                return event_detail(str(trigger.get("event_id")))
        return no_update
