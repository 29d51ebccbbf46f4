"""Unusual data export volume, against the user's own baseline, their peer group's, and their peers now.

Volumes are log-normal-ish, so the baseline is a robust location and scale (median, MAD) of
log(1 + volume) over the user's windows with any export, shrunk towards the peer group's when the
user has little history. Rows exported (data_export, export_requested) and bytes downloaded are
scored separately and the rarer one counts (with a factor two for looking twice).

Many exports of modest size add up without any one standing out (data staged over an afternoon),
so two more views of the same window are scored: how many exports it holds against the user's
usual number in a window with any (a negative binomial, over-dispersed as people export in
bursts), and how large its exports are on average against the user's usual export (the mean of
``k`` log sizes, whose spread shrinks with ``k`` down to a between-window floor learned from
history). Those two are independent under normal behaviour and are combined (Fisher); the window's
own p-value is the rarer of that and the volume's, for looking twice.

An entity is also scored against its peers *in the same period*: when far more of a peer group's
windows are above their members' own baselines than chance allows (a department's month-end
close), that is a cohort shift, and a window is anomalous only if it is rare for the member and
also among the windows of the peers who moved with them. Without known peer groups, cohorts are
inferred from shared resources (``features.infer_cohorts``); users in none form one group. The
baselines are learned from ordinary periods: a group's cohort shifts in the history are left out of
them, so a close's third day is judged against the days before the close, not a mix of both; and so are
the windows the detector would itself have alarmed on, so a thief's second afternoon is not judged
against their first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from analytics import features as F
from analytics.detectors.base import Detector, with_scores, without_spans
from analytics.detectors.counts import _empty_scores

MEASURES = {"export_rows": F.export_rows, "download_bytes": F.download_bytes}
# Long windows hop, so one closes every hour: an afternoon's staged export is seen within the hour, whatever
# the clock says, instead of when a fixed 4-hour block ends.
HOPS = {"4h": "1h"}


class ExportVolume(Detector):
    """Export volume per user and window, against the user's and the peer group's baseline.

    Parameters
    ----------
    windows : tuple of str, default ("10m", "1h", "4h")
        Windows scored: tumbling, except those in ``HOPS`` (4 h), which start every hour.
    peer_groups : mapping of str to str or None, default None
        User id → peer group (e.g. department); users not in it, or all when None, form one group.
    shrinkage : float, default 10.0
        Windows of peer-group evidence mixed into each user's baseline.
    min_scale : float, default 0.5
        Floor of the log-volume scale, so a user who always exports the same amount is not alarmed by a little more.
    df : float, default 30.0
        Degrees of freedom of the Student-t tail (a little heavier than normal).
    cohort_z : float, default 2.5
        A member above their own baseline by this much has moved; many moving together is a cohort shift.
    min_cohort : int, default 5
        Fewest members, and member windows (and three times what chance allows), moving in one period that make
        a cohort shift.
    cohort_period : str, default "1d"
        The span over which members moving together are counted (a close or a quarter end lasts days).
    min_count_mean : float, default 0.25
        Floor of the expected number of exports beyond the first in a window with any, so a user who has
        always exported one file at a time is not alarmed by three.
    alarm_score : float, default 0.6
        A user's exports in a history window that scored this much are left out of their baselines (what was
        alarmed on is not learned as normal); 1.0 learns from everything.

    Attributes
    ----------
    baselines_ : dict
        Per (measure, window): per-user and per-group location and scale of log volume.
    counts_ : dict
        Per window: per-user and per-group mean number of exports in a window with any, and the dispersion.
    sizes_ : dict
        Per measure: per-user and per-group location and scale of one export's log size.
    between_ : dict
        Per (measure, window): how far a window's mean export size strays beyond sampling (log units).
    groups_ : dict
        User → peer group in use: ``peer_groups``, or cohorts inferred from shared resources.
    shifted_ : polars.DataFrame
        The history's cohort shifts (``_period``, ``peer_group``), left out of every baseline above.
    version_ : str
        Identifies the fitted model.
    """

    name = "export_volume"
    version = "4"
    context_events = F.EXPORT_TYPES + F.DOWNLOAD_TYPES
    scores_windows_closing_in_range = True  # a 4-hour window that began before the range is scored whole there

    @property
    def context(self) -> timedelta:
        """The exports before a scored range that its windows and periods need (``analytics.lookback``): the
        longest window, and the whole of a cohort period (a day), since a window is judged among its peers'
        exports of that period. A range starting mid-day then scores a window as one starting at midnight does."""
        return max(F.duration(w) for w in (*self.windows, self.cohort_period))

    def __init__(self, *, windows: tuple[str, ...] = ("10m", "1h", "4h"), peer_groups: Mapping[str, str] | None = None,
                 shrinkage: float = 10.0, min_scale: float = 0.5, df: float = 30.0, cohort_z: float = 2.5,
                 min_cohort: int = 5, cohort_period: str = "1d", min_count_mean: float = 0.25,
                 alarm_score: float = 0.6) -> None:
        self.windows = windows
        self.peer_groups = peer_groups
        self.shrinkage = shrinkage
        self.min_scale = min_scale
        self.df = df
        self.cohort_z = cohort_z
        self.min_cohort = min_cohort
        self.cohort_period = cohort_period
        self.min_count_mean = min_count_mean
        self.alarm_score = alarm_score

    def _volumes(self, events: pl.LazyFrame, window: str) -> pl.LazyFrame:
        """Per user and window: the measures' sums, the number of exports, their mean log size, sample ids.
        A hopping window is summed from its hops' sums (an event is read once, not once per window)."""
        hop = HOPS.get(window, window)
        n = int(F.WINDOWS[window] / F.WINDOWS[hop])
        sums = [*MEASURES, *(f"{name}_slog" for name in MEASURES), *(f"{name}_k" for name in MEASURES), "exports"]
        placed = (
            events.with_columns(pl.col("timestamp").dt.truncate(F.every(hop)).alias("window_start"))
            .group_by("user_id", "window_start")
            .agg(*(pl.col(name).sum() for name in MEASURES), pl.len().alias("exports"),
                 *(pl.col(name).filter(pl.col(name) > 0).log1p().sum().alias(f"{name}_slog") for name in MEASURES),
                 *(((pl.col(name) > 0).sum()).alias(f"{name}_k") for name in MEASURES),
                 pl.col("event_id").sort_by("timestamp", "event_id").head(F.SAMPLE_IDS).alias("sample_event_ids"))
        )
        if n > 1:  # each hop in every window of this length that starts on a hop at or before it
            # Hops in time order (a group_by emits groups in no set order): a window samples its earliest hops'
            # first exports, the same on every run, so a rerun rewrites no stored incident.
            placed = (placed.sort("user_id", "window_start")
                      .with_columns(pl.concat_list([pl.col("window_start") - F.WINDOWS[hop] * i
                                                    for i in range(n)]).alias("window_start"))
                      .explode("window_start").group_by("user_id", "window_start")
                      .agg(*(pl.col(c).sum() for c in sums),
                           pl.col("sample_event_ids").explode().head(F.SAMPLE_IDS)))
        return placed.with_columns(
            *(pl.when(pl.col(f"{name}_k") > 0).then(pl.col(f"{name}_slog") / pl.col(f"{name}_k"))
              .alias(f"{name}_mlog") for name in MEASURES),
            self._group(),
            (pl.col("window_start") + F.WINDOWS[window]).alias("window_end")
        # In one order on every run (a group_by emits its groups in none): the fits' float sums over these rows
        # (the count model's dispersion) then add up alike, and a rerun gives the same p-values to the last digit.
        ).sort("user_id", "window_start")

    @staticmethod
    def _exports(events: pl.LazyFrame) -> pl.LazyFrame:
        """Export and download events with their volumes, read from metadata once for every window."""
        return (events.filter(pl.col("event_type").is_in(F.EXPORT_TYPES + F.DOWNLOAD_TYPES))
                .select("user_id", "timestamp", "event_id", *(fn().alias(name) for name, fn in MEASURES.items()))
                .collect().lazy())

    def _fit(self, events: pl.DataFrame) -> None:
        # Known peer groups (an empty mapping, as a store without a directory gives, is none known).
        self.groups_ = (dict(self.peer_groups) if self.peer_groups
                        else F.infer_cohorts(events.lazy()) if events.height else {})
        exports = self._exports(events.lazy()).collect()
        volumes = {window: self._volumes(exports.lazy(), window).collect() for window in self.windows}
        self._fit_baselines(exports, volumes)
        # A cohort shift in the history (the first days of a close) is not the members' ordinary behaviour: left
        # in, it lifts every member's baseline, so on the close's third day fewer members look moved, the shift
        # goes unseen, and a member is judged on an own baseline the close has half absorbed (a heavy exporter
        # flagged; data taken under cover of the close looking ordinary). Those periods are learned without.
        scored = self._score_exports(exports.lazy(), volumes) if exports.height else None
        self.shifted_ = self._shifted(exports, scored)
        # Nor is what this detector alarmed on: a thief's first afternoon, left in, becomes their normal (hopping
        # windows count it several times over), and their second is judged against it.
        ordinary = exports
        if scored is not None and self.alarm_score < 1.0:
            ordinary = without_spans(exports, scored.filter(pl.col("score") >= self.alarm_score).select(
                "user_id", pl.col("window_start").alias("start"), pl.col("window_end").alias("end")))
            if ordinary.height < exports.height:
                volumes = {window: self._volumes(ordinary.lazy(), window).collect() for window in self.windows}
        if self.shifted_.height or ordinary.height < exports.height:
            keys = ["_period", "peer_group"]
            ordinary = ordinary.with_columns(self._period(), self._group()).join(self.shifted_, on=keys, how="anti")
            self._fit_baselines(ordinary.drop(keys), {
                window: (frame.with_columns(self._period("window_start"))
                         .join(self.shifted_, on=keys, how="anti").drop("_period"))
                for window, frame in volumes.items()})

    def _period(self, column: str = "timestamp") -> pl.Expr:
        """The cohort period a time falls in (``_period``)."""
        return pl.col(column).dt.truncate(self.cohort_period).alias("_period")

    def _group(self) -> pl.Expr:
        """The user's peer group (``peer_group``); users in none form the group ``all``."""
        return pl.col("user_id").replace_strict(self.groups_, default="all").alias("peer_group")

    def _shifted(self, exports: pl.DataFrame, scored: pl.DataFrame | None) -> pl.DataFrame:
        """The (period, peer group) pairs of the history in which the group shifted together (``scored``: its
        windows' scores), leaving out a group's shifts when they fill half its periods or more (then shifting is
        how that group works)."""
        keys = ["_period", "peer_group"]
        if scored is None:
            return pl.DataFrame(schema={"_period": exports.schema["timestamp"], "peer_group": pl.String})
        periods = (exports.select(self._period(), self._group()).unique().group_by("peer_group")
                   .agg(pl.len().alias("_periods")))
        return (scored.filter(pl.col("cohort") > 0).select(self._period("window_start"), "peer_group").unique()
                .join(periods, on="peer_group").filter(2 * pl.len().over("peer_group") < pl.col("_periods"))
                .select(keys).sort(keys))

    def _fit_baselines(self, exports: pl.DataFrame, volumes_by_window: dict[str, pl.DataFrame]) -> None:
        """Every baseline, from the exports and their volumes per window."""
        self.baselines_, self.counts_, self.sizes_, self.between_ = {}, {}, {}, {}
        for measure in MEASURES:
            self.sizes_[measure] = self._fit_sizes(exports.lazy(), measure)
        for window in self.windows:
            volumes = volumes_by_window[window]
            for measure in MEASURES:
                self.counts_[(measure, window)] = self._fit_counts(volumes, measure)
                self.between_[(measure, window)] = self._fit_between(volumes, measure)
                logs = volumes.filter(pl.col(measure) > 0).with_columns(pl.col(measure).log1p().alias("v"))
                robust = [pl.col("v").median().alias("loc"),
                          ((pl.col("v") - pl.col("v").median()).abs().median() * 1.4826).alias("scale"),
                          pl.len().alias("n")]
                self.baselines_[(measure, window)] = {
                    "users": logs.group_by("user_id").agg(robust),
                    "groups": logs.group_by("peer_group").agg(robust),
                    "overall": logs.select(robust).row(0, named=True) if logs.height else
                    {"loc": 8.0, "scale": 2.0, "n": 0},
                }

    def _fit_sizes(self, exports: pl.LazyFrame, measure: str) -> dict[str, Any]:
        """Location and scale of one export's log size, per user and per peer group."""
        v = (exports.filter(pl.col(measure) > 0)
             .with_columns(self._group(),
                           pl.col(measure).log1p().alias("v")).collect())
        robust = [pl.col("v").median().alias("s_loc"),
                  ((pl.col("v") - pl.col("v").median()).abs().median() * 1.4826).alias("s_scale"),
                  pl.len().alias("s_n")]
        return {"users": v.group_by("user_id").agg(robust),
                "groups": v.group_by("peer_group").agg(robust).rename(
                    {"s_loc": "gs_loc", "s_scale": "gs_scale", "s_n": "gs_n"}),
                "overall": v.select(robust).row(0, named=True) if v.height else {"s_loc": 8.0, "s_scale": 2.0,
                                                                                 "s_n": 0}}

    def _size_baseline(self, frame: pl.DataFrame, measure: str) -> tuple[np.ndarray, np.ndarray]:
        """Each row's user's location and scale of one export's log size, shrunk towards the peer group's."""
        base = self.sizes_[measure]
        joined = (frame.select("user_id", "peer_group").join(base["users"], on="user_id", how="left")
                  .join(base["groups"], on="peer_group", how="left"))
        overall = base["overall"]
        n = joined["s_n"].fill_null(0).to_numpy().astype(float)
        c = self.shrinkage
        g_loc = joined["gs_loc"].fill_null(overall["s_loc"]).to_numpy()
        g_scale = joined["gs_scale"].fill_null(overall["s_scale"] or 1.0).to_numpy()
        loc = (n * joined["s_loc"].fill_null(0.0).to_numpy() + c * g_loc) / (n + c)
        scale2 = (n * joined["s_scale"].fill_null(0.0).to_numpy() ** 2 + c * g_scale**2) / (n + c)
        return loc, np.maximum(np.sqrt(scale2), self.min_scale)

    def _fit_between(self, volumes: pl.DataFrame, measure: str) -> float:
        """How far a window's mean export size strays from its user's usual beyond sampling (a robust
        variance of the excess over windows with two or more exports); at least 0.1 in log units."""
        several = volumes.filter(pl.col(f"{measure}_k") >= 2)
        if several.height < 20:
            return 0.5
        loc, scale = self._size_baseline(several, measure)
        k = several[f"{measure}_k"].to_numpy().astype(float)
        d2 = (several[f"{measure}_mlog"].to_numpy() - loc) ** 2
        tau2 = float(np.median(d2)) / 0.455 - float(np.median(scale**2 / k))  # 0.455: median of chi-square(1)
        return float(np.sqrt(max(tau2, 0.01)))

    def _fit_counts(self, volumes: pl.DataFrame, measure: str) -> dict[str, Any]:
        """Exports beyond the first in a window with any: the mean per user and per peer group, and the
        negative binomial's dispersion around each user's mean (by moments)."""
        k = f"{measure}_k"
        active = volumes.filter(pl.col(k) > 0).with_columns((pl.col(k) - 1).cast(pl.Float64).alias("y"))
        users = active.group_by("user_id").agg(pl.col("y").mean().alias("c_mean"), pl.len().alias("c_n"))
        groups = active.group_by("peer_group").agg(pl.col("y").mean().alias("gc_mean"))
        fitted = {"users": users, "groups": groups, "overall": float(active["y"].mean() or 0.0), "inv_r": 1.0}
        if active.height >= 20:
            m = self._count_mean(active, fitted)
            y = active["y"].to_numpy()
            fitted["inv_r"] = float(np.clip(np.sum((y - m) ** 2 - m) / max(np.sum(m**2), 1e-9), 0.05, 5.0))
        return fitted

    def _count_mean(self, frame: pl.DataFrame, fitted: dict[str, Any]) -> np.ndarray:
        joined = (frame.select("user_id", "peer_group").join(fitted["users"], on="user_id", how="left")
                  .join(fitted["groups"], on="peer_group", how="left"))
        n = joined["c_n"].fill_null(0).to_numpy().astype(float)
        g = joined["gc_mean"].fill_null(fitted["overall"]).to_numpy()
        m = (n * joined["c_mean"].fill_null(0.0).to_numpy() + self.shrinkage * g) / (n + self.shrinkage)
        return np.maximum(m, self.min_count_mean)

    def _views(self, volumes: pl.DataFrame, measure: str, window: str) -> tuple[np.ndarray, ...]:
        """The number and the mean size of a window's exports, each against the user's usual, combined
        (Fisher; independent under normal behaviour): the p-value, the expected count and the size z."""
        fitted = self.counts_[(measure, window)]
        k = volumes[f"{measure}_k"].fill_null(0).to_numpy().astype(float)
        m = self._count_mean(volumes, fitted)
        r = 1.0 / fitted["inv_r"]
        p_count = np.where(k >= 2, stats.nbinom.sf(k - 2, r, r / (r + m)), 1.0)
        loc, scale = self._size_baseline(volumes, measure)
        tau = self.between_[(measure, window)]
        mlog = volumes[f"{measure}_mlog"].fill_null(0.0).to_numpy()
        z_size = np.where(k >= 1, (mlog - loc) / np.sqrt(scale**2 / np.maximum(k, 1.0) + tau**2), 0.0)
        p_size = np.where(k >= 1, stats.t.sf(z_size, self.df), 1.0)
        fisher = -2.0 * (np.log(np.clip(p_count, 1e-300, 1.0)) + np.log(np.clip(p_size, 1e-300, 1.0)))
        return stats.chi2.sf(fisher, 4), m + 1.0, z_size

    def _score(self, events: pl.LazyFrame) -> pl.DataFrame:
        return self._score_exports(self._exports(events))

    def _score_exports(self, exports: pl.LazyFrame,
                       volumes_by_window: dict[str, pl.DataFrame] | None = None) -> pl.DataFrame:
        """Every window's scores; ``volumes_by_window``: the windows' volumes when already summed."""
        parts = []
        sizes = self._export_sizes(exports)
        for window in self.windows:
            volumes = (volumes_by_window[window] if volumes_by_window is not None
                       else self._volumes(exports, window).collect())
            if volumes.is_empty():
                continue
            per_measure = []
            for measure in MEASURES:
                base = self.baselines_[(measure, window)]
                overall = base["overall"]
                frame = (volumes.join(base["users"], on="user_id", how="left")
                         .join(base["groups"].rename({"loc": "g_loc", "scale": "g_scale", "n": "g_n"}),
                               on="peer_group", how="left"))
                n = frame["n"].fill_null(0).to_numpy().astype(float)
                g_loc = frame["g_loc"].fill_null(overall["loc"]).to_numpy()
                g_scale = np.maximum(frame["g_scale"].fill_null(overall["scale"] or 1.0).to_numpy(), self.min_scale)
                u_loc = frame["loc"].fill_null(0.0).to_numpy()
                u_scale = frame["scale"].fill_null(0.0).to_numpy()
                c = self.shrinkage
                loc = (n * u_loc + c * g_loc) / (n + c)
                scale = np.maximum(np.sqrt((n * u_scale**2 + c * g_scale**2) / (n + c)), self.min_scale)
                value = np.log1p(frame[measure].to_numpy())
                z = (value - loc) / scale
                p_volume = np.where(frame[measure].to_numpy() > 0, stats.t.sf(z, self.df), 1.0)
                p_views, expected_k, z_own_size = self._views(volumes, measure, window)
                # Two looks at the window (its volume; its number and size of exports): the rarer, times two.
                p = np.minimum(2 * np.minimum(p_volume, p_views), 1.0)
                z_size = self._size_z(volumes, sizes, measure)
                per_measure.append((measure, p, loc, scale, z, g_loc, z_size, p_views, expected_k, z_own_size))
            best = np.argmin(np.stack([m[1] for m in per_measure]), axis=0)
            # The rarer measure of each window, and its baseline.
            _, p, loc, scale, z, peer, z_size, p_views, expected_k, z_own_size = (
                np.choose(best, [m[i] for m in per_measure]) for i in range(10))
            frame = volumes.with_columns(
                pl.lit("user").alias("entity_type"), pl.col("user_id").alias("entity_value"),
                pl.lit(window).alias("window"),
                pl.Series("measure", np.array(list(MEASURES))[best]),
                pl.Series("expected_log", loc), pl.Series("scale_log", scale), pl.Series("z", z),
                pl.Series("peer_log", peer), pl.Series("p_own", p), pl.Series("z_size", z_size),
                pl.Series("z_views", stats.norm.isf(np.clip(p_views, 1e-300, 1.0))),
                pl.Series("expected_exports", expected_k), pl.Series("z_export_size", z_own_size))
            frame = self._cohort(frame)
            # In a cohort shift a window must be rare for the member *and* among the peers who moved with them.
            moved = frame["cohort"].to_numpy() > 0
            # Normal tail: the moved peers' spread is measured in this very period, robustly (no extra heaviness).
            # Two views of the same peers, so a factor two: the window's volume among the moved windows, and the
            # size of its exports among the exports the peer group made in the same period (many exports each far
            # larger than the close's own is what taking data under cover of the close looks like).
            z_peer = np.maximum(frame["z_cohort"].fill_null(0.0).to_numpy(), frame["z_size"].to_numpy())
            p_cohort = np.minimum(2 * stats.norm.sf(z_peer), 1.0)
            p = np.where(moved, np.maximum(frame["p_own"].to_numpy(), p_cohort), frame["p_own"].to_numpy())
            parts.append(with_scores(frame, np.minimum(2 * p, 1.0)))
        return pl.concat(parts, how="diagonal_relaxed") if parts else _empty_scores()

    def _export_sizes(self, exports: pl.LazyFrame) -> dict[str, pl.DataFrame]:
        """Per measure, period and peer group: the typical size of one export, its spread between exports, and
        the spread between members beyond it (some people always export bigger files than others)."""
        out = {}
        base = exports.with_columns(self._group(), self._period())
        keys = ["_period", "peer_group"]
        for measure in MEASURES:
            v = base.filter(pl.col(measure) > 0).with_columns(pl.col(measure).log1p().alias("v"))
            mad = (pl.col("v") - pl.col("v").median()).abs().median() * 1.4826
            within = v.group_by(keys).agg(pl.col("v").median().alias("s_loc"), mad.alias("s_within"))
            members = (v.group_by(*keys, "user_id").agg(pl.col("v").median().alias("m"), pl.len().alias("k"))
                       .group_by(keys).agg(((pl.col("m") - pl.col("m").median()).abs().median() * 1.4826)
                                           .alias("s_members"), pl.col("k").median().alias("k_members"),
                                           pl.len().alias("n_members")))
            out[measure] = within.join(members, on=keys).collect()
        return out

    def _size_z(self, volumes: pl.DataFrame, sizes: dict[str, pl.DataFrame], measure: str) -> np.ndarray:
        """How far the mean size of a window's exports is above one export of its peer group in the period, in
        standard errors (``k`` exports: the between-export spread shrinks by sqrt(k), the between-member one
        does not). 0 where the group had fewer than ``min_cohort`` members exporting."""
        frame = (volumes.with_columns(self._period("window_start"))
                 .join(sizes[measure], on=["_period", "peer_group"], how="left"))
        known = (frame["s_loc"].is_not_null() & frame[f"{measure}_mlog"].is_not_null()
                 & (frame["n_members"].fill_null(0) >= self.min_cohort)).to_numpy()
        within = np.maximum(frame["s_within"].fill_null(1.0).to_numpy(), self.min_scale)
        k_members = np.maximum(frame["k_members"].fill_null(1.0).to_numpy(), 1.0)
        between2 = np.maximum(frame["s_members"].fill_null(0.0).to_numpy() ** 2 - within**2 / k_members, 0.0)
        k = np.maximum(frame[f"{measure}_k"].fill_null(0).to_numpy().astype(float), 1.0)
        z = (frame[f"{measure}_mlog"].fill_null(0.0).to_numpy() - frame["s_loc"].fill_null(0.0).to_numpy()
             ) / np.sqrt(within**2 / k + between2)
        return np.where(known, z, 0.0)

    def _cohort(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Peers in the same period: ``cohort`` (member windows that moved together, 0 when no cohort shift) and
        ``z_cohort`` (the window's log volume against the moved members' median and spread)."""
        expected_share = float(stats.t.sf(self.cohort_z, self.df) + stats.norm.sf(self.cohort_z))  # either view
        frame = frame.with_columns(self._period("window_start"),
                                   (pl.col("expected_log") + pl.col("z") * pl.col("scale_log")).alias("_log"))
        # A member moved when the window's volume, or its number and size of exports, is well above their own.
        up = (pl.col("z") > self.cohort_z) | (pl.col("z_views") > self.cohort_z)
        log_up = pl.col("_log").filter(up)
        # A shift is people moving together: ``min_cohort`` members at least, not one member's many windows (a
        # lone exfiltrator's afternoon of exports would otherwise make their own cover and be judged among itself).
        per = (frame.group_by("_period", "peer_group")
               .agg(pl.len().alias("_active"), up.sum().alias("cohort"), log_up.median().alias("cohort_log"),
                    pl.col("user_id").filter(up).n_unique().alias("_members"),
                    ((log_up - log_up.median()).abs().median() * 1.4826).alias("_spread"))
               .filter(pl.col("cohort") >= pl.max_horizontal(pl.lit(self.min_cohort),
                                                             3 * pl.col("_active") * expected_share + 2),
                       pl.col("_members") >= self.min_cohort)
               .select("_period", "peer_group", "cohort", "cohort_log",
                       pl.max_horizontal(pl.col("_spread"), pl.lit(self.min_scale)).alias("cohort_scale")))
        return (frame.join(per, on=["_period", "peer_group"], how="left")
                .with_columns(pl.col("cohort").fill_null(0),
                              ((pl.col("_log") - pl.col("cohort_log")) / pl.col("cohort_scale")).alias("z_cohort"))
                .drop("_period", "_log"))

    def _explain(self, row: dict[str, Any]) -> dict[str, Any]:
        measure = row["measure"]
        observed = row[measure]
        expected = float(np.expm1(row["expected_log"]))
        peer = float(np.expm1(row["peer_log"]))
        unit = "rows" if measure == "export_rows" else "bytes"
        return {
            "summary": f"{row['entity_value']} moved {observed:,.0f} {unit} in {row[f'{measure}_k']} export(s) in "
                       f"{row['window']} (typical ≈ {expected:,.0f} in ≈ {row['expected_exports']:.1f}; "
                       f"peers ≈ {peer:,.0f})",
            "observed": {measure: observed, "exports": row[f"{measure}_k"], "window": row["window"]},
            "expected": {measure: round(expected, 1), "log_scale": round(float(row["scale_log"]), 3),
                         "exports_in_a_window_with_any": round(float(row["expected_exports"]), 1)},
            "export_size_z": round(float(row["z_export_size"]), 2),
            "features": [{"name": measure, "value": observed, "contribution": 0.9},
                         {"name": "exports", "value": row["exports"], "contribution": 0.1}],
            "peers": {"group": row["peer_group"], f"typical_{measure}": round(peer, 1),
                      "times_peer_typical": round(observed / max(peer, 1.0), 1)},
            "z": round(float(row["z"]), 2),
            "cohort": {"member_windows_moved_together": int(row["cohort"]),
                       **({"typical_of_moved": round(float(np.expm1(row["cohort_log"])), 1),
                           "z_among_moved": round(float(row["z_cohort"]), 2)} if row["cohort"] else {})},
        }
