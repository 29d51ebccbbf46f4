"""Alerts: the list (state, severity, rule filters) and, at ``?fingerprint=``, one alert's detail with the
acknowledge / silence / resolve actions — where every Slack and PagerDuty notification links to.

The actions are the alerts package's (``alerts.actions``, handed in by the host as ``alert_actions``), so
they follow the same lifecycle and are audited the same way as through the API and the CLI.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import dash
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard import alert_detail, ids
from dashboard.auth import user
from dashboard.context import current
from dashboard.registry import Registry
from dashboard.render import SEVERITY_COLORS, empty
from dashboard.tree import compact

STATES = ("pending", "firing", "resolved")
SEVERITIES = ("critical", "warning", "info")
LIST_LIMIT = 500


def _first(value: Any) -> str:
    value = value[0] if isinstance(value, list) else value
    return str(value or "").strip()[:200]


def _select(name: str, label: str, choices: list[str], chosen: str) -> html.Label:
    options = [html.Option(f"All {label.lower()}s" if label != "Severity" else "All severities", value="")]
    options += [html.Option(c, value=c, selected=c == chosen) for c in choices]
    return html.Label([html.Span(label), html.Select(options, name=name, className="aw-input",
                                                     id=f"aw-alerts-{name}")], className="aw-field")


def alert_list(actions: Any, pool: Any, *, state: str, severity: str, rule: str, now: datetime) -> html.Div:
    every = actions.list_alerts(pool, states=[state] if state in STATES else None, limit=LIST_LIMIT, now=now)
    rules = sorted({a.rule_id for a in every} | ({rule} if rule else set()))
    shown = [a for a in every if (not severity or a.severity == severity) and (not rule or a.rule_id == rule)]
    form = html.Form([
        _select("state", "State", list(STATES), state),
        _select("severity", "Severity", list(SEVERITIES), severity),
        _select("rule", "Rule", rules, rule),
        html.Div(html.Button("Filter", type="submit", className="aw-button"), className="aw-field aw-field-button"),
    ], method="get", action="/dashboard/alerts", className="aw-filters aw-alert-filters")
    if not shown:
        body: Any = empty("No alerts", "Nothing matches these filters." if (state or severity or rule)
                          else "No rule has fired yet.")
    else:
        rows = []
        for a in shown:
            tags = [html.Span(a.state, className=f"aw-state aw-state-{a.state}")]
            if a.acknowledged_by:
                tags.append(html.Span("acked", className="aw-tag"))
            if a.silenced:
                tags.append(html.Span("silenced", className="aw-tag"))
            href = f"/dashboard/alerts?{urlencode({'fingerprint': a.fingerprint})}"
            rows.append(html.Tr([
                html.Td([html.Span(className="aw-dot", style={"background": SEVERITY_COLORS.get(
                    {"warning": "medium", "info": "low"}.get(a.severity, a.severity), "#9ca3af")}), " ", a.severity]),
                html.Td(dcc.Link(a.title, href=href, className="aw-alert-link"), className="aw-title-cell"),
                html.Td(tags), html.Td(html.Code(a.rule_id)),
                html.Td(", ".join(f"{k}={v}" for k, v in a.group_values.items()) or "—"),
                html.Td(f"{a.count:,}", className="num"), html.Td(alert_detail.when(a.started_at)),
                html.Td(alert_detail.when(a.updated_at)),
            ], className="aw-alert-row"))
        body = html.Div(compact(html.Table([  # up to LIST_LIMIT rows: one component each part, not per cell
            html.Thead(html.Tr([html.Th(h) for h in ("Severity", "Alert", "State", "Rule", "Entity", "Count",
                                                     "Started", "Last change")])),
            html.Tbody(rows)], className="aw-table", id="aw-alerts-table")), className="aw-results")
    note = f"{len(shown)} of {len(every)} alert(s)" + (f" (the newest {LIST_LIMIT})" if len(every) >= LIST_LIMIT
                                                       else "")
    return html.Div([form, html.Div(note, className="aw-note aw-count"), html.Div(body, className="aw-panel")])


def layout(fingerprint: Any = None, state: Any = None, severity: Any = None, rule: Any = None,
           **_query: Any) -> html.Div:
    context = current()
    actions = context.alert_actions
    now = datetime.now(UTC)
    if actions is None:
        return html.Div([html.Div(html.H1("Alerts"), className="aw-page-head"),
                         empty("Alerting is not configured", "Install the alerts package and define rules.")])
    fp = _first(fingerprint)
    if fp:
        return html.Div([dcc.Store(id=ids.ALERT_FP, data=fp), html.Div(_detail(fp, now=now), id=ids.ALERT_DETAIL)])
    return html.Div([html.Div(html.H1("Alerts"), className="aw-page-head"),
                     alert_list(actions, context.pool, state=_first(state), severity=_first(severity),
                                rule=_first(rule), now=now)])


def _detail(fp: str, *, now: datetime, flash: Any = None, reason: str = "") -> Any:
    context = current()
    try:
        view = context.alert_actions.get_alert(context.pool, fp, now=now)
    except LookupError:  # the alerts package's UnknownAlert
        return html.Div([html.Div([dcc.Link("← All alerts", href="/dashboard/alerts", className="aw-note"),
                                   html.H1("Alert not found")], className="aw-page-head stacked"),
                         empty("No alert has this fingerprint",
                               "It may come from another Auditwatch installation, or the link was cut short. "
                               "The list shows every alert this one knows.")], id="aw-alert-missing")
    return alert_detail.detail(context.pool, view, now=now, can_act=user().can_configure, flash=flash,
                               reason=reason)


def respond(action: str, fp: str, *, hours: Any, reason: str, now: datetime) -> html.Span:
    """Run one action through the alerts package; the message says what happened (or what to fix)."""
    who = user()
    if not who.can_configure:
        return html.Span(f"The {who.role} role may not acknowledge, silence or resolve alerts; ask an admin.",
                         className="aw-error")
    context = current()
    actions = context.alert_actions
    reason = (reason or "").strip()

    def audit(resource_id: str, metadata: dict[str, Any]):  # the record; actions stores it with the change
        return context.record("config_change", who.principal, resource_id=resource_id,
                              metadata={"via": "dashboard", **metadata})

    try:
        view = actions.get_alert(context.pool, fp, now=now)
        if action == "ack":
            actions.acknowledge(context.pool, fp, by=who.principal, audit=audit, now=now,
                                comment=reason or "acknowledged from the alerts page")
            return html.Span(f"Acknowledged “{view.title}”.", className="aw-ok")
        if not reason:
            return html.Span(f"Say why before you {'silence' if action == 'silence' else 'resolve'} it "
                             "(the reason is kept with the change).", className="aw-error")
        if action == "silence":
            try:
                span = timedelta(hours=float(hours))
            except (TypeError, ValueError):
                return html.Span("Choose how long to silence it.", className="aw-error")
            actions.create_silence(context.pool, matchers={"rule_id": view.rule_id, **view.group_values},
                                   starts_at=now, ends_at=now + span, created_by=who.principal,
                                   comment=reason, audit=audit)
            return html.Span(f"Silenced “{view.title}” until {alert_detail.when(now + span)}.", className="aw-ok")
        actions.resolve(context.pool, fp, by=who.principal, comment=reason, audit=audit, now=now)
        return html.Span(f"Resolved “{view.title}”.", className="aw-ok")
    except (LookupError, ValueError) as exc:  # unknown alert, bad silence, already resolved: say so
        return html.Span(str(exc), className="aw-error")


def register(app: Dash, registry: Registry) -> None:
    dash.register_page("dashboard.pages.alerts", path="/alerts", name="Alerts", title="Alerts · Auditwatch",
                       layout=lambda **query: layout(**query))

    @app.callback(
        Output(ids.ALERT_DETAIL, "children"),
        Input(ids.ALERT_ACK, "n_clicks"), Input(ids.ALERT_SILENCE, "n_clicks"), Input(ids.ALERT_RESOLVE, "n_clicks"),
        State(ids.ALERT_FP, "data"), State(ids.ALERT_SILENCE_FOR, "value"), State(ids.ALERT_REASON, "value"),
        prevent_initial_call=True,
    )
    def act(_ack, _silence, _resolve, fp, hours, reason):
        """A button on the detail: act, then show the alert again with what happened."""
        trigger = ctx.triggered_id
        if trigger is None or not (ctx.triggered[0]["value"] or 0) or not fp:
            return no_update
        action = {ids.ALERT_ACK: "ack", ids.ALERT_SILENCE: "silence", ids.ALERT_RESOLVE: "resolve"}[trigger]
        now = datetime.now(UTC)
        flash = respond(action, fp, hours=hours, reason=reason or "", now=now)
        keep = reason if "aw-error" in (flash.className or "") else ""
        return _detail(fp, now=now, flash=flash, reason=keep or "")
