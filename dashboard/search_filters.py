"""Event-search filters as the query API takes them, parsed once for the search page and the export."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dashboard.errors import DashboardError
from storage.events import Outcome
from storage.timescale.queries import EventQuery

EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
MAX_PAGE = 50


def _time(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DashboardError(f"{name} {value!r} is not a date and time like 2024-05-01T09:30") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse(values: Mapping[str, Any], *, start: datetime | None, end: datetime | None,
          limit: int = MAX_PAGE) -> EventQuery:
    """An EventQuery from form or URL values; ``start``/``end`` (the global range) apply unless given."""
    if values.get("start_time"):
        start = _time(str(values["start_time"]), "From")
    if values.get("end_time"):
        end = _time(str(values["end_time"]), "To")
    if start and end and start >= end:
        raise DashboardError("From must be before To")
    types = values.get("event_type") or []
    types = [types] if isinstance(types, str) else list(types)
    for value in types:
        if not EVENT_TYPE.fullmatch(value):
            raise DashboardError(f"{value!r} is not an event type name")
    outcome = values.get("outcome") or None
    if outcome is not None and outcome not in {o.value for o in Outcome}:
        raise DashboardError("outcome must be success, failure or unknown")
    source_ip = (values.get("source_ip") or "").strip() or None
    if source_ip is not None:
        try:
            source_ip = str(ipaddress.ip_network(source_ip, strict=False))
        except ValueError:
            raise DashboardError(f"{source_ip!r} is not an IP address or a CIDR block such as 10.0.0.0/8") from None
    metadata = (values.get("metadata") or "").strip() or None
    metadata_filter = None
    if metadata is not None:
        try:
            metadata_filter = json.loads(metadata)
        except ValueError:
            raise DashboardError('metadata must be a JSON object, e.g. {"dataset": "hr"}') from None
        if not isinstance(metadata_filter, dict):
            raise DashboardError('metadata must be a JSON object, e.g. {"dataset": "hr"}')
        if len(metadata) > 4096:
            raise DashboardError("the metadata filter is over 4 KB; narrow it")
    user_id = (values.get("user_id") or "").strip() or None
    if user_id is not None and len(user_id) > 256:
        raise DashboardError("user is longer than 256 characters")
    return EventQuery(start_time=start, end_time=end, user_id=user_id, event_types=tuple(types),
                      outcome=Outcome(outcome) if outcome else None, source_ip=source_ip,
                      metadata=metadata_filter, limit=limit)


def as_params(query: EventQuery) -> dict[str, Any]:
    """The query's filters as URL parameters (export links, audit records): metadata as JSON text."""
    params = query.filters()
    if "metadata" in params:
        params["metadata"] = json.dumps(params["metadata"])
    return params
