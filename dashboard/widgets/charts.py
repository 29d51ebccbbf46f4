"""Chart widgets over the rollups: events over time, top values, hour-of-week, countries, baseline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
from dash import html

from dashboard import ids
from dashboard.render import (
    OUTCOME_COLORS,
    PALETTE,
    RenderContext,
    empty,
    figure,
    filter_cell,
    graph,
    short_number,
    xf,
)
from dashboard.widgets.kpi import catching_up
from storage.timescale import widgets_queries as wq

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NO_DATA = "No events in this range"
NO_DATA_HINT = "Widen the time range or clear the cross-filter."


def _buckets(rc: RenderContext) -> tuple[pl.Series, timedelta]:
    """Every bucket of the range, so a quiet minute is drawn as zero rather than interpolated over."""
    interval = wq.interval_for(rc.start, rc.end)
    step = timedelta(minutes=1) if interval == "1m" else timedelta(hours=1)
    first = rc.start.replace(second=0, microsecond=0)
    if interval == "1h":
        first = first.replace(minute=0)
    return pl.datetime_range(first, rc.end, step, time_unit="us", time_zone="UTC", eager=True).alias("bucket"), step


def render_timeseries(rc: RenderContext, params: dict[str, Any]) -> Any:
    group_by = tuple(g for g in params["group_by"].split(",") if g)
    frame = wq.event_series(rc.pool, rc.start, rc.end, group_by, rc.merged_filters(params),
                            event_types=tuple(params["event_types"]), outcome=params["outcome"] or None)
    if not frame.height:
        return empty(NO_DATA, NO_DATA_HINT)
    buckets, step = _buckets(rc)
    grid = pl.DataFrame(buckets)
    traces = []
    if group_by:
        frame = frame.with_columns(pl.concat_str([pl.col(g) for g in group_by], separator=" · ").alias("series"))
        order = frame.group_by("series").agg(pl.col("events").sum()).sort("events", descending=True)["series"]
    else:
        frame = frame.with_columns(pl.lit("events").alias("series"))
        order = pl.Series(["events"])
    for index, name in enumerate(order.to_list()):
        part = grid.join(frame.filter(pl.col("series") == name).select("bucket", "events"), on="bucket",
                         how="left").with_columns(pl.col("events").fill_null(0))
        keys = dict(zip(group_by, name.split(" · "), strict=False)) if group_by else {}
        color = OUTCOME_COLORS.get(keys.get("outcome", "")) if group_by == ("outcome",) else PALETTE[index % 12]
        custom = [xf(**keys)] * part.height
        common = {"x": part["bucket"].to_list(), "y": part["events"].to_list(), "name": name, "customdata": custom,
                  "hovertemplate": "%{x|%d %b %H:%M}<br>" + name + ": %{y:,}<extra></extra>"}
        if params["chart"] == "bar":
            traces.append({"type": "bar", **common, "marker": {"color": color},
                           "width": step.total_seconds() * 1000 * 0.85, "offset": 0})
        else:
            traces.append({"type": "scatter", **common, "mode": "lines",
                           "line": {"width": 1.6, "color": color, "shape": "hv"},
                           **({"stackgroup": "all"} if params["chart"] == "area" else {})})
    fig = figure(traces, legend=bool(group_by), xaxis={"range": [rc.start, rc.end], "type": "date"},
                 barmode="stack")
    return graph(fig, ids.graph(rc.aio_id))


def render_top(rc: RenderContext, params: dict[str, Any]) -> Any:
    dimension = params["dimension"]
    frame = wq.top_values(rc.pool, dimension, rc.start, rc.end, rc.merged_filters(params),
                          event_types=tuple(params["event_types"]), outcome=params["outcome"] or None,
                          limit=params["limit"])
    if not frame.height:
        return empty(NO_DATA, NO_DATA_HINT)
    values = [str(v) for v in frame[dimension].to_list()]
    counts = frame["events"].to_list()
    if params["chart"] == "table":
        top = max(counts) or 1
        bar = "aw-bar bad" if params["outcome"] == "failure" else "aw-bar"
        return html.Table([
            html.Thead(html.Tr([html.Th(dimension.replace("_", " ")), html.Th(""), html.Th("events", className="num")])),
            html.Tbody([html.Tr([html.Td(filter_cell(v, **{dimension: v})),
                                 html.Td(html.Span(style={"width": f"{100 * c / top:.0f}%"}, className=bar),
                                         className="aw-bar-cell"),
                                 html.Td(short_number(c), className="num")])
                        for v, c in zip(values, counts, strict=True)]),
        ], className="aw-table")
    color = OUTCOME_COLORS["failure"] if params["outcome"] == "failure" else PALETTE[0]
    fig = figure([{"type": "bar", "x": counts[::-1], "y": values[::-1], "orientation": "h",
                   "marker": {"color": color}, "customdata": [xf(**{dimension: v}) for v in values[::-1]],
                   "hovertemplate": "%{y}: %{x:,} events<extra></extra>", "text": counts[::-1],
                   "textposition": "auto", "cliponaxis": False}], legend=False, xaxis={"visible": False},
                 # top-aligned, and thin bars when there are only a few
                 yaxis={"type": "category", "tickfont": {"size": 11}, "rangemode": "normal",
                        "range": [len(values) - max(len(values), 6) - 0.5, len(values) - 0.5]})
    return graph(fig, ids.graph(rc.aio_id))


def render_heatmap(rc: RenderContext, params: dict[str, Any]) -> Any:
    frame = wq.hour_of_week(rc.pool, rc.start, rc.end, rc.merged_filters(params),
                            event_types=tuple(params["event_types"]), outcome=params["outcome"] or None)
    if not frame.height:
        return empty(NO_DATA, NO_DATA_HINT)
    grid = [[0] * 24 for _ in range(7)]
    for weekday, hour, events in frame.iter_rows():
        grid[weekday - 1][hour] = events
    fig = figure([{"type": "heatmap", "z": grid, "x": [f"{h:02d}" for h in range(24)], "y": list(WEEKDAYS),
                   "colorscale": [[0, "#f8fafc"], [0.25, "#bfdbfe"], [0.6, "#3b82f6"], [1, "#1e3a8a"]],
                   "xgap": 1, "ygap": 1, "colorbar": {"thickness": 10, "outlinewidth": 0},
                   "hovertemplate": "%{y} %{x}:00 UTC: %{z:,} events<extra></extra>"}], legend=False,
                 yaxis={"autorange": "reversed", "rangemode": "normal", "showgrid": False, "type": "category"},
                 xaxis={"showgrid": False, "type": "category", "tickangle": 0, "title": {"text": "hour (UTC)", "font": {"size": 11}}})
    return graph(fig, ids.graph(rc.aio_id) | {"type": "aw-heatmap"})


def render_countries(rc: RenderContext, params: dict[str, Any]) -> Any:
    frame, used_start = wq.countries(rc.pool, rc.start, rc.end, rc.merged_filters(params), limit=params["limit"])
    if not frame.height:
        return empty(NO_DATA, NO_DATA_HINT)
    if used_start > rc.start:  # a user or address cross-filter: raw events, the last day only
        note = html.Div(f"last {int((rc.end - used_start) / timedelta(hours=1))} h only", className="aw-note")
    else:
        note = catching_up(rc)
    top = max(frame["events"].max(), 1)
    rows = [html.Tr([html.Td(_country_label(country)), html.Td(short_number(events), className="num"),
                     html.Td(short_number(failures), className="num bad" if failures else "num"),
                     html.Td(html.Span(style={"width": f"{100 * events / top:.0f}%"}, className="aw-bar"),
                             className="aw-bar-cell")])
            for country, events, failures in frame.iter_rows()]
    return html.Div([
        html.Table([html.Thead(html.Tr([html.Th("country"), html.Th("events", className="num"),
                                        html.Th("failures", className="num"), html.Th("")])),
                    html.Tbody(rows)], className="aw-table"),
        note,
    ])


NO_COUNTRY = "no country"
NO_COUNTRY_HINT = ("Events whose address has no country: private or internal networks (service accounts, VPN pools, "
                   "office NAT), addresses the geo database does not list, or no address at all.")


def _country_label(country: str) -> Any:
    """A country code, or, for the rows the queries call ``unknown``, what they are: on most sites the busiest
    row is internal traffic, and "unknown" on top of a first screen read as a fault."""
    if country != "unknown":
        return country
    return html.Span(NO_COUNTRY, title=NO_COUNTRY_HINT, className="aw-no-country")


def render_baseline(rc: RenderContext, params: dict[str, Any]) -> Any:
    """Actual hourly counts against the mean of the same hour of day over the week before the range."""
    filters = rc.merged_filters(params)
    kwargs = {"event_types": tuple(params["event_types"]), "outcome": params["outcome"] or None}
    actual = wq.event_series(rc.pool, rc.start, rc.end, (), filters, interval="1h", **kwargs)
    history = wq.event_series(rc.pool, rc.start - timedelta(days=7), rc.start, (), filters, interval="1h", **kwargs)
    if not actual.height and not history.height:
        return empty(NO_DATA, NO_DATA_HINT)
    by_hour = (history.with_columns(hour=pl.col("bucket").dt.hour()).group_by("hour")
               .agg((pl.col("events").sum() / 7).alias("expected")))
    expected = dict(by_hour.iter_rows())
    hours = pl.datetime_range(rc.start.replace(minute=0, second=0, microsecond=0), rc.end, "1h",
                              time_zone="UTC", eager=True)
    counts = dict(actual.select("bucket", "events").iter_rows())
    x = hours.to_list()
    fig = figure([{"type": "scatter", "x": x, "y": [expected.get(h.hour, 0) for h in x], "mode": "lines",
                   "name": "baseline (previous 7 days)", "line": {"color": "#9ca3af", "dash": "dot", "width": 2}},
                  {"type": "bar", "x": x, "y": [counts.get(h, 0) for h in x], "name": "actual",
                   "marker": {"color": PALETTE[0]}, "opacity": 0.85}])
    return graph(fig, ids.graph(rc.aio_id) | {"type": "aw-baseline"})
