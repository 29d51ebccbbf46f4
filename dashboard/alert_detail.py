"""One alert, as on-call needs it after following a notification's link: what fired, its history, what
receivers were told, and the anomalies and events behind it.

Read-only: it reads storage's alert, outbox, anomaly and event readers. The actions (acknowledge,
silence, resolve) are the alerts package's, called by the page (dashboard/pages/alerts.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from dash import dcc, html
from psycopg_pool import ConnectionPool

from dashboard import ids
from dashboard.render import search_href
from storage.events import EventRecord
from storage.timescale import alerts as alert_store
from storage.timescale import anomalies as anomaly_store
from storage.timescale import outbox, queries
from storage.timescale.alerts import AlertRow

SILENCE_CHOICES = [{"label": "1 hour", "value": 1}, {"label": "4 hours", "value": 4},
                   {"label": "1 day", "value": 24}, {"label": "7 days", "value": 168}]
EVIDENCE_ROWS = 10
# An entity field of an alert's group → the anomaly entity type and the event filter it names.
ENTITY_FIELDS = {"user_id": ("user", "user_id"), "source_ip": ("source_ip", "source_ip")}


def when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "—"


def entity_of(alert: AlertRow) -> tuple[str, str, str] | None:
    """(anomaly entity type, event filter field, value) of the alert's group, when it names one."""
    group = alert.group_values
    if group.get("entity_type") and group.get("entity_value"):
        kind = group["entity_type"]
        return kind, "user_id" if kind == "user" else "source_ip", group["entity_value"]
    for field, (kind, event_field) in ENTITY_FIELDS.items():
        if group.get(field):
            return kind, event_field, group[field]
    return None


def _table(head: list[str], rows: list[list[Any]], empty_text: str) -> Any:
    if not rows:
        return html.Div(empty_text, className="aw-note")
    return html.Div(html.Table([html.Thead(html.Tr([html.Th(h) for h in head])),
                                html.Tbody([html.Tr([html.Td(c) for c in r]) for r in rows])],
                               className="aw-table wrap"), className="aw-results")


def _section(title: str, body: Any, section_id: str) -> html.Section:
    return html.Section([html.H2(title), body], className="aw-panel", id=section_id)


def facts(view: Any, row: AlertRow) -> html.Div:
    """The alert at a glance: state, severity, entity, counts, times, runbook."""
    tags = [html.Span(view.state, className=f"aw-state aw-state-{view.state}"),
            html.Span(view.severity, className=f"aw-tag aw-sev-tag-{view.severity}")]
    if view.acknowledged_by:
        until = f" until {when(view.acknowledged_until)}" if view.acknowledged_until else ""
        tags.append(html.Span(f"ack by {view.acknowledged_by}{until}", className="aw-tag"))
    if view.silenced:
        tags.append(html.Span("silenced", className="aw-tag"))
    if row.flapping:
        tags.append(html.Span("flapping", className="aw-tag"))
    pairs = [("Rule", html.Code(view.rule_id)),
             ("Entity", ", ".join(f"{k}={v}" for k, v in view.group_values.items()) or "—"),
             ("Count", f"{view.count:,} (now {row.value:,})"),
             ("Started", when(view.started_at)), ("Firing since", when(row.firing_at)),
             ("Last change", when(view.updated_at)), ("Resolved", when(view.resolved_at)),
             ("Runbook", html.A("Open the runbook", href=view.runbook_url, target="_blank")
              if view.runbook_url else "—"),
             ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(view.labels.items()))),
             ("Fingerprint", html.Code(view.fingerprint))]
    return html.Div([
        html.Div(tags, className="aw-alert-head"),
        html.Dl([part for label, value in pairs for part in (html.Dt(label), html.Dd(value))], className="aw-facts"),
    ], className="aw-panel", id="aw-alert-facts")


def actions_panel(view: Any, *, can_act: bool, reason: str = "") -> Any:
    """Acknowledge, silence (how long, why) and resolve, for roles that may respond to alerts."""
    if view.state == "resolved":
        return None
    if not can_act:
        return html.Div("Your role sees alerts; acknowledging, silencing and resolving need the admin role "
                        "(permission respond_to_alerts).", className="aw-note aw-panel")
    return html.Div([
        html.H2("Respond"),
        html.Div([html.Button("Acknowledge", id=ids.ALERT_ACK, n_clicks=0, className="aw-button",
                              disabled=view.acknowledged_by is not None),
                  html.Span("No repeats until it resolves; PagerDuty is told.", className="aw-note")],
                 className="aw-actions aw-respond"),
        dcc.Input(id=ids.ALERT_REASON, value=reason, placeholder="Reason (needed to silence or resolve)",
                  className="aw-input aw-reason", maxLength=500),
        html.Div([
            html.Span("Silence for", className="aw-note"),
            dcc.Dropdown(id=ids.ALERT_SILENCE_FOR, options=SILENCE_CHOICES, value=1, clearable=False,
                         searchable=False, className="aw-select aw-silence-for"),
            html.Button("Silence", id=ids.ALERT_SILENCE, n_clicks=0, className="aw-button ghost",
                        disabled=view.silenced),
            html.Button("Resolve", id=ids.ALERT_RESOLVE, n_clicks=0, className="aw-button danger aw-push"),
        ], className="aw-actions aw-respond"),
        html.Div("A silence mutes this rule for this entity (its rule and group labels); a resolve closes the "
                 "alert now, and the next evaluation opens a new one if the condition still holds.",
                 className="aw-note"),
    ], className="aw-panel", id="aw-alert-actions")


