"""KPI tiles: one number each, with where it comes from."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dash import dcc, html

from dashboard.render import RenderContext, search_href, short_number
from storage.timescale import anomalies as anomaly_store
from storage.timescale import rollups
from storage.timescale import widgets_queries as wq
from storage.timescale.anomalies import AnomalyQuery

METRICS = {
    "events_per_min": "Events / min",
    "failed_logins_hour": "Failed logins, last hour",
    "active_alerts": "Active alerts",
    "anomalies_today": "Anomalies today",
    "ingest_lag": "Ingest lag (P95)",
    "events_total": "Events in range",
}


def _tile(label: str, value: str, sub: str, *, tone: str = "", href: str | None = None,
          note: Any = None) -> html.Div:
    return html.Div([
        html.Div(label, className="aw-kpi-label"),
        html.Div(value, className=f"aw-kpi-value {tone}"),
        html.Div([sub, " ", dcc.Link("events →", href=href, className="aw-kpi-link") if href else None],
                 className="aw-kpi-sub"),
        note,
    ], className="aw-kpi")


def catching_up(rc: RenderContext) -> html.Div | None:
    """Counts from the rollups miss events written behind their watermark (a history load, a backfill)
    until the next refresh; the raw-event widgets (latest events) already show them. Say so."""
    behind = rollups.pending(rc.pool, rc.start, rc.end)
    if not behind:
        return None
    first, last = behind[0][0], behind[-1][1]
    return html.Div(f"rollups catching up: events from {first:%d %b %H:%M}–{last:%H:%M} UTC are not counted yet",
                    className="aw-kpi-note", title="Events were written into the past (a history load or backfill); "
                    "the rollup refresh (every minute) will count them.")


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def render(rc: RenderContext, params: dict[str, Any]) -> html.Div:
    metric = params["metric"]
    label = METRICS[metric]
    filters = rc.merged_filters(params)
    span = (f"{rc.start:%H:%M}–{rc.end:%H:%M} UTC" if rc.end - rc.start <= timedelta(hours=6)
            else f"since {rc.start:%d %b %H:%M} UTC")
    if metric == "events_per_min":
        total = wq.total(rc.pool, rc.start, rc.end, filters)
        minutes = max((rc.end - rc.start).total_seconds() / 60, 1)
        return _tile(label, short_number(round(total / minutes, 2)), "average over the range",
                     href=search_href(**_search_filters(filters)), note=catching_up(rc))
    if metric == "events_total":
        total = wq.total(rc.pool, rc.start, rc.end, filters)
        return _tile(label, short_number(total), span, href=search_href(**_search_filters(filters)),
                     note=catching_up(rc))
    if metric == "failed_logins_hour":
        start = rc.now - timedelta(hours=1)
        failed = wq.total(rc.pool, start, rc.now, filters, event_types=("user_login",), outcome="failure")
        return _tile(label, short_number(failed), "user_login with outcome failure", tone="bad" if failed else "",
                     href=search_href(event_type="user_login", outcome="failure",
                                      start_time=start.isoformat(timespec="seconds")))
    if metric == "anomalies_today":
        midnight = rc.now.replace(hour=0, minute=0, second=0, microsecond=0)
        count = anomaly_store.anomaly_count(rc.pool, AnomalyQuery(start=midnight, end=rc.now + timedelta(seconds=1)))
        return _tile(label, short_number(count), "since 00:00 UTC" if count else "none scored since 00:00 UTC",
                     tone="warn" if count else "")
    if metric == "active_alerts":
        actions = rc.alerts()
        if actions is None:
            return _tile(label, "—", "Alerting is not configured")
        firing = actions.list_alerts(rc.pool, states=["firing"], limit=1000)
        return _tile(label, short_number(len(firing)), "firing now", tone="bad" if firing else "good")
    lag = wq.ingest_lag(rc.pool, now=rc.now)
    if not lag.events:
        return _tile(label, "—", "no events received in the last 5 min")
    tone = "bad" if (lag.p95_seconds or 0) > 60 else ""
    return _tile(label, _seconds(lag.p95_seconds), f"P50 {_seconds(lag.p50_seconds)} · {lag.events:,} events, 5 min",
                 tone=tone)


def _search_filters(filters: wq.Filters) -> dict[str, Any]:
    return {"event_type": filters.event_type, "outcome": filters.outcome, "user_id": filters.user_id,
            "source_ip": filters.source_ip}
