"""The pages, each registered with ``dash.register_page`` when the app is mounted."""

from __future__ import annotations

from dash import Dash

from dashboard.registry import Registry


def register(app: Dash, registry: Registry) -> None:
    from dashboard.pages import custom, entity, overview, search

    overview.register(app, registry)
    search.register(app, registry)
    entity.register(app, registry)
    custom.register(app, registry)
    from dashboard.pages import ops  # the platform's own health (its own module: see ops.py)
    ops.register(app, registry)
