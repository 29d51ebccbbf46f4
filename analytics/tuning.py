"""Fit, backtest and compare detectors on a time range, with results as tidy Polars frames.

For the notebook that tunes a detector (and any script that does the same): score every window
once with ``score_windows`` (all windows, not only the anomalous ones, so a threshold can be swept
without rescoring), then ``evaluate`` against labelled incidents for as many thresholds as you like.
``sweep`` refits a detector for each value of one parameter. Matching an anomaly to an incident is
``analytics.evaluation.match``: the entity is one of the incident's and the windows overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from psycopg_pool import ConnectionPool

from analytics import evaluation, events
from analytics.calibration import ANOMALY_SCORE
from analytics.detectors import Detector
from analytics.events import TS, normalize
from analytics.scenarios import Incident

# Windows before the scored range that detectors may read as context (first-seen checks, rolling sums).
CONTEXT = timedelta(hours=1)
SCORED_SCHEMA: dict[str, pl.DataType] = {
    "detector": pl.String(), "entity_type": pl.String(), "entity_value": pl.String(), "window_start": TS,
    "window_end": TS, "score": pl.Float64(),
}


@dataclass(frozen=True)
class Backtest:
    """What ``evaluate`` found, as tidy frames (one row per threshold and group)."""

    by_scenario: pl.DataFrame  # threshold, scenario, incidents, detected, recall
    by_detector: pl.DataFrame  # threshold, detector, anomalies, true, false, precision, false_per_day
    per_day: pl.DataFrame  # threshold, day, detector, false
    overall: pl.DataFrame  # threshold, anomalies, true, false, precision, recall, false_per_day


def incidents_frame(incidents: Iterable[Incident]) -> pl.DataFrame:
    """Labels as a frame (scenario, start, end, entities), for display next to the results."""
    rows = [{"scenario": i.scenario, "start": i.start, "end": i.end, "entities": sorted(i.entities)}
            for i in incidents]
    return pl.DataFrame(rows, schema={"scenario": pl.String, "start": TS, "end": TS,
                                      "entities": pl.List(pl.String)})


def _utc(moment: datetime | None) -> datetime | None:
    # Polars compares datetimes only within one zone name; psycopg may hand back "Etc/UTC".
    return moment.astimezone(UTC) if moment is not None else None


def score_windows(detectors: Mapping[str, Detector], events: pl.DataFrame | pl.LazyFrame, *,
                  start: datetime | None = None) -> pl.DataFrame:
    """Every (detector, entity, window) of ``events`` from ``start`` on with its calibrated score."""
    frame, start = normalize(events).collect(), _utc(start)
    parts = [detector.score_frame(frame, start=start).select([c for c in SCORED_SCHEMA if c != "detector"])
             .with_columns(detector=pl.lit(name)) for name, detector in detectors.items()]
    scored = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame(schema=SCORED_SCHEMA)
    return scored.select(SCORED_SCHEMA.keys()).cast(SCORED_SCHEMA).sort("window_start", "detector", "entity_value")


def backtest(detectors: Mapping[str, Detector], events: pl.DataFrame | pl.LazyFrame, *, train_end: datetime,
             end: datetime | None = None, context: timedelta = CONTEXT) -> pl.DataFrame:
    """Fit each detector on the events before ``train_end`` and score every window of [train_end, end)."""
    train_end, end = _utc(train_end), _utc(end)
    frame = normalize(events).collect()
    history = frame.filter(pl.col("timestamp") < train_end)
    if history.is_empty():
        raise ValueError("no events before train_end to learn from; move train_end later")
    scored = frame.filter(pl.col("timestamp") >= train_end - context)
    if end is not None:
        scored = scored.filter(pl.col("timestamp") < end)
    for detector in detectors.values():
        detector.fit(history)
    return score_windows(detectors, scored, start=train_end)


def backtest_range(pool: ConnectionPool, detectors: Mapping[str, Detector], *, train: tuple[datetime, datetime],
                   test: tuple[datetime, datetime], context: timedelta = CONTEXT) -> pl.DataFrame:
    """``backtest`` over events read from the store: fit on ``train``, score ``test`` (both [start, end))."""
    if train[1] > test[0]:
        raise ValueError("the training range must end before the test range starts (no peeking at the test)")
    history = events.read(pool, train[0], train[1])  # the scoring job's own read path
    scored = events.read(pool, max(test[0] - context, train[1]), test[1])
    frame = pl.concat([history, scored])
    return backtest(detectors, frame, train_end=test[0], end=test[1], context=context)


def label(scored: pl.DataFrame, incidents: Sequence[Incident]) -> pl.DataFrame:
    """Each scored window with the ``scenario`` it detects (null if none) and ``true``."""
    scenario = pl.DataFrame({"incident": list(range(len(incidents))), "scenario": [i.scenario for i in incidents]},
                            schema={"incident": pl.Int64, "scenario": pl.String})
    return (evaluation.match(scored, list(incidents)).join(scenario, on="incident", how="left")
            .with_columns(true=pl.col("incident").is_not_null()))


def _days(scored: pl.DataFrame, days: float | None) -> float:
    if days is not None:
        return days
    if scored.is_empty():
        return 1.0
    span = scored["window_end"].max() - scored["window_start"].min()
    return max(span / timedelta(days=1), 1 / 24)


def evaluate(scored: pl.DataFrame, incidents: Sequence[Incident], *,
             thresholds: Iterable[float] = (ANOMALY_SCORE,), days: float | None = None) -> Backtest:
    """Recall per scenario, precision and false anomalies per day per detector, for each threshold."""
    days = _days(scored, days)
    matched = label(scored, incidents).with_columns(day=pl.col("window_start").dt.truncate("1d"))
    names = pl.DataFrame({"incident": list(range(len(incidents))),
                          "scenario": [i.scenario for i in incidents]}, schema={"incident": pl.Int64,
                                                                                 "scenario": pl.String})
    totals = names.group_by("scenario").agg(incidents=pl.len())
    by_scenario, by_detector, per_day, overall = [], [], [], []
    for cut in sorted(set(thresholds)):
        kept = matched.filter(pl.col("score") >= cut)
        found = (kept.filter(pl.col("true")).select("incident").unique().join(names, on="incident")
                 .group_by("scenario").agg(detected=pl.len()))
        by_scenario.append(totals.join(found, on="scenario", how="left")
                           .with_columns(pl.col("detected").fill_null(0), threshold=pl.lit(cut)))
        by_detector.append(kept.group_by("detector").agg(anomalies=pl.len(), true=pl.col("true").sum())
                           .with_columns(threshold=pl.lit(cut)))
        per_day.append(kept.filter(~pl.col("true")).group_by("day", "detector").agg(false=pl.len())
                       .with_columns(threshold=pl.lit(cut)))
        detected = kept.filter(pl.col("true"))["incident"].n_unique()
        overall.append(pl.DataFrame({"threshold": [cut], "anomalies": [kept.height],
                                     "true": [int(kept["true"].sum())], "detected": [detected],
                                     "incidents": [len(incidents)]}))
    count = pl.UInt32
    scen = (pl.concat(by_scenario) if by_scenario else pl.DataFrame(
        schema={"scenario": pl.String, "incidents": count, "detected": count, "threshold": pl.Float64}))
    scen = scen.with_columns(recall=pl.col("detected") / pl.col("incidents"))
    det = pl.concat(by_detector) if by_detector else pl.DataFrame(
        schema={"detector": pl.String, "anomalies": count, "true": count, "threshold": pl.Float64})
    det = det.with_columns(false=pl.col("anomalies") - pl.col("true")).with_columns(
        precision=pl.col("true") / pl.col("anomalies"), false_per_day=pl.col("false") / days)
    day = pl.concat(per_day) if per_day else pl.DataFrame(
        schema={"day": TS, "detector": pl.String, "false": count, "threshold": pl.Float64})
    total = pl.concat(overall).with_columns(false=pl.col("anomalies") - pl.col("true")).with_columns(
        precision=pl.when(pl.col("anomalies") > 0).then(pl.col("true") / pl.col("anomalies")),
        recall=pl.when(pl.col("incidents") > 0).then(pl.col("detected") / pl.col("incidents")),
        false_per_day=pl.col("false") / days)
    return Backtest(
        by_scenario=scen.select("threshold", "scenario", "incidents", "detected", "recall")
        .sort("threshold", "scenario"),
        by_detector=det.select("threshold", "detector", "anomalies", "true", "false", "precision", "false_per_day")
        .sort("threshold", "detector"),
        per_day=day.select("threshold", "day", "detector", "false").sort("threshold", "day", "detector"),
        overall=total.select("threshold", "anomalies", "true", "false", "detected", "incidents", "precision",
                             "recall", "false_per_day").sort("threshold"),
    )


def sweep(make: Callable[..., Detector], param: str, values: Iterable[Any], events: pl.DataFrame | pl.LazyFrame,
          incidents: Sequence[Incident], *, train_end: datetime, end: datetime | None = None,
          thresholds: Iterable[float] = (ANOMALY_SCORE,), name: str | None = None) -> Backtest:
    """Refit ``make(**{param: value})`` for each value and evaluate; every frame gains ``param`` and ``value``."""
    frame, train_end, end = normalize(events).collect(), _utc(train_end), _utc(end)
    cuts = list(thresholds)
    results = []
    for value in values:
        detector = make(**{param: value})
        scored = backtest({name or detector.name: detector}, frame, train_end=train_end, end=end)
        days = ((end or frame["timestamp"].max()) - train_end) / timedelta(days=1)
        results.append((value, evaluate(scored, incidents, thresholds=cuts, days=max(days, 1 / 24))))

    def stack(field: str) -> pl.DataFrame:
        return pl.concat([getattr(r, field).with_columns(param=pl.lit(param), value=pl.lit(repr(v)))
                          for v, r in results])

    return Backtest(*(stack(f) for f in ("by_scenario", "by_detector", "per_day", "overall")))


def chosen_settings(detector: Detector, threshold: float) -> dict[str, Any]:
    """What to keep of a tuned detector: its name, its parameters and the score threshold."""
    params = {k: v for k, v in detector.get_params().items() if k != "peer_groups"}
    return {"detector": detector.name, "params": {k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in params.items()},
            "threshold": threshold}
