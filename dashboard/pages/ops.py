"""Operations: is the platform itself healthy? Schema, analytics leader, alert outbox, integrity checkpoints and
stored anomaly incidents, read from the same stored state the worker exports on /metrics (for history and
alerting, scrape those into Prometheus: deploy/grafana/auditwatch.json, deploy/prometheus/auditwatch-alerts.yml).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dash
from dash import Dash, html

from dashboard.context import current
from storage.timescale import leader, ops_state

STALE_CHECKPOINT_SECONDS = 900  # as AuditwatchCheckpointStale
OLD_NOTIFICATION_SECONDS = 600  # as AuditwatchOutboxBacklog
REPLICA_LAG_SECONDS = 30  # reads this far behind are worth a look (docs/scaling.md)


def _age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _tile(title: str, value: str, note: str, ok: bool) -> html.Div:
    return html.Div([html.Div(title, className="aw-kpi-title"), html.Div(value, className="aw-kpi-value"),
                     html.Div(note, className="aw-kpi-note")],
                    className="aw-card aw-ops-tile " + ("aw-ok" if ok else "aw-bad"), **{"data-ok": str(ok).lower()})


def _table(head: list[str], rows: list[list[Any]], empty: str) -> html.Table | html.P:
    if not rows:
        return html.P(empty, className="aw-muted")
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])),
                       html.Tbody([html.Tr([html.Td(str(c)) for c in row]) for row in rows])], className="aw-table")


def _replica_tile() -> list[html.Div]:
    """The read replica's lag, when reads go to one (docs/scaling.md); nothing otherwise."""
    probe = current().replica_status
    status = probe() if probe is not None else None
    if status is None:
        return []
    if not status.ok:
        return [_tile("Read replica", "down", status.problem or "it does not answer", False)]
    lag = "unknown" if status.lag_seconds is None else f"{status.lag_seconds:.1f} s"
    note = (f"last replayed commit {status.last_replayed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if status.last_replayed_at
            else "no transaction replayed yet")
    return [_tile("Read replica lag", lag, note,
                  status.lag_seconds is not None and status.lag_seconds <= REPLICA_LAG_SECONDS)]


def layout(*, now: datetime | None = None, **_query: Any) -> html.Div:
    now = now or datetime.now(UTC)
    pool = current().pool
    ready = ops_state.readiness(pool)
    state = ops_state.read(pool)
    with pool.connection() as conn:
        holder = leader.holder(conn)
        conn.rollback()
    checkpoint_age = (now - state.last_checkpoint_at).total_seconds() if state.last_checkpoint_at else None
    oldest = min((b.oldest_created_at for b in state.backlog), default=None)
    backlog_total = sum(b.notifications for b in state.backlog)
    tiles = html.Div([
        _tile("Database schema", f"v{ready.schema_version}" if ready.schema_version else "none",
              ready.problem or f"as this code expects (v{ready.expected_version})", ready.ok),
        _tile("Analytics leader", holder.application_name if holder else "none",
              f"backend pid {holder.backend_pid}" if holder else "no worker scores anomalies", holder is not None),
        _tile("Integrity checkpoint", _age(checkpoint_age) + " ago" if checkpoint_age is not None else "never",
              f"{state.chain_events or 0:,} events sealed",
              checkpoint_age is not None and checkpoint_age <= STALE_CHECKPOINT_SECONDS),
        _tile("Alert outbox", f"{backlog_total} waiting",
              f"oldest {_age((now - oldest).total_seconds())}" if oldest else "nothing undelivered",
              oldest is None or (now - oldest).total_seconds() <= OLD_NOTIFICATION_SECONDS),
        *_replica_tile(),
    ], className="aw-ops-tiles")
    return html.Div([
        html.Div([html.H1("Operations")], className="aw-page-head"),
        tiles,
        html.H2("Undelivered notifications"),
        _table(["Receiver", "Status", "Notifications", "Oldest"],
               [[b.receiver, b.status, b.notifications, _age((now - b.oldest_created_at).total_seconds())]
                for b in sorted(state.backlog, key=lambda b: (b.receiver, b.status))], "Nothing waits for delivery."),
        html.H2("Failed delivery attempts"),
        _table(["Receiver", "Failed attempts (ever)"], sorted([list(i) for i in state.delivery_failures.items()]),
               "No delivery has failed."),
        html.H2("Stored anomaly incidents"),
        _table(["Detector", "Severity", "Incidents"],
               [[d, s, n] for (d, s), n in sorted(state.anomalies.items())], "No anomalies stored."),
        html.P(["Metrics for Prometheus: ", html.Code("/metrics"), " on the API and on the worker's, syslog "
                "listener's and writer's ops ports; readiness: ", html.Code("/readyz"), "."], className="aw-muted"),
    ], id="aw-ops-page")


def register(app: Dash, _registry: Any = None) -> None:
    dash.register_page("dashboard.pages.ops", path="/ops", name="Operations", title="Operations · Auditwatch",
                       layout=lambda **query: layout(**query))
