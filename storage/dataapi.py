"""The Python data API: audit data as Polars frames, for notebooks and scripts.

    >>> from storage.dataapi import connect
    >>> with connect("postgresql://localhost:54329/auditwatch") as aw:
    ...     logins = aw.events("2024-05-01T00:00Z", "2024-05-02T00:00Z", event_type="user_login",
    ...                        outcome="failure")
    ...     hourly = aw.rollup("2024-05-01T00:00Z", "2024-05-02T00:00Z", interval="1h",
    ...                        group_by=("event_type", "outcome"))

The filters are the query API's (``GET /api/v1/logs``), with the same meaning; the frames
come over COPY (see ``storage.timescale.queries.events_frame``). Given the archive root (``archive=``), events
come from both tiers: hot rows from TimescaleDB, archived days from their Parquet files (see
``storage.tiers``), each marked in a ``tier`` column. The connection is read-only unless
``read_only=False``: every transaction starts with ``default_transaction_read_only``, so a
notebook cannot change the audit trail by accident.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl
from psycopg_pool import ConnectionPool

from storage import tiers
from storage.cold.store import ColdStore
from storage.errors import InvalidFilter, TooManyRows
from storage.events import Outcome
from storage.timescale import alerts, anomalies, catalog, db, queries, rollups
from storage.timescale.anomalies import AnomalyQuery
from storage.timescale.queries import EventQuery, TimeRange
from storage.timescale.rollups import SeriesQuery

DEFAULT_MAX_ROWS = 5_000_000  # the export API's ceiling: a frame that size is ~2 GB of memory

Moment = datetime | str


def connect(url: str, *, archive: str | Path | None = None, read_only: bool = True,
            pool_size: int = 4, archive_options: Mapping[str, str] | None = None) -> AuditData:
    """Open the data API on a database URL, and the cold tier's archive root if given.

    In the notebooks: ``AUDITWATCH_DATABASE_URL`` (or the embedded database) and
    ``auditwatch.services.archive_root(settings)``.
    """
    cold = ColdStore(archive, options=archive_options) if archive else None
    return AuditData(db.open_pool(url, min_size=1, max_size=pool_size, name="dataapi", read_only=read_only),
                     read_only=read_only, cold=cold)


def _moment(value: Moment | None, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFilter(f"`{name}` must be an ISO 8601 time such as 2024-05-01T12:00:00Z, "
                                f"not {value!r}") from None
    if not isinstance(value, datetime):
        raise InvalidFilter(f"`{name}` must be a datetime or an ISO 8601 string")
    if value.tzinfo is None:
        raise InvalidFilter(f"`{name}` has no time zone; give one (e.g. datetime(..., tzinfo=UTC) or a "
                            "trailing Z) so the range means the same on every machine")
    return value


def _range(start: Moment | None, end: Moment | None) -> tuple[datetime | None, datetime | None]:
    low, high = _moment(start, "start"), _moment(end, "end")
    if low is not None and high is not None and low >= high:
        raise InvalidFilter("`start` must be before `end`")
    return low, high


def _types(event_type: str | Sequence[str] | None) -> tuple[str, ...]:
    if event_type is None:
        return ()
    return (event_type,) if isinstance(event_type, str) else tuple(event_type)


def _outcome(outcome: str | None) -> Outcome | None:
    if outcome is None:
        return None
    try:
        return Outcome(outcome)
    except ValueError:
        raise InvalidFilter("`outcome` must be success, failure or unknown") from None


def _network(source_ip: str | None) -> str | None:
    if source_ip is None:
        return None
    try:
        return str(ipaddress.ip_network(source_ip, strict=False))
    except ValueError:
        raise InvalidFilter("`source_ip` must be an IP address or a CIDR block such as 10.0.0.0/8") from None


class AuditData:
    """Frames over one database: ``events``, ``rollup``, ``anomalies``, ``alerts``, ``users``, ``time_range``."""

    def __init__(self, pool: ConnectionPool, *, read_only: bool = True, cold: ColdStore | None = None) -> None:
        self.pool = pool
        self.read_only = read_only
        self.cold = cold

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> AuditData:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def time_range(self) -> TimeRange:
        """The first and last event time and the event count, to aim a notebook at the data."""
        return queries.time_range(self.pool)

    def events(self, start: Moment | None = None, end: Moment | None = None, *, user_id: str | None = None,
               event_type: str | Sequence[str] | None = None, outcome: str | None = None,
               source_ip: str | None = None, metadata: dict[str, Any] | None = None,
               columns: Sequence[str] | None = None, max_rows: int | None = DEFAULT_MAX_ROWS,
               lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
        """Events in [start, end), oldest first, with the query API's filters, and their ``tier``.

        ``source_ip`` is an address or a CIDR block; ``metadata`` matches by JSON containment
        (``{"dataset": "crm"}``); ``columns`` picks a subset of ``storage.events.COLUMNS``.
        More than ``max_rows`` matches raise ``TooManyRows`` rather than fill the memory.
        With ``lazy=True`` the archived part stays a lazy Parquet scan (not counted against
        ``max_rows``), so a filter or an aggregation on it reads only what it needs.
        """
        low, high = _range(start, end)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidFilter('`metadata` must be a dict, e.g. {"dataset": "crm"}')
        query = EventQuery(start_time=low, end_time=high, user_id=user_id, event_types=_types(event_type),
                           outcome=_outcome(outcome), source_ip=_network(source_ip), metadata=metadata)
        schema = queries.event_schema(columns)
        hot = queries.events_frame(self.pool, query, columns=list(schema), max_rows=max_rows).with_columns(
            tier=pl.lit(tiers.HOT))
        cold = self._archived(query, schema)
        if cold is None:
            return hot.lazy() if lazy else hot
        order = [c for c in ("timestamp", "event_id") if c in schema]
        if lazy:
            combined = pl.concat([cold, hot.lazy()])
            return combined.sort(order) if order else combined
        if max_rows is not None:
            cold = cold.head(max_rows + 1 - hot.height)
        combined = pl.concat([cold.collect(), hot])
        if max_rows is not None and combined.height > max_rows:
            raise TooManyRows(f"more than {max_rows:,} events match across the hot and cold tiers; narrow the "
                              "time range or the filters, or pass a larger max_rows (None for no limit)")
        return combined.sort(order) if order else combined

    def _archived(self, query: EventQuery, schema: dict[str, pl.DataType]) -> pl.LazyFrame | None:
        """The archived rows matching ``query`` as a lazy scan in the hot frame's columns, or None."""
        if self.cold is None:
            return None
        scan = tiers.cold_lazy(self.cold, tiers.cold_files(self.pool, query), query)
        if scan is None:
            return None
        return scan.select([pl.col(c).cast(t) for c, t in schema.items()]).with_columns(tier=pl.lit(tiers.COLD))

    def rollup(self, start: Moment, end: Moment, *, interval: str = "1h",
               group_by: Sequence[str] = ("event_type",), event_type: str | Sequence[str] | None = None,
               outcome: str | None = None, user_id: str | None = None,
               source_ip: str | None = None) -> pl.DataFrame:
        """Event counts per ``interval`` ('1m' or '1h') bucket and ``group_by`` columns, from the rollups.

        The columns are ``bucket``, the ``group_by`` columns and ``events``; it is current to
        the last event (the raw tail past the rollup's watermark is counted too).
        """
        low, high = _range(start, end)
        if low is None or high is None:
            raise InvalidFilter("`rollup` needs both `start` and `end`")
        try:
            return rollups.series(self.pool, SeriesQuery(
                start=low, end=high, interval=interval, group_by=tuple(group_by), event_types=_types(event_type),
                outcome=str(_outcome(outcome)) if outcome else None, user_id=user_id,
                source_ip=_network(source_ip)))
        except ValueError as exc:
            raise InvalidFilter(str(exc)) from None

    def anomalies(self, start: Moment | None = None, end: Moment | None = None, *,
                  detector: str | Sequence[str] | None = None, entity_type: str | None = None,
                  entity_value: str | None = None, min_score: float | None = None,
                  min_severity: str | None = None, max_rows: int | None = DEFAULT_MAX_ROWS) -> pl.DataFrame:
        """Anomalies whose window overlaps [start, end), as the scoring jobs stored them.

        ``explanation`` is JSON text (``pl.col("explanation").str.json_path_match("$.summary")``).
        """
        low, high = _range(start, end)
        if min_severity is not None and min_severity not in anomalies.SEVERITIES:
            raise InvalidFilter(f"`min_severity` must be one of {', '.join(anomalies.SEVERITIES)}")
        if min_score is not None and not 0 <= min_score <= 1:
            raise InvalidFilter("`min_score` is a calibrated score between 0 and 1")
        return anomalies.anomalies_frame(self.pool, AnomalyQuery(
            start=low, end=high, detectors=_types(detector), entity_type=entity_type, entity_value=entity_value,
            min_score=min_score, severities=anomalies.at_or_above(min_severity) if min_severity else (),
            order="oldest"), max_rows=max_rows)

    def alerts(self, *, state: str | Sequence[str] | None = None, since: Moment | None = None,
               rule_id: str | Sequence[str] | None = None) -> pl.DataFrame:
        """Alerts as the alerting jobs keep them (one row per rule and group), newest change first.

        ``group_values`` (JSON text) names the entity of an anomaly rule's alert:
        ``pl.col("group_values").str.json_path_match("$.entity_value")``. Silences and
        acknowledgements are the alerting package's (``auditwatch alerts list``).
        """
        states = _types(state)
        unknown = set(states) - set(alerts.ALERT_STATES)
        if unknown:
            raise InvalidFilter(f"`state` must be among {', '.join(alerts.ALERT_STATES)}, not {sorted(unknown)}")
        return alerts.alerts_frame(self.pool, states=states, since=_moment(since, "since"), rule_ids=_types(rule_id))

    def users(self) -> pl.DataFrame:
        """The user directory (department, kind), to join onto events by ``user_id``."""
        return catalog.users_frame(self.pool)