def history(pool: ConnectionPool, fingerprint: str) -> html.Section:
    rows = [[when(h.at), f"{h.from_state or '—'} → {h.to_state}", f"{h.value:,}",
             html.Code(json.dumps(h.detail, default=str)[:160]) if h.detail else ""]
            for h in alert_store.history(pool, fingerprint=fingerprint, limit=50)]
    return _section("History", _table(["At", "Transition", "Value", "Detail"], rows, "No state changes yet."),
                    "aw-alert-history")


def notifications(pool: ConnectionPool, fingerprint: str) -> html.Section:
    sent = outbox.notifications(pool, fingerprint=fingerprint, limit=50)
    rows = []
    for n in sent:
        status = next((a.get("status") for a in n.payload.get("alerts", []) if a.get("fingerprint") == fingerprint),
                      n.kind)
        rows.append([when(n.created_at), n.receiver, status, n.status, str(n.attempts), when(n.delivered_at),
                     (n.last_error or "")[:120]])
    return _section("Notifications", _table(["Queued", "Receiver", "Told", "Delivery", "Attempts", "Delivered",
                                             "Last error"], rows, "No notification was sent for this alert."),
                    "aw-alert-notifications")


def anomalies(pool: ConnectionPool, row: AlertRow, now: datetime) -> html.Section:
    entity = entity_of(row)
    found = []
    if entity is not None:
        kind, _, value = entity
        found = anomaly_store.list_anomalies(pool, anomaly_store.AnomalyQuery(
            entity_type=kind, entity_value=value, start=row.started_at - timedelta(days=1),
            end=(row.resolved_at or now) + timedelta(minutes=1), limit=EVIDENCE_ROWS))
    rows = [[when(a.window_start), a.detector, html.Span(a.severity, className=f"aw-sev aw-sev-{a.severity}"),
             f"{a.score:.2f}", str(a.explanation.get("summary", ""))[:160]] for a in found]
    hint = "No anomaly was scored for this entity around this alert." if entity else \
        "This alert's group names no user or address, so no anomaly is tied to it."
    return _section("Anomalies", _table(["Window", "Detector", "Severity", "Score", "Summary"], rows, hint),
                    "aw-alert-anomalies")


def _evidence_events(pool: ConnectionPool, row: AlertRow, now: datetime) -> tuple[list[EventRecord], str | None]:
    samples = []
    for raw in (row.detail or {}).get("sample_event_ids") or []:
        try:
            found = queries.get(pool, uuid.UUID(str(raw)))
        except ValueError:
            continue
        if found is not None:
            samples.append(found)
        if len(samples) >= EVIDENCE_ROWS:
            break
    entity = entity_of(row)
    if entity is None:
        return samples, None
    _, field, value = entity
    start = row.started_at - timedelta(hours=1)
    end = (row.resolved_at or now) + timedelta(minutes=1)
    link = search_href(**{field: value}, start_time=start.isoformat(), end_time=end.isoformat())
    if not samples:
        samples = queries.search(pool, queries.EventQuery(start_time=start, end_time=end, limit=EVIDENCE_ROWS,
                                                          **{field: value})).events
    return samples, link


def events(pool: ConnectionPool, row: AlertRow, now: datetime) -> html.Section:
    found, link = _evidence_events(pool, row, now)
    rows = [[when(e.timestamp), e.event_type, str(e.outcome), e.user_id or "—", e.source_ip or "—",
             dcc.Link("open", href=search_href(event_id=str(e.event_id), user_id=e.user_id))] for e in found]
    body = [_table(["Time", "Type", "Outcome", "User", "Source IP", ""], rows,
                   "No stored event is tied to this alert.")]
    if link:
        body.append(dcc.Link("All events of this entity around the alert →", href=link,
                             className="aw-button small ghost aw-more"))
    return _section("Events", html.Div(body), "aw-alert-events")


def detail(pool: ConnectionPool, view: Any, *, now: datetime, can_act: bool, flash: Any = None,
           reason: str = "") -> html.Div:
    """The whole detail view of one alert."""
    row = alert_store.list_alerts(pool, fingerprint=view.fingerprint, limit=1)[0]
    return html.Div([
        html.Div([dcc.Link("← All alerts", href="/dashboard/alerts", className="aw-note"),
                  html.H1(view.title, id="aw-alert-title")], className="aw-page-head stacked"),
        html.Div(flash, id=ids.ALERT_FLASH, role="status", className="aw-flash-inline"),
        html.Div([
            html.Div([facts(view, row), actions_panel(view, can_act=can_act, reason=reason)], className="aw-col-a"),
            html.Div([history(pool, view.fingerprint), notifications(pool, view.fingerprint)],
                     className="aw-col-b"),
        ], className="aw-alert-grid"),
        html.Div([anomalies(pool, row, now), events(pool, row, now)], className="aw-alert-grid"),
    ])
