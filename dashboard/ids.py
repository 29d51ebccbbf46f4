"""Every component id of the dashboard, in one place, so pages and callbacks cannot drift apart.

Static ids are strings; ids of repeated components (widgets, rows, chips) are pattern-matching
dicts built by the functions below.
"""

from __future__ import annotations

from typing import Any

# -- the shell (header, global controls, stores) -------------------------------------------------
TIME_PRESET = "aw-time-preset"
TIME_START = "aw-time-start"
TIME_END = "aw-time-end"
TIME_CUSTOM = "aw-time-custom"
TIME_RANGE = "aw-time-range"  # store: {"preset", "start", "end"}
REFRESH = "aw-refresh"
INTERVAL = "aw-interval"
TICK = "aw-tick"  # store bumped by the interval only while the tab is visible
CROSSFILTER = "aw-crossfilter"  # store: {"event_type", "outcome", "user_id", "source_ip"}
CROSSFILTER_BAR = "aw-crossfilter-bar"
CROSSFILTER_CHIPS = "aw-crossfilter-chips"
CROSSFILTER_CLEAR = "aw-crossfilter-clear"
ALERTS_VERSION = "aw-alerts-version"  # store bumped after an acknowledge / silence
ALERTS_STATUS = "aw-alerts-status"
MODAL = "aw-modal"
MODAL_BODY = "aw-modal-body"
MODAL_CLOSE = "aw-modal-close"

# -- event search -----------------------------------------------------------------------------------
SEARCH_USER = "aw-search-user"
SEARCH_TYPES = "aw-search-types"
SEARCH_OUTCOME = "aw-search-outcome"
SEARCH_IP = "aw-search-ip"
SEARCH_METADATA = "aw-search-metadata"
SEARCH_GO = "aw-search-go"
SEARCH_OLDER = "aw-search-older"
SEARCH_NEWER = "aw-search-newer"
SEARCH_PAGING = "aw-search-paging"  # store: {"cursors": [...], "page": n}
SEARCH_RESULTS = "aw-search-results"
SEARCH_STATUS = "aw-search-status"
SEARCH_DETAIL = "aw-search-detail"
SEARCH_EXPORT = "aw-search-export"
SEARCH_INITIAL = "aw-search-initial"  # store: the time range the URL asked for (start_time, end_time)

# -- entity view --------------------------------------------------------------------------------
ENTITY_KIND = "aw-entity-kind"
ENTITY_VALUE = "aw-entity-value"
ENTITY_GO = "aw-entity-go"

# -- alerts page --------------------------------------------------------------------------------
ALERT_FP = "aw-alert-fp"  # store: the fingerprint the detail shows
ALERT_DETAIL = "aw-alert-detail"
ALERT_ACK = "aw-alert-ack"
ALERT_SILENCE = "aw-alert-silence"
ALERT_SILENCE_FOR = "aw-alert-silence-for"
ALERT_RESOLVE = "aw-alert-resolve"
ALERT_REASON = "aw-alert-reason"
ALERT_FLASH = "aw-alert-flash"

# -- custom dashboards ------------------------------------------------------------------------------
DASH_LIST = "aw-dash-list"
DASH_NEW_NAME = "aw-dash-new-name"
DASH_CREATE = "aw-dash-create"
DASH_IMPORT_TEXT = "aw-dash-import-text"
DASH_IMPORT_UPLOAD = "aw-dash-import-upload"
DASH_IMPORT = "aw-dash-import"
DASH_LIST_STATUS = "aw-dash-list-status"
DASH_META = "aw-dash-meta"  # store: {"dashboard_id", "version", "editable"}
DASH_NAME = "aw-dash-name"
DASH_SHARE_ALL = "aw-dash-share-all"
DASH_SHARE_WITH = "aw-dash-share-with"
DASH_SAVE = "aw-dash-save"
DASH_EXPORT = "aw-dash-export"
DASH_DOWNLOAD = "aw-dash-download"
DASH_DELETE = "aw-dash-delete"
DASH_STATUS = "aw-dash-status"
DASH_ADD_TYPE = "aw-dash-add-type"
DASH_ADD = "aw-dash-add"
GRID = "aw-grid"
COPY_OVERVIEW = "aw-copy-overview"
NAV_REDIRECT = "aw-nav-redirect"


# -- reports page ---------------------------------------------------------------------------------
REPORT_NAME = "aw-report-name"
REPORT_ABOUT = "aw-report-about"
REPORT_FROM = "aw-report-from"
REPORT_TO = "aw-report-to"
REPORT_SCOPE_KIND = "aw-report-scope-kind"
REPORT_SCOPE_VALUE = "aw-report-scope-value"
REPORT_GENERATE = "aw-report-generate"
REPORT_STATUS = "aw-report-status"
REPORT_JOB = "aw-report-job"  # store: {"report_id", "started"} of the run being polled
REPORT_POLL = "aw-report-poll"
REPORT_HISTORY = "aw-report-history"
REPORT_HISTORY_VERSION = "aw-report-history-version"  # store bumped when a run finishes


# -- pattern-matching ids -------------------------------------------------------------------------
def widget(sub: str, aio_id: Any) -> dict[str, Any]:
    """A part of one widget instance (WidgetAIO): card, config, body, param controls, buttons."""
    return {"component": "WidgetAIO", "subcomponent": sub, "aio_id": aio_id}


def widget_param(aio_id: Any, param: Any) -> dict[str, Any]:
    return {"component": "WidgetAIO", "subcomponent": "param", "aio_id": aio_id, "param": param}


def graph(aio_id: Any) -> dict[str, Any]:
    """A chart that cross-filters: its points carry the filter in ``customdata``."""
    return {"type": "aw-graph", "aio_id": aio_id}


def anomaly_graph(aio_id: Any) -> dict[str, Any]:
    """The anomaly timeline: a click opens the anomaly's explanation."""
    return {"type": "aw-anomaly-graph", "aio_id": aio_id}


def anomaly_row(anomaly_id: Any) -> dict[str, Any]:
    return {"type": "aw-anomaly-row", "anomaly_id": anomaly_id}


def filter_link(value: Any) -> dict[str, Any]:
    """A table cell that cross-filters on the JSON filter in ``value``."""
    return {"type": "aw-xf", "f": value}


def filter_chip_remove(key: Any) -> dict[str, Any]:
    return {"type": "aw-xf-remove", "key": key}


def event_row(event_id: Any) -> dict[str, Any]:
    return {"type": "aw-event-row", "event_id": event_id}


def alert_action(action: str, fingerprint: Any) -> dict[str, Any]:
    """Acknowledge / silence buttons of the alert feed."""
    return {"type": "aw-alert", "action": action, "fp": fingerprint}


def tree(kind: Any, key: Any) -> dict[str, Any]:
    """A static subtree drawn by one component (``dashboard.tree.Tree``) whose ``click`` prop carries the
    value of what was clicked; ``kind`` says which callback reads it (``xf``, ``open``, ``alert``, ``event``)."""
    return {"type": "aw-tree", "kind": kind, "key": key}
