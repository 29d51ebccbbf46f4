"""Failure then success: many failed logins followed by a successful one (credential stuffing).

For each successful login, the failed logins for the same user, and from the same source IP, in
the lookback before it. Normal logins follow zero failures, sometimes one or two (a typo); the
distribution is learned from history (pooled over entities, geometric tail beyond the data).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from analytics import features as F
from analytics.detectors.base import Detector, with_scores
from analytics.detectors.counts import ENTITY_COLUMNS, SizeTail, _empty_scores


class FailureThenSuccess(Detector):
    """Successful logins preceded by an unusual number of failures for the same user or source.

    Parameters
    ----------
    lookback_minutes : int, default 30
        How far before a success failures count.
    entity_types : tuple of str, default ("user", "source_ip")
        Count failures against the user, and from the source IP (stuffing across many users); "user_ip"
        counts them per pair.
    prior_mean : float, default 1.3
        Mean of (failures + 1) assumed where history has no successful logins.

    Attributes
    ----------
    tails_ : dict
        Per entity type, the tail of failures-before-success on normal data.
    version_ : str
        Identifies the fitted model.
    """

    name = "failure_then_success"

    def __init__(self, *, lookback_minutes: int = 30, entity_types: tuple[str, ...] = ("user", "source_ip"),
                 prior_mean: float = 1.3) -> None:
        self.lookback_minutes = lookback_minutes
        self.entity_types = entity_types
        self.prior_mean = prior_mean

    def _fit(self, events: pl.DataFrame) -> None:
        lookback = timedelta(minutes=self.lookback_minutes)
        self.tails_ = {}
        for etype in self.entity_types:
            found = F.failures_before_success(F.with_user_ip(events.lazy()), ENTITY_COLUMNS[etype], lookback).collect()
            self.tails_[etype] = SizeTail(found["failures"].to_numpy() + 1, prior_mean=self.prior_mean)

    def _score(self, events: pl.LazyFrame) -> pl.DataFrame:
        lookback = timedelta(minutes=self.lookback_minutes)
        parts = []
        for etype, tail in self.tails_.items():
            column = ENTITY_COLUMNS[etype]
            found = (F.failures_before_success(F.with_user_ip(events), column, lookback)
                     .filter(pl.col("failures") > 0).collect())
            if found.is_empty():
                continue
            found = (found.with_columns(pl.col("timestamp").dt.truncate("1m").alias("window_start"))
                     .sort("failures", descending=True)
                     .group_by(column, "window_start", maintain_order=True)
                     .agg(pl.col("failures").first(), pl.col("event_id").head(10).alias("sample_event_ids"),
                          pl.col("user_id").unique().head(20).alias("users"),
                          pl.col("source_ip").first().alias("success_ip")))
            k = found["failures"].to_numpy()
            frame = found.rename({column: "entity_value"}).with_columns(
                pl.lit(etype).alias("entity_type"),
                (pl.col("window_start") + timedelta(minutes=1)).alias("window_end"),
                pl.Series("typical", np.full(len(k), tail.table[2] if tail.table.size > 2 else tail.ratio)),
            )
            parts.append(with_scores(frame, tail.sf(k + 1)))
        return pl.concat(parts, how="diagonal_relaxed") if parts else _empty_scores()

    def _explain(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "summary": f"successful login after {row['failures']} failed logins for {row['entity_type']} "
                       f"{row['entity_value']} within {self.lookback_minutes} min",
            "observed": {"failures_before_success": row["failures"], "users": row.get("users") or [],
                         "success_from": row.get("success_ip")},
            "expected": {"share_of_logins_after_any_failure": round(float(row["typical"]), 6)},
            "features": [{"name": "failures_before_success", "value": row["failures"], "contribution": 1.0}],
            "peers": {},
        }
