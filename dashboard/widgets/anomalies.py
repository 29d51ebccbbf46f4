"""The anomaly timeline (score over time by detector) and the explanation an analyst opens from it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dash import dcc, html
from psycopg_pool import ConnectionPool

from dashboard import ids
from dashboard.render import PALETTE, SEVERITY_COLORS, RenderContext, empty, figure, graph, search_href
from storage.timescale.anomalies import Anomaly, AnomalyQuery, list_anomalies

SIZES = {"low": 8, "medium": 11, "high": 14, "critical": 18}


def read(pool: ConnectionPool, start: datetime, end: datetime, *, entity_value: str | None = None,
         min_score: float = 0.0, limit: int = 500) -> list[Anomaly]:
    """The widget's anomalies: windows overlapping [start, end), highest score first."""
    return list_anomalies(pool, AnomalyQuery(start=start, end=end, entity_value=entity_value, min_score=min_score,
                                             order="score", limit=limit))


def render(rc: RenderContext, params: dict[str, Any]) -> Any:
    filters = rc.merged_filters(params)
    value = filters.user_id or filters.source_ip
    found = read(rc.pool, rc.start, rc.end, entity_value=value, min_score=params["min_score"] / 100)
    if not found:
        return empty("No anomalies in this range",
                     "Detectors write anomalies here once the analytics jobs run (`auditwatch worker`).")
    traces = []
    detectors = sorted({a.detector for a in found})
    for index, detector in enumerate(detectors):
        mine = [a for a in found if a.detector == detector]
        traces.append({
            "type": "scatter", "x": [a.peak_at for a in mine], "y": [a.score for a in mine], "name": detector,
            "mode": "markers", "cliponaxis": False,  # a critical's marker at 1.0 drawn whole, not cut in half
            "marker": {"size": [SIZES.get(a.severity, 10) for a in mine], "color": PALETTE[index % 12],
                       "line": {"width": 1, "color": [SEVERITY_COLORS.get(a.severity, "#fff") for a in mine]}},
            "customdata": [str(a.anomaly_id) for a in mine],
            "text": [f"{a.entity_type} {a.entity_value}<br>{a.severity} · {a.windows} window(s) "
                     f"{a.window_start:%H:%M}–{a.window_end:%H:%M} · "
                     f"{(a.explanation or {}).get('summary', '')[:80]}" for a in mine],
            "hovertemplate": "%{text}<br>score %{y:.2f} · %{x|%d %b %H:%M}<extra>" + detector + "</extra>",
        })
    # One line of tick labels: Plotly's second line (the date under the first tick and each midnight) fell
    # outside the short plot's margin, onto the list below it.
    fig = figure(traces, yaxis={"range": [0, 1.08], "title": {"text": "score", "font": {"size": 11}},
                                "rangemode": "normal"},
                 xaxis={"range": [rc.start, rc.end], "type": "date", "tickformat": "%a %H:%M"})
    top = found[:5]
    return html.Div([
        html.Div(graph(fig, ids.anomaly_graph(rc.aio_id)), className="aw-grow"),
        html.Ul([html.Li(html.Button(
            [html.Span(f"{a.score:.2f}", className=f"aw-sev aw-sev-{a.severity}"),
             f" {a.entity_value} — {(a.explanation or {}).get('summary') or a.detector}"],
            id=ids.anomaly_row(str(a.anomaly_id)), n_clicks=0, className="aw-linkish"))
            for a in top], className="aw-anomaly-list"),
    ], className="aw-col")


def _table(title: str, values: Any) -> html.Div | None:
    if not isinstance(values, dict) or not values:
        return None
    return html.Div([html.H4(title), html.Table(html.Tbody([
        html.Tr([html.Th(str(k)), html.Td(str(v))]) for k, v in values.items()]), className="aw-table")])


def explanation(anomaly: Anomaly | None) -> html.Div:
    """The modal body: summary, observed vs expected, feature contributions, the sample events."""
    if anomaly is None:
        return html.Div("This anomaly no longer exists (it was re-scored or expired).")
    info = anomaly.explanation or {}
    features = info.get("features") or []
    entity_kind = "ip" if anomaly.entity_type == "source_ip" else "user"
    entity_value = anomaly.entity_value.split("|")[0] if anomaly.entity_type == "user_ip" else anomaly.entity_value
    return html.Div([
        html.H3([html.Span(f"{anomaly.score:.2f}", className=f"aw-sev aw-sev-{anomaly.severity}"),
                 f" {anomaly.detector} · {anomaly.entity_type} {anomaly.entity_value}"]),
        html.P(info.get("summary") or "The detector gave no summary.", className="aw-summary"),
        html.P(f"Incident {anomaly.window_start:%Y-%m-%d %H:%M} – {anomaly.window_end:%Y-%m-%d %H:%M} UTC "
               f"({anomaly.windows} window{'s' if anomaly.windows != 1 else ''}, peak at {anomaly.peak_at:%H:%M}) · "
               f"severity {anomaly.severity} · detector version {anomaly.detector_version}", className="aw-note"),
        html.Div([_table("Observed", info.get("observed")), _table("Expected", info.get("expected"))],
                 className="aw-two"),
        html.Div([html.H4("What contributed"), html.Table(html.Tbody([
            html.Tr([html.Th(str(f.get("name"))), html.Td(str(f.get("value"))),
                     html.Td(f"{f.get('contribution', 0):+.2f}" if isinstance(f.get("contribution"), int | float)
                             else "", className="num")])
            for f in features if isinstance(f, dict)]), className="aw-table")]) if features else None,
        html.Div([
            dcc.Link(f"Open {entity_kind} {entity_value} →", href=f"/dashboard/entity?kind={entity_kind}&value="
                     f"{entity_value}", className="aw-button"),
            dcc.Link("Events in this window →", className="aw-button", href=search_href(
                start_time=anomaly.window_start.isoformat(), end_time=anomaly.window_end.isoformat(),
                **({"source_ip": entity_value} if entity_kind == "ip" else {"user_id": entity_value}))),
        ], className="aw-actions"),
        html.Div([html.H4("Sample events"), html.Ul([
            html.Li(dcc.Link(str(e), href=search_href(event_id=str(e)))) for e in anomaly.sample_event_ids[:20]])])
        if anomaly.sample_event_ids else None,
    ], className="aw-explanation")
