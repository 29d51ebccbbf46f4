"""What the browser sends to draw a widget, checked on the server (issue 14 #4).

A widget's config, the global time range and the cross-filter live in browser Stores, so anyone
signed in can send any JSON in their place. Before a widget reads anything, its config is checked
against the widget registry (type, parameters, their kinds and limits: ``dashboard.config``), and the
range and cross-filter against what the UI can produce. A refusal names what is wrong and is shown
inside the tile.
"""

from __future__ import annotations

import re
from typing import Any

from dashboard import config as dashboard_config
from dashboard.errors import DashboardConfigError, TimeRangeError
from dashboard.registry import Registry
from storage.events import Outcome
from storage.timescale.widgets_queries import Filters

# The cross-filter keys the UI sets (dashboard.shell.FILTER_KEYS) and the longest value each may hold.
FILTER_LIMITS = {"event_type": 64, "outcome": 16, "user_id": 256, "source_ip": 64}
RANGE_KEYS = ("preset", "start", "end")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def checked_widget(registry: Registry, widget: Any) -> dict[str, Any]:
    """The widget config as the registry allows it; DashboardConfigError says what is not."""
    if not isinstance(widget, dict) or not isinstance(widget.get("id"), str):
        raise DashboardConfigError("widget", "is not a widget config; reload the page")
    return dashboard_config.validate_widget(registry, widget, "widget")


def checked_filters(crossfilter: Any) -> Filters:
    """The cross-filter: only the keys the UI sets, each a short string (outcome one of the outcomes)."""
    if crossfilter is None:
        return Filters()
    if not isinstance(crossfilter, dict):
        raise DashboardConfigError("cross-filter", "must be a mapping; press Clear on the filter bar")
    unknown = set(crossfilter) - set(FILTER_LIMITS)
    if unknown:
        raise DashboardConfigError("cross-filter", f"cannot filter by {sorted(map(str, unknown))[0]!r}; it may "
                                   f"filter by {', '.join(FILTER_LIMITS)}")
    values: dict[str, str] = {}
    for name, value in crossfilter.items():
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) > FILTER_LIMITS[name] or _CONTROL.search(value):
            raise DashboardConfigError(f"cross-filter.{name}", f"must be text of at most {FILTER_LIMITS[name]} "
                                       "characters; press Clear on the filter bar")
        values[name] = value
    if "outcome" in values and values["outcome"] not in {str(o) for o in Outcome}:
        raise DashboardConfigError("cross-filter.outcome", f"must be one of {', '.join(str(o) for o in Outcome)}")
    return Filters(**values)


def checked_range(time_range: Any) -> dict[str, str | None] | None:
    """The global range spec ``{preset, start, end}`` as the range picker makes it (text values only);
    ``timerange.resolve`` then checks the preset and caps a custom span."""
    if time_range is None:
        return None
    if not isinstance(time_range, dict) or set(time_range) - set(RANGE_KEYS):
        raise TimeRangeError(f"the time range must hold only {', '.join(RANGE_KEYS)}; pick one from the menu")
    for name, value in time_range.items():
        if value is not None and (not isinstance(value, str) or len(value) > 64):
            raise TimeRangeError(f"the time range's {name} must be short text; pick one from the menu")
    return time_range
