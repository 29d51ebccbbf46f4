"""What each detector reads before the range it scores: the reach it declares, bounded, kept between runs.

Most detectors read an hour before a scored range (sessions, rolling windows), and the jobs read
that much, or back to the model's training end, for every detector at once. Some look further:
the slow-failure horizons count a week. A detector declares it with ``context`` (a ``timedelta``)
and, when only some events matter that far back, ``context_events`` (their types); ``analyze`` and
the worker then give it the same events, so live scoring and a file give the same anomalies.

Live, rereading a week of logins every minute would cost more than the scoring. ``LookbackCache``
keeps that long part between runs, so a run reads only what is new. It is read again whole every
``refresh`` (so an erasure or a backfill behind the job shows up) and after history was scored.
Everything in it is older than the job's late allowance, which the job would not rescore anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from psycopg_pool import ConnectionPool

from analytics import events, pipeline
from analytics.detectors import Detector
from storage.timescale.self_audit import platform_actor


def reach(detector: Detector, *, bound: timedelta) -> timedelta:
    """How far before a scored range ``detector`` reads: what it declares, at most ``bound``."""
    declared = getattr(detector, "context", pipeline.CONTEXT)
    return max(pipeline.CONTEXT, min(declared, bound))


def event_types(detector: Detector) -> tuple[str, ...]:
    """The event types ``detector`` reads beyond the usual context (empty: all of them)."""
    return tuple(getattr(detector, "context_events", ()))


@dataclass(frozen=True)
class _Part:
    start: datetime
    end: datetime
    frame: pl.DataFrame
    loaded_at: datetime


def _read(pool: ConnectionPool, types: tuple[str, ...], start: datetime, end: datetime) -> pl.DataFrame:
    frame = events.read(pool, start, end, event_types=types)
    return frame.filter(~platform_actor("user_id").fill_null(False))


class LookbackCache:
    """The long lookback of the scoring job, per set of event types, kept between runs (one per worker)."""

    def __init__(self, *, refresh: timedelta = timedelta(hours=6)) -> None:
        self.refresh = refresh
        self._parts: dict[tuple[str, ...], _Part] = {}
        self.rows_read = 0  # events read from the store for lookbacks, for the log and the tests

    def clear(self) -> None:
        self._parts.clear()

    def read(self, pool: ConnectionPool, types: tuple[str, ...], start: datetime, end: datetime, *,
             now: datetime) -> pl.DataFrame:
        """The events of ``types`` (all when empty) with ``start <= timestamp < end``, from the store or kept."""
        part = self._parts.get(types)
        if start >= end:
            return pl.DataFrame(schema=events.SCHEMA)
        if part is None or now - part.loaded_at >= self.refresh or part.start > start or part.end < start:
            frame = _read(pool, types, start, end)
            self.rows_read += frame.height
            loaded_at = now
        else:
            frame = part.frame.filter((pl.col("timestamp") >= start) & (pl.col("timestamp") < min(end, part.end)))
            if end > part.end:
                new = _read(pool, types, part.end, end)
                self.rows_read += new.height
                frame = pl.concat([frame, new], how="vertical_relaxed")
            loaded_at = part.loaded_at
        self._parts[types] = _Part(start, end, frame, loaded_at)
        return frame


def frames(detectors: Mapping[str, Detector], frame: pl.DataFrame, *, pool: ConnectionPool, low: datetime,
           context_from: datetime, bound: timedelta, cache: LookbackCache, now: datetime) -> dict[str, pl.DataFrame]:
    """Each detector's events for a range scored from ``low``: ``frame`` (events from ``context_from``), and,
    for one that reaches further back, its declared events from ``low - reach`` on before it."""
    far: dict[tuple[str, ...], datetime] = {}
    for detector in detectors.values():
        start = low - reach(detector, bound=bound)
        if start < context_from:
            types = event_types(detector)
            far[types] = min(far.get(types, start), start)
    longer = {types: pl.concat([cache.read(pool, types, start, context_from, now=now),
                                frame.filter(pl.col("event_type").is_in(types)) if types else frame],
                               how="vertical_relaxed")
              for types, start in far.items()}
    return {name: longer.get(event_types(d), frame) if low - reach(d, bound=bound) < context_from else frame
            for name, d in detectors.items()}
