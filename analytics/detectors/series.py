"""Univariate series scored causally: each point only from the points before it.

For data scientists and for arbitrary rollup series. The baseline of a point is the median and
interquartile range of the preceding ``window`` points (robust to earlier spikes); the scale never
drops below a Poisson-like floor, so a count series that sat at 0 does not scream at a 1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import polars as pl
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from analytics import calibration
from analytics.detectors.base import ANOMALY_SCHEMA, empty_anomalies


class SeriesScoring:
    """The estimator surface both series detectors share: scores, decisions, and anomaly rows.

    A subclass provides ``score_frame`` (columns ``timestamp, value, expected, scale, z, p_value,
    anomaly_score``), ``threshold``, ``name``, ``version_`` and ``expected_word`` (how its expectation
    is named in an explanation).
    """

    expected_word = "the expected"

    def score_samples(self, X: pl.DataFrame) -> np.ndarray:
        """Calibrated scores in [0, 1], higher is rarer, one per point of ``X``."""
        return self.score_frame(X)["anomaly_score"].to_numpy()

    def decision_function(self, X: pl.DataFrame) -> np.ndarray:
        """``threshold - score``: negative for anomalies."""
        return self.threshold - self.score_samples(X)

    def predict(self, X: pl.DataFrame) -> np.ndarray:
        """-1 for anomalous points, 1 for normal ones."""
        return np.where(self.score_samples(X) >= self.threshold, -1, 1)

    def detect(self, X: pl.DataFrame, *, entity: str, step: Any, start: datetime | None = None,
               min_score: float | None = None) -> pl.DataFrame:
        """Anomalous points as anomaly rows for the series named ``entity`` (buckets of length ``step``)."""
        cut = self.threshold if min_score is None else min_score
        found = self.score_frame(X, start=start).filter(pl.col("anomaly_score") >= cut)
        if found.is_empty():
            return empty_anomalies()
        rows = []
        for row in found.iter_rows(named=True):
            direction = "above" if row["value"] > row["expected"] else "below"
            rows.append({
                "detector": self.name, "detector_version": self.version_, "entity_type": "series",
                "entity_value": entity, "window_start": row["timestamp"], "window_end": row["timestamp"] + step,
                "score": row["anomaly_score"], "severity": calibration.severity(row["anomaly_score"]),
                "explanation": orjson.dumps({
                    "summary": f"{entity}: {row['value']:g} is {direction} {self.expected_word} {row['expected']:g} "
                               f"by {abs(row['z']):.1f} scales",
                    "observed": {"value": row["value"]}, "expected": {"value": row["expected"], "scale": row["scale"]},
                    "features": [{"name": "value", "value": row["value"], "contribution": 1.0}],
                    "peers": {}, "p_value": row["p_value"]}).decode(),
                "sample_event_ids": [],
            })
        return pl.DataFrame(rows, schema=ANOMALY_SCHEMA)


class UnivariateSeries(SeriesScoring, BaseEstimator):
    """Causal robust z-scores of a ``timestamp,value`` series, calibrated to [0, 1].

    Parameters
    ----------
    window : int, default 60
        Preceding points that form each point's baseline.
    min_periods : int, default 10
        Points before the first score; earlier points score 0.
    df : float, default 10.0
        Degrees of freedom of the Student-t tail of the two-sided test.
    scale_floor : float or None, default None
        Smallest scale; None learns it in ``fit`` (a tenth of the history's typical scale, at least 1e-9).

    Attributes
    ----------
    scale_floor_ : float
        The scale floor in use.
    version_ : str
        Identifies the fitted parameters.
    """

    name = "univariate_series"
    version = "1"
    expected_word = "the recent median"
    threshold = calibration.ANOMALY_SCORE

    def __init__(self, *, window: int = 60, min_periods: int = 10, df: float = 10.0,
                 scale_floor: float | None = None) -> None:
        self.window = window
        self.min_periods = min_periods
        self.df = df
        self.scale_floor = scale_floor

    def fit(self, X: pl.DataFrame, y: Any = None) -> UnivariateSeries:
        """Learn the scale floor from a history series; returns ``self``."""
        values = _values(X)
        if self.scale_floor is not None:
            self.scale_floor_ = float(self.scale_floor)
        elif values.size >= 4:
            q75, q25 = np.percentile(values, [75, 25])
            self.scale_floor_ = max((q75 - q25) / 1.349 / 10, 1e-9)
        else:
            self.scale_floor_ = 1e-9
        self.version_ = f"{self.name}-v{self.version}-w{self.window}-f{self.scale_floor_:.3g}"
        return self

    def score_frame(self, X: pl.DataFrame, *, start: datetime | None = None) -> pl.DataFrame:
        """``timestamp, value, expected, scale, anomaly_score`` with causal calibrated scores."""
        check_is_fitted(self, "version_")
        base = pl.col("value").shift(1)
        frame = X.select("timestamp", pl.col("value").cast(pl.Float64)).with_columns(
            base.rolling_median(self.window, min_samples=self.min_periods).alias("expected"),
            ((base.rolling_quantile(0.75, window_size=self.window, min_samples=self.min_periods)
              - base.rolling_quantile(0.25, window_size=self.window, min_samples=self.min_periods)) / 1.349)
            .alias("iqr_scale"),
        )
        expected = frame["expected"].to_numpy()
        poisson = np.sqrt(np.abs(np.nan_to_num(expected, nan=0.0))) / 2
        scale = np.maximum.reduce([np.nan_to_num(frame["iqr_scale"].to_numpy(), nan=0.0), poisson,
                                   np.full(frame.height, self.scale_floor_)])
        z = (frame["value"].to_numpy() - expected) / scale
        p = np.where(np.isnan(z), 1.0, np.minimum(2 * stats.t.sf(np.abs(np.nan_to_num(z)), self.df), 1.0))
        out = frame.drop("iqr_scale").with_columns(pl.Series("scale", scale), pl.Series("z", z),
                                                   pl.Series("p_value", p),
                                                   pl.Series("anomaly_score", calibration.score_from_p(p)))
        return out.filter(pl.col("timestamp") >= start.astimezone(UTC)) if start is not None else out

def _values(X: pl.DataFrame) -> np.ndarray:
    if "value" not in X.columns:
        raise ValueError("a series frame needs a `value` column (and `timestamp`)")
    return X["value"].cast(pl.Float64).drop_nulls().to_numpy()
