"""Every detector over one events frame: fit on history, detect on the rest (the CLI, eval and jobs)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import polars as pl

from analytics.detectors import EVENT_DETECTORS, Detector, empty_anomalies
from analytics.events import normalize


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
               progress: Callable[[str], None] | None = None) -> pl.DataFrame:
    """Anomalies of every detector over ``events`` (windows from ``start`` on; earlier ones are context)."""
    frame = normalize(events).collect()
    found = []
    for name, detector in detectors.items():
        found.append(detector.detect(frame, start=start, min_score=min_score))
        if progress:
            progress(name)
    out = pl.concat(found) if found else empty_anomalies()
    return out.sort("window_start", "detector", "entity_value")


def analyze(events: pl.DataFrame, *, baseline_until: datetime | None = None, min_score: float | None = None,
            progress: Callable[[str], None] | None = None) -> pl.DataFrame:
    """Offline: fit on the events before ``baseline_until`` and score from there (a file's own history).

    Without ``baseline_until``, history is every event older than the file's last day when the file
    spans more than two days; otherwise the detectors start from their population priors (an empty
    history) and score the whole file.
    """
    frame = normalize(events).collect()
    if frame.is_empty():
        return empty_anomalies()
    if baseline_until is None:
        lo, hi = frame["timestamp"].min(), frame["timestamp"].max()
        if (hi - lo).days >= 2:
            baseline_until = hi.replace(hour=0, minute=0, second=0, microsecond=0)
    history = frame.filter(pl.col("timestamp") < baseline_until) if baseline_until else frame.clear()
    detectors = fit_all(history, progress=progress)
    return detect_all(detectors, frame, start=baseline_until, min_score=min_score, progress=progress)
