"""Multivariate outliers: an IsolationForest over per-user-hour behaviour vectors.

Catches combinations no single detector looks at (a burst of downloads from several addresses at an
hour the user is never active). The forest's raw score is turned into a tail probability by
``calibration.EmpiricalTail`` fitted on history windows the forest did not train on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from analytics import features as F
from analytics.calibration import EmpiricalTail
from analytics.detectors.base import Detector, with_scores
from analytics.detectors.counts import _empty_scores

COLUMNS = (*F.VECTOR_COLUMNS, "hour_rarity")


class MultivariateOutlier(Detector):
    """IsolationForest over per-user-hour vectors (events, types, failures, volumes, sources, hour rarity).

    Parameters
    ----------
    n_estimators : int, default 100
        Trees in the forest.
    max_train : int, default 50000
        User-hours sampled from history to train the forest; as many again (disjoint) calibrate it.
    per_entity : int, default 24
        Most hours of one user in the calibration sample, so no account's habit makes up the tail.
    random_state : int, default 0
        Seed of the sampling and of the forest, so a refit on the same history is the same model.

    Attributes
    ----------
    forest_ : sklearn.ensemble.IsolationForest
        The fitted forest.
    tail_ : analytics.calibration.EmpiricalTail
        Raw score → tail probability.
    center_, spread_ : numpy.ndarray
        Median and MAD of each feature on history, for explanations.
    hour_profile_ : polars.DataFrame
        Per user and hour of day: share of their active hours, for the hour-rarity feature.
    version_ : str
        Identifies the fitted model.
    """

    name = "multivariate_outlier"
    version = "2"  # 2: calibrated by the exponential's predictive tail (a day's warm-up claims no more than it can)

    def __init__(self, *, n_estimators: int = 100, max_train: int = 50_000, per_entity: int = 24,
                 random_state: int = 0) -> None:
        self.per_entity = per_entity
        self.n_estimators = n_estimators
        self.max_train = max_train
        self.random_state = random_state

    def _vectors(self, events: pl.LazyFrame, vectors: pl.DataFrame | None = None) -> pl.DataFrame:
        vectors = F.user_hour_vectors(events).collect() if vectors is None else vectors
        vectors = vectors.join(self.hour_profile_, on=["user_id", "hour"], how="left").join(
            self.user_hours_, on="user_id", how="left")
        share = (vectors["active"].fill_null(0).to_numpy() + 1.0) / (vectors["hours"].fill_null(0).to_numpy() + 24.0)
        return vectors.with_columns(pl.Series("hour_rarity", -np.log10(share)))

    def _fit(self, events: pl.DataFrame) -> None:
        raw_vectors = F.user_hour_vectors(events.lazy()).collect()
        self.hour_profile_ = raw_vectors.group_by("user_id", "hour").agg(pl.len().alias("active"))
        self.user_hours_ = raw_vectors.group_by("user_id").agg(pl.len().alias("hours"))
        vectors = self._vectors(events.lazy(), raw_vectors)
        X = vectors.select(COLUMNS).to_numpy().astype(float)
        if X.shape[0] < 50:
            X = np.vstack([X, np.zeros((50 - X.shape[0], len(COLUMNS)))])
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(X.shape[0])
        half = max(X.shape[0] // 2, 1)
        train = X[order[: min(half, self.max_train)]]
        held = order[half:] if X.shape[0] > half else order[:half]
        # The calibration tail is learned with at most ``per_entity`` hours of each user: a few accounts with one
        # constant odd pattern (a monitor failing every few minutes, all day) would otherwise fill the top of the
        # tail with identical scores and make everything beyond it look impossibly rare.
        owners = np.asarray(vectors["user_id"].to_list() + [""] * (X.shape[0] - vectors.height), dtype=object)
        capped = (pl.DataFrame({"i": held, "owner": owners[held]}).group_by("owner", maintain_order=True)
                  .head(self.per_entity)["i"].to_numpy())
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state).fit(train)
        self.tail_ = EmpiricalTail().fit(-self.forest_.score_samples(X[capped[: self.max_train]]))
        self.center_ = np.median(X, axis=0)
        self.spread_ = np.maximum(np.median(np.abs(X - self.center_), axis=0) * 1.4826, 0.5)

    def _score(self, events: pl.LazyFrame) -> pl.DataFrame:
        vectors = self._vectors(events)
        if vectors.is_empty():
            return _empty_scores()
        X = vectors.select(COLUMNS).to_numpy().astype(float)
        raw = -self.forest_.score_samples(X)
        frame = vectors.with_columns(pl.lit("user").alias("entity_type"), pl.col("user_id").alias("entity_value"),
                                     pl.Series("raw", raw))
        return with_scores(frame, self.tail_.sf(raw))

    def _explain(self, row: dict[str, Any]) -> dict[str, Any]:
        values = np.array([float(row[c]) for c in COLUMNS])
        z = (values - self.center_) / self.spread_
        top = np.argsort(-np.abs(z))[:3]
        total = float(np.abs(z[top]).sum()) or 1.0
        shown = ", ".join(f"{COLUMNS[i]}={values[i]:.3g}" for i in top)
        return {
            "summary": f"unusual hour for {row['entity_value']}: {shown} (isolation score {row['raw']:.3f})",
            "observed": {c: float(row[c]) for c in COLUMNS},
            "expected": {c: float(self.center_[i]) for i, c in enumerate(COLUMNS)},
            "features": [{"name": COLUMNS[i], "value": float(values[i]),
                          "contribution": round(float(abs(z[i])) / total, 3)} for i in top],
            "peers": {"population_median": {COLUMNS[i]: float(self.center_[i]) for i in top}},
        }
