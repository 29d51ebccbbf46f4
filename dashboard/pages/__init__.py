"""The pages, each registered with ``dash.register_page`` when the app is mounted."""

from __future__ import annotations

from dash import Dash

from dashboard.registry import Registry


def register(app: Dash, registry: Registry) -> None:
    from dashboard.pages import alerts, custom, entity, ops, overview, reports, search

    overview.register(app, registry)
    search.register(app, registry)
    entity.register(app, registry)
    custom.register(app, registry)
    alerts.register(app, registry)
    ops.register(app, registry)
    reports.register(app, registry)
