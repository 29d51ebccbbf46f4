"""Patient guessing: unresolved failed logins per entity over an hour, a day and a week.

A slow brute force (a few guesses an hour for a day or two, each from another proxy address) or
a slow spray (one guess at each of a hundred people over a night) never makes a burst in any short
window. What gives it away is the total over a longer horizon, against the entity's own rate.
Only *unresolved* failures count (``features.with_resolved``): a typo or an expired password is
followed by its owner's success within minutes; a guess at someone else's account is not.

Per entity (a user: failures against them from any address; a source address: distinct people it
failed against) the rate of unresolved failures per hour is learned from history and shrunk
towards the population's. The count in the trailing horizon ending with each hour is scored by a
negative binomial tail (failures come in clumps: over-dispersed). An entity whose stale credential
fails steadily every few minutes (a monitoring account in a retry loop) has a high rate of its own,
so its steady pattern is normal for it. The rarest horizon counts, with a factor for looking thrice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl
from scipy import stats

from analytics import features as F
from analytics.detectors.base import Detector, with_scores
from analytics.detectors.counts import _empty_scores
from analytics.detectors.habits import FailureHabits

HORIZONS = {"1h": 1, "1d": 24, "7d": 168}


class SlowFailures(Detector):
    """Unresolved failed logins per user, and distinct users failed per source, over long horizons.

    Parameters
    ----------
    horizons : tuple of str, default ("1h", "1d", "7d")
        Trailing spans, ending with each scored hour, whose counts are scored.
    entity_types : tuple of str, default ("user", "source_ip")
        ``user``: failures against a user from any address (rotating proxies); ``source_ip``: distinct users a
        source failed against.
    dispersion : float, default 0.5
        Negative binomial shape: the smaller, the clumpier failures are allowed to be.
    prior_days : float, default 7.0
        Weight, in days of history, of the population rate in each entity's rate.
    min_rate_per_hour : float, default 1e-4
        Floor of the population rate, so one failure from a never-seen entity is not an attack.
    resolve_minutes : float, default 10.0
        A failure its owner follows with a success from the same address within this is resolved.

    Attributes
    ----------
    rates_ : dict
        Per entity type: the population rate per hour and a frame of per-entity counts.
    span_hours_ : float
        Hours of history the rates were learned from.
    version_ : str
        Identifies the fitted model.
    """

    name = "slow_failures"
    reads_now: ClassVar[bool] = True  # a retry loop still open at the live edge waits for how it ends (``loops``)
    context: ClassVar[timedelta] = timedelta(days=7)  # events before a scored range its horizons read
    context_events: ClassVar[tuple[str, ...]] = ("user_login",)  # all it reads that far back (failures, successes)

    def __init__(self, *, horizons: tuple[str, ...] = ("1h", "1d", "7d"),
                 entity_types: tuple[str, ...] = ("user", "source_ip"), dispersion: float = 0.5,
                 prior_days: float = 7.0, min_rate_per_hour: float = 1e-4, resolve_minutes: float = 10.0) -> None:
        self.horizons = horizons
        self.entity_types = entity_types
        self.dispersion = dispersion
        self.prior_days = prior_days
        self.min_rate_per_hour = min_rate_per_hour
        self.resolve_minutes = resolve_minutes

    def _failures(self, events: pl.LazyFrame, etype: str, now: datetime | None = None) -> pl.DataFrame:
        """Unresolved failures as (entity_value, timestamp, event_id); a source counts each person once."""
        # Resolved whatever the run's length: a retry loop that ends in its own success is a stale credential (a
        # short guessing run that worked is the burst and stuffing detectors' business, not a slow attack's).
        # A stale credential's habit is judged by its changes only, a first-time retry loop by where it comes from
        # and how it ends (see ``habits``; the loops need the successes).
        logins = events.filter(pl.col("event_type") == "user_login")
        failed = F.with_resolved(self.habits_.drop_from(logins, now=now).filter(F.is_failed_login()), events,
                                 timedelta(minutes=self.resolve_minutes),
                                 max_run=1_000_000, now=now, worked=getattr(self.habits_, "worked", None))
        failed = failed.filter(~pl.col("resolved"))
        if etype == "user":
            return failed.select(pl.col("user_id").alias("entity_value"), "timestamp", "event_id").filter(
                pl.col("entity_value").is_not_null()).collect()
        return (failed.filter(pl.col("source_ip").is_not_null() & pl.col("user_id").is_not_null())
                .sort("timestamp").unique(["source_ip", "user_id"], keep="first", maintain_order=True)
                .select(pl.col("source_ip").alias("entity_value"), "timestamp", "event_id").collect())

    def _fit(self, events: pl.DataFrame) -> None:
        # The population rate is learned from sources that also do legitimate work (last week's spray must not
        # teach everybody that guessing is normal); each entity's own rate from all of its history, so a monitor
        # whose stale credential has failed every few minutes for weeks is normal for itself.
        lf = events.lazy()
        self.habits_ = FailureHabits.learn(lf)
        good = F.from_good_sources(lf)
        if events.height:
            self.span_hours_ = max((events["timestamp"].max() - events["timestamp"].min()).total_seconds() / 3600, 1.0)
        else:
            self.span_hours_ = 1.0
        self.rates_ = {}
        for etype in self.entity_types:
            column = "user_id" if etype == "user" else "source_ip"
            population = max(events.select(pl.col(column).drop_nulls().n_unique()).item() if events.height else 0, 1)
            per = self._failures(lf, etype).group_by("entity_value").agg(pl.len().cast(pl.Float64).alias("n"))
            pooled = self._failures(good, etype).height
            pop_rate = max(pooled / (population * self.span_hours_), self.min_rate_per_hour)
            self.rates_[etype] = {"pop_rate": pop_rate, "entities": per}

    def _score(self, events: pl.LazyFrame, now: datetime | None = None) -> pl.DataFrame:
        parts = []
        prior = self.prior_days * 24
        for etype in self.entity_types:
            failures = self._failures(events, etype, now)
            if failures.is_empty():
                continue
            hourly = (failures.with_columns(pl.col("timestamp").dt.truncate("1h").alias("window_start"))
                      .group_by("entity_value", "window_start")
                      .agg(pl.len().alias("count"), pl.col("event_id").sort_by("timestamp", "event_id").head(F.SAMPLE_IDS)
                           .alias("sample_event_ids"))
                      .sort("entity_value", "window_start"))
            for name in self.horizons:
                trailing = (hourly.rolling("window_start", period=f"{HORIZONS[name]}h", group_by="entity_value")
                            .agg(pl.col("count").sum().alias(f"n_{name}")))
                hourly = hourly.join(trailing, on=["entity_value", "window_start"], how="left")
            model = self.rates_[etype]
            hourly = hourly.join(model["entities"], on="entity_value", how="left")
            known = hourly["n"].fill_null(0.0).to_numpy()
            rate = (known + prior * model["pop_rate"]) / (self.span_hours_ + prior)
            r = self.dispersion
            p_each = []
            for name in self.horizons:
                mu = rate * HORIZONS[name]
                k = hourly[f"n_{name}"].to_numpy()
                p_each.append(stats.nbinom.sf(k - 1, r, r / (r + mu)))
            stacked = np.stack(p_each)
            best = np.argmin(stacked, axis=0)
            p = np.minimum(stacked.min(axis=0) * len(self.horizons), 1.0)
            frame = hourly.with_columns(
                pl.lit(etype).alias("entity_type"), (pl.col("window_start") + timedelta(hours=1)).alias("window_end"),
                pl.Series("rate_per_hour", rate), pl.Series("horizon", np.array(self.horizons)[best]))
            parts.append(with_scores(frame, p))
        return pl.concat(parts, how="diagonal_relaxed") if parts else _empty_scores()

    def _explain(self, row: dict[str, Any]) -> dict[str, Any]:
        what = "unresolved failed logins" if row["entity_type"] == "user" else "distinct users failed against"
        counts = {h: int(row.get(f"n_{h}") or 0) for h in self.horizons}
        expected = {h: round(float(row["rate_per_hour"]) * HORIZONS[h], 6) for h in self.horizons}
        h = row["horizon"]
        return {
            "summary": f"{counts[h]} {what} for {row['entity_type']} {row['entity_value']} in the last {h} "
                       f"(expected ≈ {expected[h]:.3g})",
            "observed": {"this_hour": int(row["count"]), **{f"last_{k}": v for k, v in counts.items()}},
            "expected": {f"last_{k}": v for k, v in expected.items()},
            "features": [{"name": f"{what.replace(' ', '_')}_{k}", "value": v,
                          "contribution": 0.8 if k == h else 0.1} for k, v in counts.items()],
            "peers": {"population_rate_per_hour": round(float(self.rates_[row["entity_type"]]["pop_rate"]), 8)},
        }
