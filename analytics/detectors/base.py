"""What every detector shares: the estimator contract, calibrated scores and anomaly rows.

A detector is a scikit-learn estimator over *events frames* (``analytics.events``):
``fit(X)`` learns the normal behaviour from history and returns ``self``; ``score_frame(X)``
returns one row per (entity, window) with a calibrated ``score``; ``score_samples``,
``decision_function`` and ``predict`` are views of that frame; ``detect(X)`` keeps the anomalous
rows and explains them. Scores follow ``analytics.calibration``: higher means rarer, the same
score means the same rarity whichever detector produced it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
import orjson
import polars as pl
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from analytics import calibration
from analytics.events import TS, normalize

ANOMALY_SCHEMA: dict[str, pl.DataType] = {
    "detector": pl.String,
    "detector_version": pl.String,
    "entity_type": pl.String,
    "entity_value": pl.String,
    "window_start": TS,
    "window_end": TS,
    "score": pl.Float64,
    "severity": pl.String,
    "explanation": pl.String,  # JSON: summary, observed, expected, features, peers
    "sample_event_ids": pl.List(pl.String),
}
SCORE_COLUMNS = ("entity_type", "entity_value", "window_start", "window_end", "score", "p_value",
                 "sample_event_ids")


def empty_anomalies() -> pl.DataFrame:
    return pl.DataFrame(schema=ANOMALY_SCHEMA)


class Detector(BaseEstimator):
    """Base class; subclasses implement ``_fit(events)``, ``_score(events)`` and ``_explain(row)``."""

    name: ClassVar[str] = "detector"
    version: ClassVar[str] = "1"
    threshold: float = calibration.ANOMALY_SCORE
    # With ``start``, windows starting from it are scored; a detector with windows longer than the context
    # every detector reads (an hour) scores those *closing* after it instead, with its own longer ``context``.
    scores_windows_closing_in_range: ClassVar[bool] = False
    # Scored at the live edge (``now``), a detector that reads it holds what may still resolve itself (a retry
    # loop whose fix is minutes away): a stored incident's peak never lowers, so it must not page before then.
    reads_now: ClassVar[bool] = False

    # -- the estimator contract ------------------------------------------------------------------

    def fit(self, X: pl.DataFrame | pl.LazyFrame, y: Any = None) -> Detector:
        """Learn normal behaviour from history ``X`` (an events frame); returns ``self``."""
        events = normalize(X).collect()
        self._fit(events)
        span = events.select(pl.col("timestamp").min().alias("lo"), pl.col("timestamp").max().alias("hi")).row(0)
        self.trained_from_, self.trained_to_ = span
        self.n_events_ = events.height
        digest = hashlib.sha256(orjson.dumps([self.name, self.version, repr(sorted(self.get_params().items())),
                                              str(span[0]), str(span[1]), events.height])).hexdigest()[:10]
        self.version_ = f"{self.name}-v{self.version}-{digest}"
        return self

    def score_frame(self, X: pl.DataFrame | pl.LazyFrame, *, start: datetime | None = None,
                    now: datetime | None = None) -> pl.DataFrame:
        """One row per (entity, window) of ``X`` with a calibrated ``score``; windows before ``start`` are context.
        ``now``: ``X`` ends at the live edge (the worker), not where a closed history ends (a file)."""
        check_is_fitted(self, "version_")
        scored = self._score(normalize(X), now=now) if self.reads_now else self._score(normalize(X))
        if start is not None:
            at = start.astimezone(UTC)
            scored = scored.filter(pl.col("window_end") > at if self.scores_windows_closing_in_range
                                   else pl.col("window_start") >= at)
        return scored.sort("window_start", "window_end", "entity_type", "entity_value")

    def score_samples(self, X: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        """Calibrated anomaly scores in [0, 1] (higher is rarer), in ``score_frame`` row order.

        Unlike scikit-learn's outlier detectors, higher means *more* anomalous, matching the stored scores.
        """
        return self.score_frame(X)["score"].to_numpy()

    def decision_function(self, X: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        """``threshold - score``: negative for anomalies, as in scikit-learn."""
        return self.threshold - self.score_samples(X)

    def predict(self, X: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        """-1 for anomalous windows, 1 for normal ones (scikit-learn's outlier convention)."""
        return np.where(self.score_samples(X) >= self.threshold, -1, 1)

    # -- anomalies ---------------------------------------------------------------------------------

    def detect(self, X: pl.DataFrame | pl.LazyFrame, *, start: datetime | None = None,
               min_score: float | None = None, now: datetime | None = None) -> pl.DataFrame:
        """The anomalous windows of ``X`` as anomaly rows (``ANOMALY_SCHEMA``), explained (``now``: see
        ``score_frame``)."""
        cut = self.threshold if min_score is None else min_score
        # A detector scored by when its windows close chooses among the windows of a start before the range too:
        # a 4-hour window closing in the range whose start already has a shorter anomalous window (reported by
        # the range that window closed in) is that start's longer window, not a second anomaly. So the choice
        # is the same whichever range a run starts at.
        closing = start is not None and self.scores_windows_closing_in_range
        found = self.score_frame(X, start=None if closing else start, now=now).filter(pl.col("score") >= cut)
        # Windows of several lengths can start together (1 min, 10 min, 1 h at 10:00); an anomaly is one per
        # (entity, start): the shortest anomalous one, which is the one a live job reports first, so a
        # rerun, or a run after the longer windows fill up, rewrites the same row.
        found = (found.sort(["window_end", "score"], descending=[False, True])
                 .unique(["entity_type", "entity_value", "window_start"], keep="first", maintain_order=True)
                 .sort("window_start", "entity_type", "entity_value"))
        if closing:
            found = found.filter(pl.col("window_end") > start.astimezone(UTC))
        if found.is_empty():
            return empty_anomalies()
        rows = []
        for row in found.iter_rows(named=True):
            explanation = self._explain(row)
            explanation.setdefault("p_value", float(row["p_value"]))
            rows.append({
                "detector": self.name, "detector_version": self.version_,
                "entity_type": row["entity_type"], "entity_value": row["entity_value"],
                "window_start": row["window_start"], "window_end": row["window_end"],
                "score": float(row["score"]), "severity": calibration.severity(row["score"]),
                "explanation": orjson.dumps(explanation, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                "sample_event_ids": list(row["sample_event_ids"] or [])[:10],
            })
        return pl.DataFrame(rows, schema=ANOMALY_SCHEMA)

    # -- for subclasses -------------------------------------------------------------------------------

    def _fit(self, events: pl.DataFrame) -> None:
        raise NotImplementedError

    def _score(self, events: pl.LazyFrame) -> pl.DataFrame:
        raise NotImplementedError

    def _explain(self, row: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def with_scores(frame: pl.DataFrame, p: np.ndarray) -> pl.DataFrame:
    """Attach ``p_value`` and the calibrated ``score``."""
    p = np.clip(np.asarray(p, dtype=float), 1e-300, 1.0)
    return frame.with_columns(pl.Series("p_value", p), pl.Series("score", calibration.score_from_p(p)))


def without_spans(events: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """``events`` less each user's events inside any of their ``spans`` (``user_id``, ``start``, ``end``, the end
    excluded): what a detector leaves out of what it learns (an alarmed window, an escalation and its minutes)."""
    key = ["event_id", "timestamp"]
    inside = (events.select("user_id", *key).join(spans.select("user_id", "start", "end"), on="user_id")
              .filter(pl.col("timestamp").is_between(pl.col("start"), pl.col("end"), closed="left"))
              .select(key).unique())
    # In the events' own order: sums over the rest (a baseline's) then add up alike on every run.
    return events.join(inside, on=key, how="anti", maintain_order="left") if inside.height else events
