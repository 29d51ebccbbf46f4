"""Dashboard definitions: validation against the widget registry, and YAML export / import.

One document shape is stored in the database, exported as YAML and imported back:

    version: 1
    name: SOC morning
    widgets:
      - {id: a1b2c3d4, type: top, title: Failed logins by user, w: 4, h: 1,
         params: {dimension: user_id, outcome: failure, limit: 10}}
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import yaml

from dashboard.errors import DashboardConfigError
from dashboard.registry import HEIGHTS, WIDTHS, Registry

FORMAT_VERSION = 1
MAX_WIDGETS = 40
MAX_YAML_BYTES = 256 * 1024
WIDGET_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def new_widget_id() -> str:
    return secrets.token_hex(4)


def new_widget(registry: Registry, type_name: str, *, title: str | None = None, **params: Any) -> dict[str, Any]:
    """A widget of a registered type with its default parameters (``params`` override them)."""
    widget_type = registry.get(type_name)
    if widget_type is None:
        raise DashboardConfigError("type", f"unknown widget type {type_name!r}; choose one of "
                                   f"{', '.join(registry.names())}")
    widget = {"id": new_widget_id(), "type": type_name, "title": title or widget_type.label,
              "w": widget_type.width, "h": widget_type.height, "params": {**widget_type.defaults(), **params}}
    return validate_widget(registry, widget, "widget")


def _text(value: Any, where: str, max_len: int, *, required: bool = False) -> str:
    if value is None:
        if required:
            raise DashboardConfigError(where, "is missing; give it a value")
        return ""
    if not isinstance(value, str):
        raise DashboardConfigError(where, f"must be text, not {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise DashboardConfigError(where, "must not be empty")
    if len(value) > max_len:
        raise DashboardConfigError(where, f"is longer than {max_len} characters; shorten it")
    if _CONTROL.search(value):
        raise DashboardConfigError(where, "contains control characters; remove them")
    return value


def _param_value(param, value: Any, where: str) -> Any:
    if param.kind == "choice":
        if value is None:
            value = param.default
        if value not in param.choices:
            shown = ", ".join(repr(c) for c in param.choices)
            raise DashboardConfigError(where, f"{value!r} is not one of {shown}")
        return value
    if param.kind == "multi":
        if value is None:
            return list(param.default or [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or any(v not in param.choices for v in value):
            raise DashboardConfigError(where, f"must be a list of values from {', '.join(map(str, param.choices))}")
        return list(dict.fromkeys(value))
    if param.kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not param.low <= value <= param.high:
            raise DashboardConfigError(where, f"must be a whole number from {param.low} to {param.high}")
        return value
    return _text(value, where, param.max_len)


def validate_widget(registry: Registry, raw: Any, where: str) -> dict[str, Any]:
    """A widget definition checked and completed with defaults; raises DashboardConfigError otherwise."""
    if not isinstance(raw, dict):
        raise DashboardConfigError(where, "must be a mapping with at least `type`")
    unknown = set(raw) - {"id", "type", "title", "w", "h", "params"}
    if unknown:
        raise DashboardConfigError(where, f"unknown key {sorted(unknown)[0]!r}; allowed: id, type, title, w, h, params")
    type_name = raw.get("type")
    widget_type = registry.get(type_name) if isinstance(type_name, str) else None
    if widget_type is None:
        raise DashboardConfigError(f"{where}.type", f"unknown widget type {type_name!r}; choose one of "
                                   f"{', '.join(registry.names())}")
    widget_id = raw.get("id") or new_widget_id()
    if not isinstance(widget_id, str) or not WIDGET_ID.fullmatch(widget_id):
        raise DashboardConfigError(f"{where}.id", "must be 1-32 lower-case letters, digits or '-'")
    w = raw.get("w", widget_type.width)
    if w not in WIDTHS or isinstance(w, bool):
        raise DashboardConfigError(f"{where}.w", f"must be one of {', '.join(map(str, WIDTHS))} (of 12 columns)")
    h = raw.get("h", widget_type.height)
    if h not in HEIGHTS or isinstance(h, bool):
        raise DashboardConfigError(f"{where}.h", f"must be one of {', '.join(map(str, HEIGHTS))}")
    params_in = raw.get("params") or {}
    if not isinstance(params_in, dict):
        raise DashboardConfigError(f"{where}.params", "must be a mapping of parameter names to values")
    unknown = set(params_in) - {p.name for p in widget_type.params}
    if unknown:
        allowed = ", ".join(p.name for p in widget_type.params) or "none"
        raise DashboardConfigError(f"{where}.params", f"{widget_type.name} has no parameter "
                                   f"{sorted(unknown)[0]!r}; it takes: {allowed}")
    params = {p.name: _param_value(p, params_in[p.name] if p.name in params_in else p.default,
                                   f"{where}.params.{p.name}") for p in widget_type.params}
    title = _text(raw.get("title"), f"{where}.title", 120) or widget_type.label
    return {"id": widget_id, "type": widget_type.name, "title": title, "w": w, "h": h, "params": params}


def validate(registry: Registry, raw: Any) -> dict[str, Any]:
    """A whole dashboard document checked; widget ids made unique."""
    if not isinstance(raw, dict):
        raise DashboardConfigError("", "a dashboard must be a mapping with `name` and `widgets`")
    unknown = set(raw) - {"version", "name", "widgets"}
    if unknown:
        raise DashboardConfigError("", f"unknown key {sorted(unknown)[0]!r}; allowed: version, name, widgets")
    version = raw.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DashboardConfigError("version", f"this server reads version {FORMAT_VERSION} dashboards, not {version!r}")
    name = _text(raw.get("name"), "name", 200, required=True)
    widgets_in = raw.get("widgets") or []
    if not isinstance(widgets_in, list):
        raise DashboardConfigError("widgets", "must be a list of widgets")
    if len(widgets_in) > MAX_WIDGETS:
        raise DashboardConfigError("widgets", f"has {len(widgets_in)} widgets; at most {MAX_WIDGETS} fit a dashboard")
    widgets, seen = [], set()
    for index, raw_widget in enumerate(widgets_in):
        widget = validate_widget(registry, raw_widget, f"widgets[{index}]")
        while widget["id"] in seen:
            widget["id"] = new_widget_id()
        seen.add(widget["id"])
        widgets.append(widget)
    return {"version": FORMAT_VERSION, "name": name, "widgets": widgets}


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def from_yaml(registry: Registry, text: str | bytes) -> dict[str, Any]:
    """Parse and validate an exported dashboard; a clear DashboardConfigError for anything else."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise DashboardConfigError("", "the file is not UTF-8 text; export the dashboard again") from None
    if len(text.encode()) > MAX_YAML_BYTES:
        raise DashboardConfigError("", f"the YAML is over {MAX_YAML_BYTES // 1024} KB; a dashboard export is far "
                                   "smaller — is this the right file?")
    if not text.strip():
        raise DashboardConfigError("", "the YAML is empty; paste or upload an exported dashboard")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DashboardConfigError(where, f"not valid YAML ({problem}); fix it or export the dashboard again") from None
    return validate(registry, raw)
