"""The data a report reads, through the data API and storage's readers; each read returns its own query text.

A table's ``query`` is built from the text these calls return, so the report shows exactly the call that
produced it (with its arguments) followed by the Polars steps applied to the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl

from reports.model import Params
from storage import tiers
from storage.dataapi import AuditData
from storage.events import Outcome
from storage.timescale import alerts, catalog, legal_hold, queries, retention
from storage.timescale.queries import EventQuery

TS = pl.Datetime("us", "UTC")


def call(name: str, **kwargs: Any) -> str:
    """``name(k=v, ...)`` with the arguments that were passed (None left out), times in ISO 8601."""
    parts = []
    for key, value in kwargs.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        parts.append(f"{key}={value!r}")
    return f"{name}({', '.join(parts)})"


class Source:
    """One database (and its cold tier) as a report sees it."""

    def __init__(self, data: AuditData) -> None:
        self.data = data

    @property
    def pool(self):
        return self.data.pool

    def events(self, params: Params, *, start: datetime | None = None, end: datetime | None = None,
               event_type: Sequence[str] | str | None = None, outcome: str | None = None,
               columns: Sequence[str] | None = None, scoped: bool = True) -> tuple[pl.DataFrame, str]:
        """Events in [start, end) (default: the period), both tiers, narrowed to the report's scope."""
        start = start or params.start
        end = end or params.end
        scope = params.scope if scoped else None
        user = scope.value if scope and scope.kind == "user" else None
        network = scope.value if scope and scope.kind == "ip" else None
        wanted = None
        if columns is not None:
            wanted = list(dict.fromkeys([*columns, *(["source"] if scope and scope.kind == "source" else [])]))
        frame = self.data.events(start, end, user_id=user, event_type=event_type, outcome=outcome,
                                 source_ip=network, columns=wanted, max_rows=None)
        text = "aw." + call("events", start=start, end=end, user_id=user, event_type=event_type, outcome=outcome,
                            source_ip=network, columns=wanted)
        if scope and scope.kind == "source":
            frame = frame.filter(pl.col("source") == scope.value)
            text += f'.filter(pl.col("source") == {scope.value!r})'
        return frame, text

    def last_activity(self, start: datetime, end: datetime) -> tuple[pl.DataFrame, str]:
        """Each user's last event in [start, end) that is not a failure (``user_id``, ``last_activity``), both
        tiers: aggregated in PostgreSQL and in the Parquet scan, never every event over the wire."""
        query = EventQuery(start_time=start, end_time=end)
        hot = queries.last_event_per_user(self.pool, query, exclude_outcome=Outcome.FAILURE)
        parts = [hot.rename({"last_event": "last_activity"})]
        cold = self.data.cold
        if cold is not None:
            scan = tiers.cold_lazy(cold, tiers.cold_files(self.pool, query), query)
            if scan is not None:
                parts.append(scan.filter(pl.col("outcome") != "failure").group_by("user_id")
                             .agg(pl.col("timestamp").cast(TS).max().alias("last_activity")).collect())
        frame = pl.concat(parts).group_by("user_id").agg(pl.col("last_activity").max())
        text = ("storage.timescale.queries." + call("last_event_per_user", start=start, end=end)
                + ".where(outcome != 'failure').group_by('user_id').agg(max(timestamp)), hot and cold tiers")
        return frame, text

    def keys(self) -> tuple[pl.DataFrame, str]:
        rows = [{"name": k.name, "role": str(k.role), "principal": k.principal, "created_at": k.created_at,
                 "revoked_at": k.revoked_at} for k in catalog.list_keys(self.pool)]
        frame = pl.DataFrame(rows, schema={"name": pl.String, "role": pl.String, "principal": pl.String,
                                           "created_at": TS, "revoked_at": TS})
        return frame, "storage.timescale.catalog.list_keys(pool)"

    def users(self) -> tuple[pl.DataFrame, str]:
        return self.data.users(), "aw.users()"

    def alerts(self) -> tuple[pl.DataFrame, str]:
        return self.data.alerts(), "aw.alerts()"

    def alert_history(self, fingerprint: str) -> tuple[pl.DataFrame, str]:
        rows = [{"at": h.at, "from_state": h.from_state, "to_state": h.to_state, "value": h.value}
                for h in alerts.history(self.pool, fingerprint=fingerprint, limit=10_000)]
        frame = pl.DataFrame(rows, schema={"at": TS, "from_state": pl.String, "to_state": pl.String,
                                           "value": pl.Int64})
        return frame.sort("at"), "storage.timescale.alerts." + call("history", fingerprint=fingerprint)

    def anomalies(self, params: Params, *, entity_type: str | None = None,
                  entity_value: str | None = None) -> tuple[pl.DataFrame, str]:
        frame = self.data.anomalies(params.start, params.end, entity_type=entity_type, entity_value=entity_value,
                                    max_rows=None)
        return frame, "aw." + call("anomalies", start=params.start, end=params.end, entity_type=entity_type,
                                   entity_value=entity_value)

    def holds(self) -> tuple[pl.DataFrame, str]:
        rows = [{"hold_id": h.hold_id, "scope": h.scope(), "reason": h.reason, "created_by": h.created_by,
                 "created_at": h.created_at, "released_at": h.released_at, "released_by": h.released_by}
                for h in legal_hold.list_holds(self.pool, include_released=True)]
        frame = pl.DataFrame(rows, schema={"hold_id": pl.Int64, "scope": pl.String, "reason": pl.String,
                                           "created_by": pl.String, "created_at": TS, "released_at": TS,
                                           "released_by": pl.String})
        return frame, "storage.timescale.legal_hold.list_holds(pool, include_released=True)"

    def retention_policy(self) -> tuple[retention.RetentionPolicy, str]:
        value = catalog.get_setting(self.pool, retention.SETTING)
        return retention.policy_of(value), f"storage.timescale.catalog.get_setting(pool, {retention.SETTING!r})"
