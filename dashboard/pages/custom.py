"""Custom dashboards: list, create, import YAML; open one to add, configure, arrange, save, share, export."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import dash
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard import config, ids
from dashboard.auth import user
from dashboard.context import current
from dashboard.errors import DashboardError
from dashboard.pages.overview import overview_document
from dashboard.registry import Registry
from dashboard.widget_aio import WidgetAIO
from storage.timescale import dashboards
from storage.timescale.dashboards import EVERYONE, DashboardConflict


def _audit(change: str, **extra: Any) -> dashboards.Audit:
    """Dashboard changes are configuration changes: the builder of their config_change record, which the
    store commits with the change."""
    context, principal = current(), user().principal

    def build(saved: dashboards.SavedDashboard):
        return context.record("config_change", principal, resource_id=str(saved.dashboard_id),
                              metadata={"change": change, "dashboard": saved.name, "version": saved.version, **extra})

    return build


def list_layout(**_query: Any) -> html.Div:
    who = user()
    found = dashboards.visible_to(current().pool, who.principal)
    items = [html.Li([
        dcc.Link(d.name, href=f"/dashboard/d/{d.dashboard_id}", className="aw-dash-link"),
        html.Span(f"{len(d.config.get('widgets', []))} widgets · updated {d.updated_at:%Y-%m-%d %H:%M} UTC"
                  + ("" if d.owner == who.principal else f" · shared by {d.owner} (read-only)"), className="aw-note"),
    ]) for d in found]
    return html.Div([
        dcc.Location(id=ids.NAV_REDIRECT, refresh=True),
        html.Div(html.H1("Dashboards"), className="aw-page-head"),
        html.Div([
            html.Section([
                html.H2("Yours and shared with you"),
                html.Ul(items, className="aw-dash-list", id=ids.DASH_LIST) if items else
                html.Div("No dashboards yet: create one, import a YAML export, or copy the overview.",
                         className="aw-empty"),
            ], className="aw-panel"),
            html.Section([
                html.H2("New dashboard"),
                html.Div([dcc.Input(id=ids.DASH_NEW_NAME, placeholder="Name, e.g. SOC morning", className="aw-input",
                                    maxLength=200),
                          html.Button("Create", id=ids.DASH_CREATE, n_clicks=0, className="aw-button")],
                         className="aw-actions"),
                html.H2("Import from YAML"),
                dcc.Textarea(id=ids.DASH_IMPORT_TEXT, placeholder="Paste an exported dashboard (YAML)…",
                             className="aw-input aw-textarea"),
                html.Div([dcc.Upload(html.Span("or choose a .yaml file"), id=ids.DASH_IMPORT_UPLOAD,
                                     className="aw-upload", max_size=256 * 1024),
                          html.Button("Import", id=ids.DASH_IMPORT, n_clicks=0, className="aw-button")],
                         className="aw-actions"),
                html.Div(id=ids.DASH_LIST_STATUS, role="status"),
            ], className="aw-panel"),
        ], className="aw-two"),
    ])


def dashboard_layout(registry: Registry, dashboard_id: str = "", **_query: Any) -> html.Div:
    who = user()
    try:
        saved = dashboards.get(current().pool, uuid.UUID(dashboard_id))
    except ValueError:
        saved = None
    if saved is None or not saved.readable_by(who.principal):
        return html.Div([html.H1("Dashboard not found"),
                         html.P("It was deleted, or it is not shared with you."),
                         dcc.Link("← All dashboards", href="/dashboard/dashboards")], className="aw-empty")
    editable = saved.writable_by(who.principal)
    try:
        document = config.validate(registry, {**saved.config, "name": saved.name})
        problem = None
    except DashboardError as exc:
        document, problem = {"widgets": []}, f"This dashboard no longer fits the widget registry: {exc}"
    toolbar = [dcc.Link("← Dashboards", href="/dashboard/dashboards", className="aw-button small ghost")]
    if editable:
        toolbar += [
            dcc.Input(id=ids.DASH_NAME, value=saved.name, className="aw-input aw-name", maxLength=200,
                      placeholder="Dashboard name"),
            dcc.Dropdown(id=ids.DASH_ADD_TYPE, options=[{"label": t.label, "value": t.name}
                                                        for t in registry.types.values()],
                         value="timeseries", clearable=False, searchable=False, className="aw-select aw-add-type"),
            html.Button("Add widget", id=ids.DASH_ADD, n_clicks=0, className="aw-button small"),
            dcc.Checklist(id=ids.DASH_SHARE_ALL, options=[{"label": " Share read-only with everyone",
                                                           "value": "all"}],
                          value=["all"] if EVERYONE in saved.shared_with else [], className="aw-check"),
            dcc.Input(id=ids.DASH_SHARE_WITH, className="aw-input aw-share", placeholder="or with: key names, comma-separated",
                      value=", ".join(p.removeprefix("apikey:") for p in saved.shared_with if p != EVERYONE)),
            html.Button("Save", id=ids.DASH_SAVE, n_clicks=0, className="aw-button small"),
            html.Button("Delete", id=ids.DASH_DELETE, n_clicks=0, className="aw-button small danger"),
        ]
    else:
        toolbar.append(html.Span(f"Read-only: shared by {saved.owner}", className="aw-tag"))
    toolbar.append(html.Button("Export YAML", id=ids.DASH_EXPORT, n_clicks=0, className="aw-button small ghost"))
    return html.Div([
        dcc.Location(id=ids.NAV_REDIRECT, refresh=True),
        dcc.Store(id=ids.DASH_META, data={"dashboard_id": str(saved.dashboard_id), "version": saved.version,
                                          "editable": editable, "name": saved.name}),
        dcc.Download(id=ids.DASH_DOWNLOAD),
        html.Div([html.H1(saved.name), html.Div(toolbar, className="aw-toolbar")], className="aw-page-head stacked"),
        html.Div(problem, className="aw-error") if problem else None,
        html.Div(id=ids.DASH_STATUS, role="status"),
        html.Div([WidgetAIO(w, registry=registry, editable=editable) for w in document["widgets"]],
                 id=ids.GRID, className="aw-grid"),
        html.Div("No widgets yet: pick a type above and press Add widget.", className="aw-note aw-grid-hint")
        if editable else None,
    ])


def _share_list(everyone: list[str] | None, names: str | None) -> tuple[str, ...]:
    shared = [EVERYONE] if everyone else []
    for name in (names or "").split(","):
        name = name.strip()
        if name:
            shared.append(name if name.startswith("apikey:") else f"apikey:{name}")
    return tuple(dict.fromkeys(shared))


def register(app: Dash, registry: Registry) -> None:
    dash.register_page("dashboard.pages.custom", path="/dashboards", name="Dashboards",
                       title="Dashboards · Auditwatch", layout=list_layout)
    dash.register_page("dashboard.pages.custom_view", path_template="/d/<dashboard_id>", name="Dashboard",
                       title="Dashboard · Auditwatch", layout=lambda **kw: dashboard_layout(registry, **kw))

    @app.callback(
        Output(ids.NAV_REDIRECT, "href", allow_duplicate=True), Output(ids.DASH_LIST_STATUS, "children"),
        Input(ids.DASH_CREATE, "n_clicks"), Input(ids.DASH_IMPORT, "n_clicks"),
        State(ids.DASH_NEW_NAME, "value"), State(ids.DASH_IMPORT_TEXT, "value"),
        State(ids.DASH_IMPORT_UPLOAD, "contents"),
        prevent_initial_call=True,
    )
    def create_or_import(_create, _import, name, text, upload):
        """New empty dashboard, or one imported from YAML (a clear error for bad YAML)."""
        who = user()
        try:
            if ctx.triggered_id == ids.DASH_CREATE:
                document = config.validate(registry, {"name": name or "", "widgets": []})
            else:
                if upload and not (text or "").strip():
                    text = base64.b64decode(upload.split(",", 1)[-1]).decode("utf-8", errors="strict")
                document = config.from_yaml(registry, text or "")
            saved = dashboards.create(current().pool, owner=who.principal, name=document["name"], config=document,
                                      audit=_audit("dashboard_created" if ctx.triggered_id == ids.DASH_CREATE
                                                   else "dashboard_imported"))
        except (DashboardError, DashboardConflict, UnicodeDecodeError) as exc:
            return no_update, html.Div(str(exc), className="aw-error", id="aw-import-error")
        return f"/dashboard/d/{saved.dashboard_id}", no_update

    @app.callback(
        Output(ids.NAV_REDIRECT, "href", allow_duplicate=True),
        Input(ids.COPY_OVERVIEW, "n_clicks"),
        prevent_initial_call=True,
    )
    def copy_overview(clicks):
        if not clicks:
            return no_update
        who = user()
        document = config.validate(registry, overview_document())
        existing = {d.name for d in dashboards.visible_to(current().pool, who.principal) if d.owner == who.principal}
        name, n = "My security overview", 2
        while name in existing:
            name, n = f"My security overview {n}", n + 1
        saved = dashboards.create(current().pool, owner=who.principal, name=name, config={**document, "name": name},
                                  audit=_audit("dashboard_created", copied_from="overview"))
        return f"/dashboard/d/{saved.dashboard_id}"

    @app.callback(
        Output(ids.GRID, "children"),
        Input(ids.DASH_ADD, "n_clicks"),
        Input(ids.widget("earlier", ALL), "n_clicks"), Input(ids.widget("later", ALL), "n_clicks"),
        Input(ids.widget("remove", ALL), "n_clicks"),
        State(ids.widget("config", ALL), "data"), State(ids.DASH_ADD_TYPE, "value"),
        State(ids.DASH_META, "data"),
        prevent_initial_call=True,
    )
    def arrange(_add, _earlier, _later, _remove, widgets, add_type, meta):
        """Add, remove and reorder: the grid is rebuilt from the widgets' current configs."""
        trigger = ctx.triggered_id
        if trigger is None or not ctx.triggered[0]["value"] or not (meta or {}).get("editable"):
            return no_update
        widgets = list(widgets or [])
        if trigger == ids.DASH_ADD:
            widgets.append(config.new_widget(registry, add_type or "timeseries"))
        else:
            index = next((i for i, w in enumerate(widgets) if w["id"] == trigger["aio_id"]), None)
            if index is None:
                return no_update
            action = trigger["subcomponent"]
            if action == "remove":
                widgets.pop(index)
            else:
                target = index - 1 if action == "earlier" else index + 1
                if not 0 <= target < len(widgets):
                    return no_update
                widgets[index], widgets[target] = widgets[target], widgets[index]
        return [WidgetAIO(w, registry=registry, editable=True) for w in widgets]

    @app.callback(
        Output(ids.DASH_META, "data"), Output(ids.DASH_STATUS, "children"),
        Output(ids.NAV_REDIRECT, "href", allow_duplicate=True),
        Input(ids.DASH_SAVE, "n_clicks"), Input(ids.DASH_DELETE, "n_clicks"),
        State(ids.widget("config", ALL), "data"), State(ids.DASH_NAME, "value"),
        State(ids.DASH_SHARE_ALL, "value"), State(ids.DASH_SHARE_WITH, "value"), State(ids.DASH_META, "data"),
        prevent_initial_call=True,
    )
    def save_or_delete(_save, _delete, widgets, name, share_all, share_with, meta):
        """Save (owner only, refused if saved elsewhere since) or delete; both audited."""
        if not ctx.triggered[0]["value"] or not meta.get("editable"):
            return no_update, no_update, no_update
        who = user()
        pool = current().pool
        dashboard_id = uuid.UUID(meta["dashboard_id"])
        if ctx.triggered_id == ids.DASH_DELETE:
            dashboards.delete(pool, dashboard_id, owner=who.principal, audit=_audit("dashboard_deleted"))
            return no_update, no_update, "/dashboard/dashboards"
        try:
            document = config.validate(registry, {"name": name or "", "widgets": widgets or []})
            shared = _share_list(share_all, share_with)
            saved = dashboards.save(pool, dashboard_id, owner=who.principal, version=meta["version"],
                                    name=document["name"], config=document, shared_with=shared,
                                    audit=_audit("dashboard_saved", widgets=len(document["widgets"]),
                                                 shared_with=list(shared)))
        except (DashboardError, DashboardConflict) as exc:
            return no_update, html.Div(str(exc), className="aw-error"), no_update
        return ({**meta, "version": saved.version, "name": saved.name},
                html.Div(f"Saved “{saved.name}” (version {saved.version}).", className="aw-ok", id="aw-saved"),
                no_update)

    @app.callback(
        Output(ids.DASH_DOWNLOAD, "data"),
        Input(ids.DASH_EXPORT, "n_clicks"),
        State(ids.widget("config", ALL), "data"), State(ids.DASH_META, "data"),
        prevent_initial_call=True,
    )
    def export_yaml(clicks, widgets, meta):
        """The dashboard as it is on screen, as YAML another user or server can import."""
        if not clicks:
            return no_update
        document = config.validate(registry, {"name": meta["name"], "widgets": widgets or []})
        filename = "".join(c if c.isalnum() or c in "-_" else "-" for c in meta["name"]).strip("-") or "dashboard"
        return {"content": config.to_yaml(document), "filename": f"{filename}.yaml", "type": "application/yaml"}
