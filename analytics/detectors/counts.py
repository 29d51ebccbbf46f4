"""Count bursts against each entity's own baseline: failed-login bursts and password spraying.

Count data with many zeros and human clumps (a mistyped password is often retyped wrong twice) is
modelled as a *hurdle*: how often an entity has any failure in a window (its own rate, shrunk
towards the population's, times the population's hour-of-week profile) and, given one, how large
the window's count is (the pooled distribution of normal windows, with a geometric tail beyond the
data, and never thinner than the entity's own history). A new entity starts at the population
rate, the floor that keeps one failure from a never-seen IP from looking like an attack.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from analytics import features as F
from analytics.detectors.base import Detector, with_scores
from analytics.detectors.habits import FailureHabits
from analytics.events import TS

ENTITY_COLUMNS = {"user": "user_id", "source_ip": "source_ip", "user_ip": "user_ip"}


class SizeTail:
    """P(count >= k | count > 0): empirical where the data are, geometric beyond."""

    def __init__(self, sizes: np.ndarray, *, min_support: int = 20, prior_mean: float = 1.5,
                 min_ratio: float = 0.25, weights: np.ndarray | None = None) -> None:
        sizes = np.asarray(sizes, dtype=np.int64)
        weights = np.ones(sizes.size) if weights is None else np.asarray(weights, dtype=float)
        keep = sizes > 0
        order = np.lexsort((weights[keep], sizes[keep]))  # sums in one order: the same data, the same model
        sizes, weights = sizes[keep][order], weights[keep][order]
        prior = (prior_mean - 1.0) / prior_mean
        self.n = float(weights.sum())
        if sizes.size == 0:
            self.k0, self.sf_k0, self.ratio, self.table = 1, 1.0, max(prior, min_ratio), np.array([1.0, 1.0])
            return
        top = int(sizes.max())
        ge = np.bincount(sizes, weights=weights, minlength=top + 2)[::-1].cumsum()[::-1]  # ge[k] = #(sizes >= k)
        supported = np.nonzero(ge >= min_support)[0]
        self.k0 = int(supported.max()) if supported.size else 1
        self.table = (ge[: self.k0 + 1] + 0.5) / (self.n + 0.5)
        self.table[0] = self.table[1] = 1.0
        self.sf_k0 = float(self.table[self.k0])
        beyond = sizes >= self.k0
        excess = sizes[beyond] - self.k0
        # Geometric beyond k0: P(excess >= 1) estimates the ratio and, unlike the mean excess, a few huge
        # windows (last week's attacks, still in a refit's history) cannot fatten the tail.
        # Shrunk towards the prior's ratio by ``min_support`` pseudo-windows: a tail learned from two entities'
        # habits (two service accounts' retry loops) says little about everybody else.
        w = float(weights[beyond].sum())
        share = float(np.average(excess >= 1, weights=weights[beyond])) if excess.size else 0.0
        share = (w * share + min_support * prior) / (w + min_support)
        self.ratio = min(max(share, min_ratio), 0.95)

    def sf(self, k: np.ndarray) -> np.ndarray:
        k = np.maximum(np.asarray(k, dtype=np.int64), 1)
        inside = self.table[np.minimum(k, self.k0)]
        beyond = self.sf_k0 * np.power(self.ratio, np.maximum(k - self.k0, 0))
        return np.where(k <= self.k0, inside, beyond)


def entity_weights(entities: pl.Series, *, cap: float = 3.0) -> np.ndarray:
    """Weights that let no entity dominate a pooled distribution: each counts for at most ``cap`` windows.

    A service account whose stale token fails in bursts three times a day is normal *for it*
    (its own history says so); pooled unweighted, its bursts would make every burst look normal.
    """
    if entities.is_empty():
        return np.ones(0)
    per = entities.value_counts(name="_n")
    n = entities.to_frame("_e").join(per.rename({entities.name: "_e"}), on="_e", how="left")["_n"].to_numpy()
    return np.minimum(1.0, cap / n)


class _HurdleCounts(Detector):
    """Shared engine of the count detectors; subclasses choose the events and the statistic."""

    distinct: str | None = None
    noun = "events"
    reads_now = True  # a retry loop still open at the live edge waits for how it ends (``loops``)
    # Entity types counted without the failures their owner resolved (see ``features.with_resolved``): a source
    # address is judged by the guesses it sends, not by its people's typos and expired passwords.
    unresolved_only: tuple[str, ...] = ("source_ip",)

    def __init__(self, *, windows: tuple[str, ...] = ("1m", "10m", "1h"),
                 entity_types: tuple[str, ...] = ("user", "source_ip"), prior_rate_per_minute: float = 2e-5,
                 prior_days: float = 7.0, prior_mean_size: float = 1.5, season_smoothing: float = 5.0,
                 resolve_minutes: float = 10.0) -> None:
        self.windows = windows
        self.entity_types = entity_types
        self.prior_rate_per_minute = prior_rate_per_minute
        self.prior_days = prior_days
        self.prior_mean_size = prior_mean_size
        self.season_smoothing = season_smoothing
        self.resolve_minutes = resolve_minutes

    def _events(self, events: pl.LazyFrame, now: datetime | None = None) -> pl.LazyFrame:
        # A stale credential's habit is judged by its changes only, a first-time retry loop by where it comes from
        # and how it ends (see ``habits``; the loops need the successes, and one still open at ``now`` waits).
        logins = events.filter(pl.col("event_type") == "user_login")
        failed = self.habits_.drop_from(logins, now=now).filter(F.is_failed_login())
        failures = F.with_resolved(failed, events, timedelta(minutes=self.resolve_minutes), now=now,
                                   worked=getattr(self.habits_, "worked", None))
        return F.with_user_ip(failures).collect().lazy()

    def _picked(self, picked: pl.LazyFrame, etype: str) -> pl.LazyFrame:
        return picked.filter(~pl.col("resolved")) if etype in self.unresolved_only else picked

    def _fit(self, events: pl.DataFrame) -> None:
        lf = events.lazy()
        self.habits_ = FailureHabits.learn(lf)
        picked = self._events(F.from_good_sources(lf))
        # Each entity's own rate from all of its history: a monitor whose stale credential has failed every few
        # minutes for weeks is normal for itself, though it teaches the pooled model nothing.
        own = self._events(lf)
        if events.height:
            span_minutes = max((events["timestamp"].max() - events["timestamp"].min()).total_seconds() / 60, 1.0)
        else:
            span_minutes = 1.0
        self.models_: dict[tuple[str, str], dict[str, Any]] = {}
        for etype in self.entity_types:
            column = ENTITY_COLUMNS[etype]
            population = max(F.with_user_ip(events.lazy()).select(pl.col(column).drop_nulls().n_unique())
                             .collect().item() if events.height else 0, 1)
            for window in self.windows:
                minutes = F.WINDOWS[window].total_seconds() / 60
                slots = max(span_minutes / minutes, 1.0)
                counts = F.window_counts(self._picked(picked, etype), column, window, distinct=self.distinct).collect()
                occurrences = (F.window_counts(self._picked(own, etype), column, window, distinct=self.distinct)
                               .group_by("entity_value").agg(pl.len().alias("n"), pl.col("count").sum().alias("total"))
                               .collect())
                floor = min(self.prior_rate_per_minute * minutes, 1.0)
                pop_rate = max(counts.height / (population * slots), floor)
                per_how = np.bincount(counts["how"].to_numpy(), minlength=168).astype(float)
                exposure = _how_exposure(events, minutes) * population
                mean_rate = per_how.sum() / max(exposure.sum(), 1.0)
                k = self.season_smoothing
                season = np.ones(168) if mean_rate == 0 else (
                    (per_how + k) / (exposure + k / mean_rate)) / mean_rate
                self.models_[(etype, window)] = {
                    "slots": slots, "pop_rate": pop_rate, "season": np.clip(season, 0.25, 4.0),
                    "tail": SizeTail(counts["count"].to_numpy(), prior_mean=self.prior_mean_size,
                                     weights=entity_weights(counts["entity_value"])),
                    "entities": occurrences, "prior": self.prior_days * 1440 / minutes,
                }

    def _score(self, events: pl.LazyFrame, now: datetime | None = None) -> pl.DataFrame:
        picked = self._events(events, now)
        parts = []
        for (etype, window), model in self.models_.items():
            counts = F.window_counts(self._picked(picked, etype), ENTITY_COLUMNS[etype], window,
                                     distinct=self.distinct).collect()
            if counts.is_empty():
                continue
            counts = counts.join(model["entities"], on="entity_value", how="left")
            n = counts["n"].fill_null(0).to_numpy().astype(float)
            known = counts["n"].is_not_null().to_numpy()
            base = np.where(known, (n + model["prior"] * model["pop_rate"]) / (model["slots"] + model["prior"]),
                            model["pop_rate"])
            rate = np.minimum(base * model["season"][counts["how"].to_numpy()], 1.0)
            k = counts["count"].to_numpy()
            tail = model["tail"].sf(k)
            mean_size = np.where(known, (counts["total"].fill_null(0).to_numpy() + 2 * self.prior_mean_size)
                                 / (n + 2), self.prior_mean_size)
            own_ratio = np.clip((mean_size - 1) / mean_size, model["tail"].ratio, 0.99)
            tail = np.maximum(tail, np.power(own_ratio, k - 1))
            p = rate * tail
            frame = counts.with_columns(pl.lit(etype).alias("entity_type"), pl.lit(window).alias("window"),
                                        pl.Series("rate", rate), pl.Series("expected", rate * mean_size),
                                        pl.Series("pop_rate", np.full(len(k), model["pop_rate"])),
                                        pl.Series("season", model["season"][counts["how"].to_numpy()]))
            parts.append(with_scores(frame, p))
        if not parts:
            return _empty_scores()
        return pl.concat(parts, how="diagonal_relaxed")

    def _explain(self, row: dict[str, Any]) -> dict[str, Any]:
        what = f"{row['count']} {self.noun}"
        return {
            "summary": f"{what} for {row['entity_type']} {row['entity_value']} in {row['window']} "
                       f"(expected ≈ {row['expected']:.3g}; one window in {1 / max(row['p_value'], 1e-300):.2g})",
            "observed": {"count": row["count"], "window": row["window"], "users": row.get("users") or []},
            "expected": {"count": round(row["expected"], 6), "rate_of_any": round(row["rate"], 8),
                         "hour_of_week_factor": round(row["season"], 3)},
            "features": [
                {"name": self.noun.replace(" ", "_"), "value": row["count"], "contribution": 0.8},
                {"name": "hour_of_week_factor", "value": round(row["season"], 3), "contribution": 0.2},
            ],
            "peers": {"population_rate_of_any": round(row["pop_rate"], 8)},
        }


def _how_exposure(events: pl.DataFrame, minutes: float) -> np.ndarray:
    """How many windows of each hour of week the history covers."""
    if events.is_empty():
        return np.ones(168)
    lo, hi = events["timestamp"].min(), events["timestamp"].max()
    hours = pl.datetime_range(lo.replace(minute=0, second=0, microsecond=0), hi, "1h", eager=True,
                              time_zone="UTC")
    how = pl.select(F.hour_of_week(pl.lit(hours))).to_series().to_numpy()
    return np.maximum(np.bincount(how, minlength=168).astype(float) * (60 / minutes), 1.0)


def _empty_scores() -> pl.DataFrame:
    return pl.DataFrame(schema={"entity_type": pl.String, "entity_value": pl.String, "window_start": TS,
                                "window_end": TS, "score": pl.Float64, "p_value": pl.Float64,
                                "sample_event_ids": pl.List(pl.String)})


class FailedLoginBurst(_HurdleCounts):
    """Failed-login bursts against a user or from a source IP, per entity and hour-of-week baseline.

    Parameters
    ----------
    windows : tuple of str, default ("1m", "10m", "1h")
        Tumbling windows scored; short ones catch fast brute force within a minute, long ones slow guessing.
    entity_types : tuple of str, default ("user", "source_ip")
        Entities to baseline separately; add "user_ip" for the pair (a user from one address).
    prior_rate_per_minute : float, default 2e-5
        Floor of the population rate of windows with any failure, per minute of window.
    prior_days : float, default 7.0
        Weight, in days of history, of the population rate in each entity's rate (shrinkage).
    prior_mean_size : float, default 1.5
        Mean failures per failing window assumed where history has none.
    season_smoothing : float, default 5.0
        Pseudo-count shrinking the hour-of-week profile towards flat.
    resolve_minutes : float, default 10.0
        A failure its owner follows with a success from the same address within this is resolved (a typo,
        an expired password) and not counted against the address.

    Attributes
    ----------
    models_ : dict
        Per (entity type, window): population rate, seasonality, size tail and per-entity history.
    version_ : str
        Identifies the fitted model; stored with every anomaly it scores.
    """

    name = "failed_login_burst"
    noun = "failed logins"


class PasswordSpraying(_HurdleCounts):
    """One source failing against many distinct users (password spraying).

    The statistic is the number of distinct users with a failed login from the source IP in the
    window; the baseline is the same hurdle model as ``FailedLoginBurst``.

    Parameters
    ----------
    windows : tuple of str, default ("1m", "10m", "1h")
        Tumbling windows scored.
    entity_types : tuple of str, default ("source_ip",)
        Only sources spray.
    prior_rate_per_minute, prior_days, prior_mean_size, season_smoothing, resolve_minutes
        As in ``FailedLoginBurst``; only unresolved failures count (many people behind one VPN address who
        each fail once and then get in are not a spray).

    Attributes
    ----------
    models_ : dict
        Per (entity type, window) baselines.
    version_ : str
        Identifies the fitted model.
    """

    name = "password_spraying"
    distinct = "user_id"
    noun = "distinct users failing"
    unresolved_only = ("source_ip", "user", "user_ip")

    def __init__(self, *, windows: tuple[str, ...] = ("1m", "10m", "1h"),
                 entity_types: tuple[str, ...] = ("source_ip",), prior_rate_per_minute: float = 2e-5,
                 prior_days: float = 7.0, prior_mean_size: float = 1.2, season_smoothing: float = 5.0,
                 resolve_minutes: float = 10.0) -> None:
        super().__init__(windows=windows, entity_types=entity_types, prior_rate_per_minute=prior_rate_per_minute,
                         prior_days=prior_days, prior_mean_size=prior_mean_size, season_smoothing=season_smoothing,
                         resolve_minutes=resolve_minutes)

