"""The alert feed, over the alerts package's actions (acknowledge and silence for admins)."""

from __future__ import annotations

from typing import Any

from dash import html

from dashboard import ids
from dashboard.render import SEVERITY_COLORS, RenderContext, empty

SILENCE_HOURS = 1


def _mentions(alert: Any, value: str | None) -> bool:
    return value is None or value in alert.group_values.values() or value in alert.labels.values()


def render(rc: RenderContext, params: dict[str, Any]) -> Any:
    actions = rc.alerts()
    if actions is None:
        return empty("Alerting is not configured", "Install the alerts package and define rules to see alerts here.")
    filters = rc.merged_filters(params)
    value = filters.user_id or filters.source_ip
    found = [a for a in actions.list_alerts(rc.pool, states=list(params["states"]) or None, limit=params["limit"])
             if _mentions(a, value)]
    if not found:
        return empty("No alerts", "Nothing is pending or firing for this selection.")
    items = []
    for alert in found:
        acknowledged = alert.acknowledged_by is not None
        buttons = []
        if rc.can_configure and alert.state != "resolved":
            if not acknowledged:
                buttons.append(html.Button("Acknowledge", id=ids.alert_action("ack", alert.fingerprint),
                                           n_clicks=0, className="aw-button small"))
            if not alert.silenced:
                buttons.append(html.Button(f"Silence {SILENCE_HOURS} h", id=ids.alert_action("silence",
                                                                                       alert.fingerprint),
                                           n_clicks=0, className="aw-button small ghost"))
        status = [html.Span(alert.state, className=f"aw-state aw-state-{alert.state}")]
        if acknowledged:
            status.append(html.Span(f"ack by {alert.acknowledged_by}", className="aw-tag"))
        if alert.silenced:
            status.append(html.Span("silenced", className="aw-tag"))
        items.append(html.Li([
            html.Div([html.Span(style={"background": SEVERITY_COLORS.get(alert.severity, "#9ca3af")},
                                className="aw-dot"),
                      html.Strong(alert.title), *status], className="aw-alert-head"),
            html.Div([f"{alert.rule_id} · ×{alert.count} · since {alert.started_at:%d %b %H:%M} UTC · ",
                      ", ".join(f"{k}={v}" for k, v in alert.group_values.items()),
                      html.A(" runbook", href=alert.runbook_url, target="_blank") if alert.runbook_url else None],
                     className="aw-note"),
            html.Div(buttons, className="aw-actions") if buttons else None,
        ], className="aw-alert"))
    return html.Ul(items, className="aw-alert-list")
