"""Windows into incidents: the pure rule ``anomalies.upsert`` applies before it writes.

A detector reports one row per anomalous window; an analyst (and on-call) wants one incident per
burst of them. Windows of one detector and entity that overlap or lie within ``gap`` of each
other, together with the stored incidents they touch, become one incident: its span runs from
the first window's start to the last window's end, its score, severity, explanation, version and
first sample events are those of its peak window, and ``window_starts`` remembers every window
merged in, so merging the same windows again gives the same incident (a rerun changes nothing).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

MAX_SAMPLES = 50  # sample event ids an incident keeps: its peak's first, then the others in time order


@dataclass(frozen=True)
class Window:
    """One anomalous window as a detector reported it."""

    detector_version: str
    start: datetime
    end: datetime
    score: float
    severity: str
    explanation: dict[str, Any]
    sample_event_ids: tuple[str, ...]


@dataclass(frozen=True)
class Incident:
    """One stored (or to-be-stored) incident of a detector and entity."""

    anomaly_id: uuid.UUID | None  # None: not stored yet
    detector_version: str
    start: datetime
    end: datetime
    score: float
    severity: str
    explanation: dict[str, Any]
    sample_event_ids: tuple[str, ...]
    peak_at: datetime
    window_starts: tuple[datetime, ...]
    detected_at: datetime | None = None

    @classmethod
    def of(cls, window: Window) -> Incident:
        return cls(None, window.detector_version, window.start, window.end, window.score, window.severity,
                   window.explanation, window.sample_event_ids, window.start, (window.start,))


@dataclass
class Plan:
    """What to write for one detector and entity: rows to insert, to rewrite in place, to delete."""

    insert: list[Incident] = field(default_factory=list)
    update: list[Incident] = field(default_factory=list)  # same anomaly_id and window_start as stored
    delete: list[Incident] = field(default_factory=list)  # stored rows merged into another (or moved)


def _dedupe(ids: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))[:MAX_SAMPLES]


def _level(score: float) -> float:
    """A score as compared for the peak: to 9 decimals, so a rerun whose sums ran in another order (a last-digit
    difference) is a tie, which the stored peak wins, and not a higher score that rewrites it."""
    return round(score, 9)


def _combine(stored: list[Incident], windows: list[Window]) -> Incident:
    """One incident from stored incidents (earliest first) and new windows: the earliest's id, the peak's details."""
    base = stored[0] if stored else None
    candidates = [(_level(s.score), 0, s.peak_at, s) for s in stored]
    candidates += [(_level(w.score), 1, w.start, w) for w in windows]
    # The highest score wins; on a tie what is stored stays (a rerun rewrites nothing), then the earlier window.
    _, _, peak_at, peak = min(candidates, key=lambda c: (-c[0], c[1], c[2]))
    samples = list(peak.sample_event_ids)
    for s in stored:
        samples += s.sample_event_ids
    for w in sorted(windows, key=lambda w: w.start):
        samples += w.sample_event_ids
    starts = sorted({*(t for s in stored for t in s.window_starts), *(w.start for w in windows)})
    return Incident(
        anomaly_id=base.anomaly_id if base else None, detector_version=peak.detector_version,
        start=min([*(s.start for s in stored), *(w.start for w in windows)]),
        end=max([*(s.end for s in stored), *(w.end for w in windows)]),
        score=peak.score, severity=peak.severity, explanation=peak.explanation, sample_event_ids=_dedupe(samples),
        peak_at=peak_at, window_starts=tuple(starts), detected_at=base.detected_at if base else None)


def merge(stored: list[Incident], windows: list[Window], *, gap: timedelta) -> Plan:
    """The writes that fold ``windows`` into the ``stored`` incidents of one detector and entity.

    ``stored`` must hold every stored incident within ``gap`` of a window (the caller reads them).
    """
    items: list[tuple[datetime, datetime, Incident | Window]] = [(s.start, s.end, s) for s in stored]
    items += [(w.start, w.end, w) for w in windows]
    items.sort(key=lambda i: (i[0], i[1], isinstance(i[2], Window)))
    clusters: list[list[Incident | Window]] = []
    reach: datetime | None = None
    for start, end, item in items:
        if reach is None or start > reach + gap:
            clusters.append([])
            reach = end
        clusters[-1].append(item)
        reach = max(reach, end)
    plan = Plan()
    for cluster in clusters:
        olds = sorted((i for i in cluster if isinstance(i, Incident)), key=lambda s: s.start)
        news = [i for i in cluster if isinstance(i, Window)]
        if not news:
            continue
        merged = _combine(olds, news)
        if not olds:
            plan.insert.append(merged)
            continue
        base = olds[0]
        plan.delete += olds[1:]
        if merged == base:
            continue
        if merged.start != base.start:  # the incident now starts earlier: its key (and hypertable chunk) moves
            plan.delete.append(base)
            plan.insert.append(merged)
        else:
            plan.update.append(merged)
    return plan


def touched(plan: Plan) -> int:
    """How many stored incidents the plan changes (grown, moved or merged away)."""
    moved = {i.anomaly_id for i in plan.insert if i.anomaly_id is not None}
    return len(plan.update) + len(moved) + len([d for d in plan.delete if d.anomaly_id not in moved])

