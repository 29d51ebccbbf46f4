"""The widget registry: each widget type declares its parameters, and one renderer serves every instance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES = ("user_login", "user_logout", "password_change", "permission_change", "data_export", "file_upload",
               "file_download", "api_key_created", "api_key_revoked", "system_startup", "system_shutdown",
               "config_change", "query_executed", "export_requested", "event_erased")
RANGE_CHOICES = ("", "15m", "1h", "6h", "24h", "7d", "30d")  # "" follows the global range
WIDTHS = (2, 3, 4, 6, 8, 12)  # of a 12-column grid
HEIGHTS = (1, 2, 3)  # rows of ~300 px


@dataclass(frozen=True)
class Param:
    """One parameter of a widget type: what the editor shows and what YAML may say."""

    name: str
    label: str
    kind: str  # choice | multi | text | int
    default: Any = None
    choices: tuple[Any, ...] = ()
    low: int = 1
    high: int = 100
    max_len: int = 200
    help: str = ""


@dataclass(frozen=True)
class WidgetType:
    name: str
    label: str
    description: str
    render: Callable[..., Any]
    params: tuple[Param, ...] = ()
    width: int = 6
    height: int = 1

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


@dataclass
class Registry:
    types: dict[str, WidgetType] = field(default_factory=dict)

    def add(self, widget_type: WidgetType) -> WidgetType:
        if widget_type.name in self.types:
            raise ValueError(f"widget type {widget_type.name!r} is registered twice")
        self.types[widget_type.name] = widget_type
        return widget_type

    def get(self, name: str) -> WidgetType | None:
        return self.types.get(name)

    def names(self) -> list[str]:
        return list(self.types)


# Shared parameter declarations
def range_param() -> Param:
    return Param("range", "Time range", "choice", "", RANGE_CHOICES, help="empty: follow the global range")


def types_param() -> Param:
    return Param("event_types", "Event types", "multi", [], EVENT_TYPES)


def outcome_param(default: str = "") -> Param:
    return Param("outcome", "Outcome", "choice", default, ("", "success", "failure", "unknown"))


def entity_params() -> tuple[Param, ...]:
    return (Param("user_id", "User", "text", "", max_len=256), Param("source_ip", "Source IP/CIDR", "text", "",
                                                                     max_len=64))


def build() -> Registry:
    """The registry of every widget type (imported lazily: renderers need storage, the registry must not)."""
    from dashboard.widgets import alerts, anomalies, charts, events, kpi

    registry = Registry()
    registry.add(WidgetType(
        "kpi", "KPI tile", "One number: events/min, failed logins, active alerts, anomalies today, ingest lag",
        kpi.render, (Param("metric", "Metric", "choice", "events_per_min", tuple(kpi.METRICS)), *entity_params()),
        width=2))
    registry.add(WidgetType(
        "timeseries", "Events over time", "Event counts per minute or hour, split by type and/or outcome",
        charts.render_timeseries,
        (Param("group_by", "Split by", "choice", "event_type", ("event_type", "outcome", "event_type,outcome", "")),
         Param("chart", "Chart", "choice", "area", ("area", "line", "bar")),
         types_param(), outcome_param(), *entity_params(), range_param()), width=8))
    registry.add(WidgetType(
        "top", "Top values", "The most frequent users, source IPs or event types", charts.render_top,
        (Param("dimension", "Of", "choice", "user_id", ("user_id", "source_ip", "event_type", "outcome")),
         outcome_param("failure"), types_param(), Param("limit", "How many", "int", 10, low=1, high=50),
         Param("chart", "Chart", "choice", "bar", ("bar", "table")), *entity_params(), range_param()), width=4))
    registry.add(WidgetType(
        "heatmap", "Hour-of-week heatmap", "When events happen: weekday × hour (UTC)", charts.render_heatmap,
        (types_param(), outcome_param(), *entity_params(), Param("range", "Time range", "choice", "7d", RANGE_CHOICES)),
        width=6))
    registry.add(WidgetType(
        "countries", "Source countries",
        "Events and failures per source country (the last 24 h at most under a user or IP filter)",
        charts.render_countries, (Param("limit", "How many", "int", 10, low=1, high=50), *entity_params(), range_param()),
        width=4))
    registry.add(WidgetType(
        "anomalies", "Anomaly timeline", "Anomalies by score over time; click one for its explanation",
        anomalies.render, (Param("min_score", "Minimum score (%)", "int", 0, low=0, high=100),
                           *entity_params(), range_param()), width=6))
    registry.add(WidgetType(
        "alerts", "Alert feed", "Pending and firing alerts; acknowledge or silence them here",
        alerts.render, (Param("states", "States", "multi", ["pending", "firing"],
                              ("pending", "firing", "resolved")),
                        Param("limit", "How many", "int", 20, low=1, high=100), *entity_params()), width=6))
    registry.add(WidgetType(
        "events", "Latest events", "The newest matching events; click one to open it in search",
        events.render, (types_param(), outcome_param(), *entity_params(),
                        Param("limit", "How many", "int", 10, low=1, high=50), range_param(),
                        Param("platform", "The platform's own records", "choice", "hidden", ("hidden", "shown"),
                              help="Its keys' reads and its operators' actions; hidden, the newest events are "
                                   "the systems' own, not the dashboard's reads of them")), width=6))
    registry.add(WidgetType(
        "baseline", "Baseline vs actual", "Hourly events against the same hours over the previous week",
        charts.render_baseline, (types_param(), outcome_param(), *entity_params(), range_param()), width=6))
    return registry
