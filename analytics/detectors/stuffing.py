"""Failure then success: many failed logins followed by a successful one (credential stuffing).

For each successful login, the failed logins for the same user, and from the same source IP, in
the lookback before it. Normal logins follow zero failures, sometimes one or two (a typo); the
distribution is learned from history (pooled over entities, each weighted so none dominates,
geometric tail beyond the data). Two kinds of normal are kept apart from stuffing:

- behind a shared egress (corporate NAT, VPN, proxy) many distinct people each fail a little and
  then get in; from a source address only *unresolved* failures count (those whose owner did not
  succeed from it within minutes, see ``features.with_resolved``);
- an entity that fails in bursts as a habit (a service account retrying with a stale token) is
  judged by its own history too: a burst it has had many times before is not rare for it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from analytics import features as F
from analytics.detectors.base import Detector, with_scores
from analytics.detectors.counts import ENTITY_COLUMNS, SizeTail, _empty_scores, entity_weights
from analytics.detectors.habits import FailureHabits


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
    resolve_minutes : float, default 10.0
        From a source address, failures whose owner succeeded from it within this long are not counted.
    own_prior : float, default 20.0
        Pseudo-logins of pooled behaviour in each entity's own habit of failing before it succeeds.

    Attributes
    ----------
    tails_ : dict
        Per entity type, the tail of failures-before-success on normal data.
    version_ : str
        Identifies the fitted model.
    """

    name = "failure_then_success"

    def __init__(self, *, lookback_minutes: int = 30, entity_types: tuple[str, ...] = ("user", "source_ip"),
                 prior_mean: float = 1.3, resolve_minutes: float = 10.0, own_prior: float = 20.0) -> None:
        self.lookback_minutes = lookback_minutes
        self.entity_types = entity_types
        self.prior_mean = prior_mean
        self.resolve_minutes = resolve_minutes
        self.own_prior = own_prior

    def _logins(self, events: pl.LazyFrame, etype: str) -> pl.LazyFrame:
        events = self.habits_.drop_from(events)  # a stale credential's habit is judged by its changes only
        if etype == "user":
            return events
        return F.without_resolved_failures(events, timedelta(minutes=self.resolve_minutes))

    def _fit(self, events: pl.DataFrame) -> None:
        lookback = timedelta(minutes=self.lookback_minutes)
        self.tails_ = {}
        self.own_ = {}
        self.habits_ = FailureHabits.learn(events.lazy())
        logins = F.from_good_sources(events.lazy().filter(pl.col("event_type") == "user_login")).collect().lazy()
        for etype in self.entity_types:
            column = ENTITY_COLUMNS[etype]
            found = F.failures_before_success(F.with_user_ip(self._logins(logins, etype)), column, lookback).collect()
            failed = found["failures"].to_numpy() > 0
            weights = np.ones(found.height)
            weights[failed] = entity_weights(found[column].filter(pl.Series(failed)))
            self.tails_[etype] = SizeTail(found["failures"].to_numpy() + 1, prior_mean=self.prior_mean,
                                          weights=weights)
            # Successes before which the entity failed, and how many failures it usually takes: its habit.
            self.own_[etype] = (found.group_by(column).agg(
                pl.len().alias("logins"), (pl.col("failures") > 0).sum().alias("after_failures"),
                pl.col("failures").filter(pl.col("failures") > 0).mean().fill_null(0.0).alias("mean_failures"))
                .rename({column: "entity_value"}))

    def _score(self, events: pl.LazyFrame) -> pl.DataFrame:
        lookback = timedelta(minutes=self.lookback_minutes)
        parts = []
        logins = events.filter(pl.col("event_type") == "user_login").collect().lazy()
        for etype, tail in self.tails_.items():
            column = ENTITY_COLUMNS[etype]
            found = (F.failures_before_success(F.with_user_ip(self._logins(logins, etype)), column, lookback)
                     .filter(pl.col("failures") > 0).collect())
            if found.is_empty():
                continue
            # A total order before taking firsts: a rerun picks the same samples and success address.
            found = (found.with_columns(pl.col("timestamp").dt.truncate("1m").alias("window_start"))
                     .sort(["failures", "timestamp", "event_id"], descending=[True, False, False])
                     .group_by(column, "window_start", maintain_order=True)
                     .agg(pl.col("failures").first(), pl.col("event_id").head(10).alias("sample_event_ids"),
                          pl.col("user_id").unique(maintain_order=True).head(20).alias("users"),
                          pl.col("source_ip").first().alias("success_ip")))
            k = found["failures"].to_numpy()
            frame = found.rename({column: "entity_value"}).join(self.own_[etype], on="entity_value", how="left")
            pooled = tail.sf(k + 1)
            # The entity's own habit, shrunk towards the pooled one: P(a login follows failures) * P(this many).
            logins_ = frame["logins"].fill_null(0).to_numpy().astype(float)
            after = frame["after_failures"].fill_null(0).to_numpy().astype(float)
            typical_share = tail.table[2] if tail.table.size > 2 else tail.ratio
            rate = (after + self.own_prior * typical_share) / (logins_ + self.own_prior)
            mean = np.maximum(frame["mean_failures"].fill_null(0.0).to_numpy(), 1.0)
            own = rate * np.power((mean - 1 + 1e-9) / mean, np.maximum(k - mean, 0.0)) * np.minimum(1.0, after / 3.0)
            frame = frame.with_columns(
                pl.lit(etype).alias("entity_type"),
                (pl.col("window_start") + timedelta(minutes=1)).alias("window_end"),
                pl.Series("typical", np.full(len(k), typical_share)),
            )
            parts.append(with_scores(frame, np.maximum(pooled, own)))
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
