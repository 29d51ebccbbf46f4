"""Every detector over one events frame: fit on history, detect on the rest (the CLI, eval and jobs).

``analyze`` is prequential by default: after a warm-up, every window is scored by models fitted
only on what came before it, refitted on a cadence like the worker's, so a file gives the anomalies
the worker would have raised live. ``merge_incidents`` turns the windows of one story (the same
detector and entity, overlapping or close in time) into one incident with a first-seen and a
last-seen time and its peak score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from analytics import calibration
from analytics.detectors import ANOMALY_SCHEMA, EVENT_DETECTORS, Detector, empty_anomalies
from analytics.events import TS, normalize

WARMUP = timedelta(days=3)  # history a file must hold before its windows are scored
REFIT_EVERY = timedelta(hours=6)  # the worker's default refit cadence (`analytics_refit_seconds`)
HISTORY = timedelta(days=14)  # what each refit learns from (`analytics_history_days`)
MAX_REFITS = 12  # a long file is refitted at most this often (each refit costs seconds), never more often than REFIT_EVERY
CONTEXT = timedelta(hours=1)  # events before a scored range that detectors read (sessions, rolling windows)
MERGE_GAP = timedelta(hours=2)  # windows of one detector and entity closer than this are one incident
# The worker rescores every window for an hour after it (its late allowance), so a window's score reads what
# came in that hour (a success that resolves the failures before it); a step of a file is scored likewise.
LOOKAHEAD = timedelta(hours=1)

# ``first_window_end``: when the incident could first have been reported (its first window closed), the
# moment detection delay is measured to; ``last_seen`` moves on as the incident grows.
INCIDENT_SCHEMA: dict[str, pl.DataType] = {**ANOMALY_SCHEMA, "first_seen": TS, "last_seen": TS,
                                           "first_window_end": TS, "peak_score": pl.Float64, "windows": pl.Int64}


def build(names: Iterable[str] | None = None, *, peer_groups: Mapping[str, str] | None = None) -> dict[str, Detector]:
    """Unfitted detectors by name (all of them by default)."""
    chosen = list(names) if names else list(EVENT_DETECTORS)
    unknown = sorted(set(chosen) - set(EVENT_DETECTORS))
    if unknown:
        raise ValueError(f"unknown detector(s) {', '.join(unknown)}; choose from {', '.join(EVENT_DETECTORS)}")
    detectors = {}
    for name in chosen:
        cls = EVENT_DETECTORS[name]
        detectors[name] = cls(peer_groups=peer_groups) if name == "export_volume" else cls()
    return detectors


def fit_all(history: pl.DataFrame | pl.LazyFrame, detectors: dict[str, Detector] | None = None, *,
            progress: Callable[[str], None] | None = None) -> dict[str, Detector]:
    """Fit each detector on the same history frame."""
    detectors = detectors or build()
    frame = normalize(history).collect()
    for name, detector in detectors.items():
        detector.fit(frame)
        if progress:
            progress(name)
    return detectors


def detect_all(detectors: Mapping[str, Detector], events: pl.DataFrame | pl.LazyFrame, *,
               start: datetime | None = None, min_score: float | None = None,
               progress: Callable[[str], None] | None = None, merge: bool = False) -> pl.DataFrame:
    """Anomalies of every detector over ``events`` (windows from ``start`` on; earlier ones are context).

    With ``merge`` the windows of one story are one incident (``merge_incidents``); ``analyze`` merges.
    """
    frame = normalize(events).collect()
    found = []
    for name, detector in detectors.items():
        found.append(detector.detect(frame, start=start, min_score=min_score))
        if progress:
            progress(name)
    out = pl.concat(found) if found else empty_anomalies()
    out = out.sort("window_start", "detector", "entity_value")
    return merge_incidents(out) if merge else out


def merge_incidents(anomalies: pl.DataFrame, *, gap: timedelta = MERGE_GAP) -> pl.DataFrame:
    """One row per incident: windows of the same detector and entity that overlap or lie within ``gap``.

    ``window_start``/``first_seen`` is the incident's first window, ``window_end``/``last_seen`` the end of
    its last one, ``score``/``peak_score`` its highest, and the severity, explanation and sample events
    are the peak window's. The columns of ``ANOMALY_SCHEMA`` stay, so the rows are stored as they are;
    ``window_start`` does not move as an incident grows, so a rerun rewrites the same stored row.
    """
    if anomalies.is_empty():
        return pl.DataFrame(schema=INCIDENT_SCHEMA)
    keys = ["detector", "entity_type", "entity_value"]
    ordered = anomalies.sort(*keys, "window_start")
    reach = pl.col("window_end").cum_max().shift(1).over(keys)
    ordered = ordered.with_columns(
        (reach.is_null() | (pl.col("window_start") > reach + gap)).cum_sum().over(keys).alias("_incident"))
    peak = pl.col("score").arg_max()
    merged = ordered.group_by(*keys, "_incident").agg(
        pl.col("window_start").min(), pl.col("window_end").max(), pl.col("score").max(),
        # The earliest close, not the first start's: a 1 h window from 10:00 holds the 10:17 minute that closed
        # first (taking the first-starting window's end overstated delays by up to an hour).
        pl.col("window_end").min().alias("first_window_end"),
        pl.col("detector_version").get(peak), pl.col("explanation").get(peak),
        pl.col("sample_event_ids").get(peak), pl.len().cast(pl.Int64).alias("windows"))
    merged = merged.with_columns(
        pl.col("score").map_elements(calibration.severity, return_dtype=pl.String).alias("severity"),
        pl.col("window_start").alias("first_seen"), pl.col("window_end").alias("last_seen"),
        pl.col("score").alias("peak_score"))
    return merged.select(INCIDENT_SCHEMA.keys()).cast(INCIDENT_SCHEMA).sort("window_start", "detector",
                                                                            "entity_value")


@dataclass(frozen=True)
class Plan:
    """How a file is scored: from when, with models refitted how often (for the summary a user reads)."""

    first_event: datetime
    last_event: datetime
    scored_from: datetime
    refit_every: timedelta | None  # None: one fit (on ``--baseline-until`` history, or priors)
    steps: tuple[datetime, ...]  # the start of each scored range; each range's models know only what came before

    def describe(self) -> str:
        if self.scored_from <= self.first_event:
            return ("the file is shorter than the warm-up: every window scored from population priors "
                    "(no history of its own)")
        warm = self.scored_from - self.first_event
        cadence = (f"refitted every {_span(self.refit_every)} ({len(self.steps)} fits)" if self.refit_every
                   else "fitted once")
        return (f"warm-up {_span(warm)} ({self.first_event:%Y-%m-%d %H:%M} → {self.scored_from:%Y-%m-%d %H:%M} UTC, "
                f"learned from, not scored); scored from there to {self.last_event:%Y-%m-%d %H:%M} UTC with models "
                f"fitted only on earlier events, {cadence}")


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 24 else f"{hours:.0f} h"


def plan(frame: pl.DataFrame, *, baseline_until: datetime | None = None, warmup: timedelta = WARMUP,
         refit_every: timedelta | None = None) -> Plan:
    """The scoring plan of an events frame (see ``analyze``)."""
    lo, hi = frame["timestamp"].min(), frame["timestamp"].max()
    if baseline_until is not None:
        start = baseline_until.astimezone(UTC)
        return Plan(lo, hi, start, None, (start,))
    start = _floor(lo + warmup, timedelta(hours=1))
    if start >= hi:
        return Plan(lo, hi, lo, None, (lo,))
    every = refit_every or max(REFIT_EVERY, _ceil((hi - start) / MAX_REFITS, timedelta(hours=1)))
    steps, at = [], start
    while at <= hi:
        steps.append(at)
        at += every
    return Plan(lo, hi, start, every, tuple(steps))


def analyze(events: pl.DataFrame, *, baseline_until: datetime | None = None, warmup: timedelta = WARMUP,
            refit_every: timedelta | None = None, history: timedelta = HISTORY, min_score: float | None = None,
            peer_groups: Mapping[str, str] | None = None, progress: Callable[[str], None] | None = None
            ) -> pl.DataFrame:
    """Offline, prequential: every window after the ``warmup`` scored by models fitted only on earlier events.

    Models are refitted every ``refit_every`` (default: the worker's 6 h, coarser for long files so
    that at most ``MAX_REFITS`` fits run) on the ``history`` before each step. With ``baseline_until``
    the models are fitted once on the events before it and score the rest. A file shorter than the
    warm-up is scored whole from the detectors' population priors. Returns merged incidents.
    """
    frame = normalize(events).collect().sort("timestamp")
    if frame.is_empty():
        return merge_incidents(empty_anomalies())
    how = plan(frame, baseline_until=baseline_until, warmup=warmup, refit_every=refit_every)
    found = []
    for i, step in enumerate(how.steps):
        end = how.steps[i + 1] if i + 1 < len(how.steps) else None
        past = frame.filter(pl.col("timestamp") < step)
        if how.refit_every is not None:
            past = past.filter(pl.col("timestamp") >= step - history)
        label = f"step {i + 1}/{len(how.steps)}"
        detectors = fit_all(past, build(peer_groups=peer_groups),
                            progress=(lambda name, label=label: progress(f"{label}: fitted {name}")) if progress
                            else None)
        # Each detector reads the context it needs before the range (a week for the slow-failure horizons).
        by_reach: dict[timedelta, dict[str, Detector]] = {}
        for name, detector in detectors.items():
            by_reach.setdefault(max(CONTEXT, getattr(detector, "context", CONTEXT)), {})[name] = detector
        for reach, group in by_reach.items():
            scored = frame.filter(pl.col("timestamp") >= step - reach)
            if end is not None:  # what the hour after the step holds, for its windows only (the next step's own)
                scored = scored.filter(pl.col("timestamp") < end + LOOKAHEAD)
            got = detect_all(group, scored, start=step if step > how.first_event else None, min_score=min_score,
                             progress=(lambda name, label=label: progress(f"{label}: scored {name}"))
                             if progress else None)
            found.append(got if end is None else until(got, group, end))
    return merge_incidents(pl.concat(found))


def until(found: pl.DataFrame, detectors: Mapping[str, Detector], end: datetime) -> pl.DataFrame:
    """The anomalies of windows that belong to a step ending at ``end`` (scored with events after it): those
    starting before it, or for detectors scored by when windows close, those closing by it."""
    closing = [d.name for d in detectors.values() if d.scores_windows_closing_in_range]
    at = end.astimezone(UTC)
    return found.filter(pl.when(pl.col("detector").is_in(closing)).then(pl.col("window_end") <= at)
                        .otherwise(pl.col("window_start") < at))


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


def _ceil(delta: timedelta, step: timedelta) -> timedelta:
    return -((-delta) // step) * step
