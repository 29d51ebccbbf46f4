"""The newest matching events; a row opens the event in search (drill-down)."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from dashboard.render import RenderContext, empty, search_href
from storage.events import Outcome
from storage.timescale import queries
from storage.timescale.queries import EventQuery


def render(rc: RenderContext, params: dict[str, Any]) -> Any:
    filters = rc.merged_filters(params)
    types = (filters.event_type,) if filters.event_type else tuple(params["event_types"])
    outcome = filters.outcome or params["outcome"] or None
    query = EventQuery(start_time=rc.start, end_time=rc.end, user_id=filters.user_id, event_types=types,
                       outcome=Outcome(outcome) if outcome else None, source_ip=filters.source_ip,
                       limit=params["limit"], platform=params.get("platform") == "shown")
    page = queries.search(rc.pool, query)
    if not page.events:
        return empty("No events in this range", "Widen the time range or clear the cross-filter.")
    return html.Table([
        html.Thead(html.Tr([html.Th("time (UTC)"), html.Th("type"), html.Th("user"), html.Th("outcome"),
                            html.Th("source IP")])),
        html.Tbody([html.Tr([
            html.Td(dcc.Link(f"{e.timestamp:%m-%d %H:%M:%S}", href=search_href(event_id=str(e.event_id)))),
            html.Td(e.event_type), html.Td(e.user_id), html.Td(str(e.outcome), className=f"aw-o-{e.outcome}"),
            html.Td(e.source_ip or "")]) for e in page.events]),
    ], className="aw-table aw-events")
