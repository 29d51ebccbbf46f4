"""Univariate series scored causally, with learned daily/weekly seasonality and level-shift recovery.

Each point is predicted only from the points before it by a small ensemble: the last value, the recent
median level, and (when the sampling rate gives a whole number of points per day or week) the same phase
of up to two earlier days or weeks, moved to today's level. The predictor with the lowest recent error
is trusted; its residual is scaled by the median of its own recent absolute residuals, so a level shift
alarms while the level catches up and then settles, and a regular daily or weekly cycle is predicted,
not flagged; the scale never drops below half the smallest change seen (values an exporter rounded) nor,
for counts, the Poisson noise of the level. Seven pieces of evidence are read from that, over several
horizons: the point's own residual, the mean of the last few (clipped) residuals, the count of 3-sigma
residuals over a longer stretch (a cluster), the median of the last values against a long baseline (drift,
a lost pattern), the median squared residual (a burst of variance), how far the value lies beyond every
value of its recent history (a new record: a dip to 0 in a series never near it, a count far above its
highest, whatever the scale of the residuals says), and a run of identical values (a stuck sensor).

Each is turned into a tail probability against the series' *own* history of that statistic (empirical,
with a generalised Pareto tail beyond it), so a 6-sigma point counts for more in quiet Gaussian noise
than in heavy-tailed noise where such points are routine; the smallest, with a Bonferroni factor, is the
point's p. A point already explained by a rarer recent one is discounted by it (one alarm per incident),
and each piece of evidence is first discounted by its own recent values, so what one statistic keeps
saying is told once. The score is ``-log10(p) / 10`` as everywhere (0.6 = one in a million), compressed smoothly above 0.9 so
it stays below 1 and extreme points still rank. The first ``min_periods`` points score 0: a cold start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from analytics import calibration
from analytics.detectors.series import SeriesScoring
from analytics.detectors.tails import tail_log10

DAY, WEEK = 86_400.0, 7 * 86_400.0


class SeasonalSeries(SeriesScoring, BaseEstimator):
    """Causal anomaly scores of a ``timestamp,value`` series, calibrated to [0, 1).

    Parameters
    ----------
    min_periods : int, default 60
        Cold start: the first points score 0 (an honest probation, nothing to compare with yet).
    level_window : int, default 12
        Preceding points whose median is the current level.
    scale_window : int, default 400
        Preceding residuals whose median absolute value is the scale.
    error_span : int, default 100
        Span of the exponentially weighted error that picks the predictor to trust.
    seasons : int, default 2
        Earlier days (or weeks) averaged by the seasonal predictors.
    short_window : int, default 6
        Points in the short mean of residuals (small persistent changes) and in the median squared
        residual (a burst of variance).
    change_window : int, default 10
        Points in the recent median compared with the longer baseline (drift, shifts, a lost pattern).
    baseline_window : int, default 1000
        Points in that baseline, and in the history that scales the comparison.
    tail_history : int, default 5000
        Earlier values of each statistic that calibrate its tail probability (the series' own noise).
    tail_shape : float, default 0.1
        Prior shape of the generalised Pareto tail beyond what history shows (0: exponential, 0.25: like a
        Student-t with 4 df).
    evidence_cap : float, default 8.0
        Largest ``-log10 p`` of the windowed statistics (only a single point's surprise is unbounded).
    refractory : int, default 100
        Points after a rare point during which later points are discounted by it (one alarm per incident).
    repeat_discount : float, default 1.0
        Fraction of the recent rarest ``-log10 p`` (beyond ``repeat_free``) taken off each point's own.
    repeat_free : float, default 2.5
        Recent rarity that costs nothing (a one-in-a-thousand point happens every thousand points).
    statistic_free : float, default 3.0
        The same for each statistic against its own recent values, before they are combined (0 turns the
        per-statistic discount off).
    scale_floor : float, default 0.0
        Smallest scale in value units (1.0 suits counts: one event more is not news).
    relative_floor : float, default 1e-3
        Smallest scale as a fraction of the series' recent spread, so a noiseless series is not infinitely sure.
    count_floor : float, default 1.0
        While every value so far is a whole number >= 0 (a count), the smallest scale is this times
        ``sqrt(level + 1)``, the Poisson noise of the level (0 turns it off).
    quantum_floor : float, default 0.5
        The smallest scale is at least this times the smallest change seen so far, so values an exporter
        rounded (a CPU percentage to 0.1, a latency to whole milliseconds) do not alarm at one rounding step.
    cluster_window : int, default 60
        Points over which 3-sigma residuals are counted: a cluster of modest spikes is one piece of evidence.

    Attributes
    ----------
    periods_ : tuple of int
        Seasonal periods in points learned from the timestamps (daily, weekly), possibly empty.
    step_ : float
        Sampling interval in seconds (0 when the timestamps are irregular or too few).
    version_ : str
        Identifies the fitted parameters.
    """

    name = "univariate_series"
    version = "4"
    threshold = calibration.ANOMALY_SCORE

    def __init__(self, *, min_periods: int = 60, level_window: int = 12, scale_window: int = 400,
                 error_span: int = 100, seasons: int = 2, short_window: int = 6, change_window: int = 10,
                 baseline_window: int = 1000, tail_history: int = 5000, tail_shape: float = 0.1,
                 evidence_cap: float = 8.0, refractory: int = 100, repeat_discount: float = 1.0,
                 repeat_free: float = 2.5, statistic_free: float = 3.0,
                 scale_floor: float = 0.0, relative_floor: float = 1e-3, count_floor: float = 1.0,
                 quantum_floor: float = 0.5, cluster_window: int = 60) -> None:
        self.min_periods = min_periods
        self.level_window = level_window
        self.scale_window = scale_window
        self.error_span = error_span
        self.seasons = seasons
        self.short_window = short_window
        self.change_window = change_window
        self.baseline_window = baseline_window
        self.tail_history = tail_history
        self.tail_shape = tail_shape
        self.evidence_cap = evidence_cap
        self.refractory = refractory
        self.repeat_discount = repeat_discount
        self.repeat_free = repeat_free
        self.statistic_free = statistic_free
        self.scale_floor = scale_floor
        self.relative_floor = relative_floor
        self.count_floor = count_floor
        self.quantum_floor = quantum_floor
        self.cluster_window = cluster_window

    def fit(self, X: pl.DataFrame, y: Any = None) -> SeasonalSeries:
        """Learn the sampling interval and the seasonal periods it allows; returns ``self``.

        Only the timestamps are used: everything about the values is learned online while scoring, so
        a fit on an empty or short history is valid (then the periods come from the scored frame).
        """
        _check(X)
        self.step_ = _step(X["timestamp"]) if X.height >= 3 else 0.0
        self.periods_ = _periods(self.step_)
        self.version_ = (f"{self.name}-v{self.version}-p{'.'.join(map(str, self.periods_)) or 0}"
                         f"-l{self.level_window}-s{self.scale_window}-t{self.tail_shape:g}")
        return self

    def score_frame(self, X: pl.DataFrame, *, start: datetime | None = None) -> pl.DataFrame:
        """``timestamp, value, expected, scale, z, p_value, anomaly_score``, each point from the points before it."""
        check_is_fitted(self, "version_")
        _check(X)
        frame = X.select("timestamp", pl.col("value").cast(pl.Float64).fill_null(strategy="forward")
                         .fill_null(0.0))
        step = self.step_ or (_step(frame["timestamp"]) if frame.height >= 3 else 0.0)
        periods = self.periods_ or _periods(step)
        slots = np.arange(frame.height)
        if periods and frame.height:  # positions on the regular grid: a lag of a day stays a day across gaps
            since = (frame["timestamp"] - frame["timestamp"][0]).dt.total_microseconds().to_numpy() / 1e6
            slots = np.round(_grid_phase(since, step)).astype(np.int64)
            slots -= slots[0]
            if slots[-1] > 10 * frame.height:
                periods = ()
        expected, scale, log10_p, z = self._score(frame["value"].to_numpy(), periods, slots)
        out = frame.with_columns(pl.Series("expected", expected), pl.Series("scale", scale), pl.Series("z", z),
                                 pl.Series("p_value", np.power(10.0, log10_p)),
                                 pl.Series("anomaly_score", score_from_log10_p(log10_p)))
        return out.filter(pl.col("timestamp") >= start.astimezone(UTC)) if start is not None else out

    def _score(self, x: np.ndarray, periods: tuple[int, ...], slots: np.ndarray) -> tuple[np.ndarray, ...]:
        n = x.size
        series = pl.Series(x)
        prior = series.shift(1)
        level = prior.rolling_median(self.level_window, min_samples=self.level_window).to_numpy()
        candidates = [prior.to_numpy(), level]
        for period in periods:
            candidates.append(_seasonal(x, level, slots, period, self.seasons))
        spread = (prior.rolling_quantile(0.75, window_size=self.scale_window, min_samples=2)
                  - prior.rolling_quantile(0.25, window_size=self.scale_window, min_samples=2)).to_numpy()
        floor = np.maximum(self.scale_floor, self.relative_floor * np.nan_to_num(spread, nan=0.0))
        floor = np.maximum(floor, 1e-9 * np.maximum(np.abs(np.nan_to_num(level, nan=0.0)), 1.0))
        # Counts (every earlier value a whole number >= 0): one event more is not news, and the noise of a
        # count grows like the square root of its level (Poisson), however often it sat at exactly 0.
        odd = np.cumsum((x != np.round(x)) | (x < 0))
        counts = np.r_[True, odd[:-1] == 0]
        poisson = self.count_floor * np.sqrt(np.maximum(np.nan_to_num(level, nan=0.0), 0.0) + 1.0)
        floor = np.where(counts, np.maximum(floor, poisson), floor)
        # Values an exporter rounded: a change of one step of that rounding is not news. The step is the
        # smallest change seen so far (tiny and harmless for values that were never rounded).
        steps = np.abs(np.diff(x))
        smallest = np.minimum.accumulate(np.where(steps > 0, steps, np.inf))
        quantum = np.r_[np.inf, np.inf, smallest[:-1]][:n]
        floor = np.maximum(floor, self.quantum_floor * np.where(np.isfinite(quantum), quantum, 0.0))
        if len(candidates) > 2:  # the predictors blended by their recent accuracy, as one more predictor
            stack = np.vstack(candidates)
            err = np.vstack([_ew_mean_before(np.abs(x - c), self.error_span) for c in candidates])
            weight = np.where(np.isnan(stack) | np.isnan(err), 0.0, 1.0 / (np.nan_to_num(err) + 1e-9) ** 2)
            with np.errstate(invalid="ignore", divide="ignore"):
                candidates.append(np.where(weight.sum(axis=0) > 0, (weight * np.nan_to_num(stack)).sum(axis=0)
                                           / weight.sum(axis=0), np.nan))
        residuals = np.vstack([x - c for c in candidates])
        errors = np.vstack([_ew_mean_before(np.abs(r), self.error_span) for r in residuals])
        scales = np.vstack([_scale_before(r, self.scale_window) for r in residuals])
        errors = np.where(np.isnan(errors) | np.isnan(scales) | np.isnan(residuals), np.inf, errors)
        pick = np.argmin(errors, axis=0)
        cols = np.arange(n)
        residual = residuals[pick, cols]
        scale = np.maximum(np.nan_to_num(scales[pick, cols], nan=0.0), floor)
        z = np.nan_to_num(residual / scale, nan=0.0)
        short_z = _windowed_z(pl.Series(np.clip(z, -3.0, 3.0)).rolling_mean(self.short_window, min_samples=1)
                              .to_numpy(), self.scale_window, 1.0 / np.sqrt(self.short_window))
        # Slow change: the recent median of the deseasonalised values against their own longer history.
        offset = np.zeros(n)
        for row in range(2, len(candidates)):
            better = (errors[row] < errors[1]) & (errors[row] <= np.min(errors[2:], axis=0))
            offset = np.where(better, candidates[row] - level, offset)
        flat = pl.Series(x - offset)
        recent = flat.rolling_median(self.change_window, min_samples=1)  # a median: a spike is not a change
        baseline = flat.shift(self.change_window).rolling_median(self.baseline_window, min_samples=8)
        change_z = _windowed_z((recent - baseline).to_numpy(), self.baseline_window,
                               scale / np.sqrt(self.change_window))
        burst = _windowed_z(np.log(pl.Series(z * z).rolling_median(self.short_window, min_samples=1).to_numpy() + 0.1),
                            self.scale_window, 0.5)
        # A longer horizon: how many 3-sigma points the last ``cluster_window`` held (a cluster of modest spikes,
        # a flapping service), against how many such windows usually hold.
        many = pl.Series((np.abs(z) > 3.0).astype(float)).rolling_sum(self.cluster_window, min_samples=1).to_numpy()
        stats_ = (z, short_z, change_z, np.maximum(burst, 0.0), _windowed_z(many, self.baseline_window, 1.0),
                  _beyond_range(x, self.tail_history, floor))
        cold_ = cols < self.min_periods
        parts = [tail_log10(np.where(cold_, np.nan, stat), self.tail_history, self.tail_shape) for stat in stats_]
        # A run is one piece of news, told once when it is conclusive: evidence that grew a little with every
        # repeated value would slip under the repeat discount at every step and never rank.
        # Only runs that start after a whole day has been seen, when the series has a day: the first night is
        # not a stuck sensor.
        run_start = np.maximum.accumulate(np.where(np.r_[True, x[1:] != x[:-1]], slots, 0))
        stuck = np.where(run_start < max(periods[:1], default=0), 0.0, _stuck_log10(x))
        parts.append(np.where(stuck <= -self.evidence_cap, -self.evidence_cap, 0.0))
        # Slow evidence saturates, so a shift already flagged does not escalate into a run of alarms.
        parts = [parts[0]] + [np.maximum(part, -self.evidence_cap) for part in parts[1:]]
        if self.refractory > 0 and self.statistic_free > 0:  # what one statistic keeps saying is told once
            parts = [_discounted(np.where(cold_, 0.0, part), self.refractory, self.statistic_free, 1.0)
                     for part in parts]
        log10_p = np.minimum.reduce(parts) + np.log10(len(parts))
        log10_p = np.minimum(log10_p, 0.0)
        log10_p[cold_] = 0.0
        if self.refractory > 0:  # a point already explained by a rarer recent one is less news
            log10_p = _discounted(log10_p, self.refractory, self.repeat_free, self.repeat_discount)
        z[cold_] = 0.0
        expected = x - residual
        return expected, scale, log10_p, z


def _discounted(log10_p: np.ndarray, window: int, free: float, share: float) -> np.ndarray:
    """Each point's ``log10 p`` less ``share`` of the rarest of the ``window`` points before it beyond ``free``."""
    recent = pl.Series(-log10_p).shift(1).rolling_max(window, min_samples=1).fill_null(0.0).to_numpy()
    return np.minimum(log10_p + share * np.maximum(recent - free, 0.0), 0.0)


def _beyond_range(x: np.ndarray, window: int, floor: np.ndarray) -> np.ndarray:
    """How far each value lies outside the range of the ``window`` values before it, in interquartile ranges
    of those values (0 inside the range): a new record, whatever the residuals' scale says. Its tail is then
    judged like every statistic against the series' own history of it, so a trending series, whose records
    are routine, does not alarm on each one."""
    prior = pl.Series(x).shift(1)
    high = prior.rolling_max(window, min_samples=1).to_numpy()
    low = prior.rolling_min(window, min_samples=1).to_numpy()
    iqr = (prior.rolling_quantile(0.75, window_size=window, min_samples=8)
           - prior.rolling_quantile(0.25, window_size=window, min_samples=8)).to_numpy()
    unit = np.maximum(iqr, np.maximum(floor, 1e-12))  # NaN (0 out) until the quartiles are known
    return np.nan_to_num(np.maximum(np.maximum(x - high, low - x), 0.0) / unit, nan=0.0)


def score_from_log10_p(log10_p: np.ndarray) -> np.ndarray:
    """``-log10(p) / 10``, identical up to 0.9, then compressed towards 1 without reaching it (no ties at the top)."""
    raw = np.maximum(-np.asarray(log10_p, dtype=float) / 10.0, 0.0)
    # Logarithmic beyond 0.9 (slope 1 there): p = 1e-10 scores 0.94, 1e-300 0.985, and 1e-(10^12)
    # still stays visibly below 1 at nine decimals.
    return np.where(raw <= 0.9, raw, 1.0 - 0.1 / (1.0 + np.log1p(np.maximum(raw - 0.9, 0.0) / 0.1)))


def _seasonal(x: np.ndarray, level: np.ndarray, slots: np.ndarray, period: int, seasons: int) -> np.ndarray:
    """The same phase of up to ``seasons`` earlier periods, each moved by how much the level has changed since.

    ``slots`` are the points' positions on the regular sampling grid, so missing points do not shift phases.
    """
    grid = np.full(int(slots[-1]) + 1, np.nan)
    grid[slots] = x - level
    total = np.zeros(x.size)
    count = np.zeros(x.size)
    for k in range(1, seasons + 1):
        lagged = slots - k * period
        past = np.full(x.size, np.nan)
        ok = lagged >= 0
        past[ok] = grid[lagged[ok]]
        seen = ~np.isnan(past)
        total[seen] += past[seen]
        count[seen] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, level + total / count, np.nan)


def _stuck_log10(x: np.ndarray, slack: float = 1.5) -> np.ndarray:
    """log10 of the chance of the current run of repeated values, beyond the runs of that value seen before.

    A value the series often sits at (a count at 0 overnight, a metric clipped at 0) has long runs as a
    matter of course: such a run is news only past ``slack`` times the longest earlier run of the same
    value, by how often runs went on rather than ended. A run at a value never repeated before (a sensor
    stuck mid-range) is news at once.
    """
    same = np.zeros(x.size, dtype=bool)
    same[1:] = x[1:] == x[:-1]
    pairs = np.arange(x.size)
    run_id = np.cumsum(~same)
    start = np.flatnonzero(~same)
    run = pairs - start[run_id - 1]
    repeats = np.concatenate([[0], np.cumsum(same)[:-1]])
    rate = (repeats + 1.0) / (repeats + run_id + 2.0)  # a run went on rather than ended, smoothed
    lengths = np.r_[start[1:] - 1, x.size - 1] - start
    longest: dict[float, int] = {}
    before = np.zeros(start.size)
    for j, (value, length) in enumerate(zip(x[start].tolist(), lengths.tolist(), strict=True)):
        before[j] = longest.get(value, 0)
        longest[value] = max(longest.get(value, 0), length)
    beyond = np.maximum(run - slack * before[run_id - 1], 0.0)
    return np.where(same, beyond * np.log10(rate), 0.0)


def _windowed_z(stat: np.ndarray, window: int, min_scale: float | np.ndarray) -> np.ndarray:
    """How far a statistic is from its own preceding ``window`` values, in robust standard deviations."""
    prior = pl.Series(stat).fill_nan(None).shift(1)
    centre = prior.rolling_median(window, min_samples=8).to_numpy()
    spread = (prior.rolling_quantile(0.75, window_size=window, min_samples=8)
              - prior.rolling_quantile(0.25, window_size=window, min_samples=8)).to_numpy() / 1.349
    scale = np.fmax(spread, np.maximum(min_scale, 1e-12))
    return np.nan_to_num((stat - centre) / scale, nan=0.0, posinf=0.0, neginf=0.0)


def _scale_before(residual: np.ndarray, window: int) -> np.ndarray:
    """Robust scale of the residuals before each point: the larger of a long and a short median.

    The long median is not moved by anomalies; the short one lets the scale recover within a few
    points when a quiet stretch (a flatline) ends, instead of screaming for half a long window.
    """
    prior = pl.Series(np.abs(residual)).fill_nan(None).shift(1)
    long = prior.rolling_median(window, min_samples=8).to_numpy() * 1.4826
    short = prior.rolling_median(16, min_samples=8).to_numpy() * 1.4826
    # When most residuals are exactly 0 (sparse counts) the median says nothing: fall back on the mean.
    mean = prior.rolling_mean(window, min_samples=8).to_numpy() * 0.5
    # A long quiet stretch (a stuck sensor) must not shrink the scale to nothing: keep a quarter of the old one.
    memory = pl.Series(long).fill_nan(None).rolling_median(5 * window, min_samples=1).to_numpy() * 0.25
    return np.fmax(np.fmax(np.fmax(long, short), mean), memory)


def _ew_mean_before(values: np.ndarray, span: int) -> np.ndarray:
    """Exponentially weighted mean of the values strictly before each point (NaN before the first)."""
    mean = pl.Series(values).fill_nan(None).ewm_mean(span=span, adjust=True, ignore_nulls=True).to_numpy()
    out = np.full(values.size, np.nan)
    out[1:] = mean[:-1]
    return out


def _step(timestamps: pl.Series) -> float:
    """The sampling interval in seconds, or 0 when the series is irregular (then no seasonality).

    Gaps are fine, and so is a collector that does not tick on the dot: when the points sit within 40 %
    of a step of a regular grid whose step divides a day, that grid is the sampling interval.
    """
    diffs = timestamps.diff().dt.total_microseconds().drop_nulls().to_numpy() / 1e6
    diffs = diffs[diffs > 0]
    if not diffs.size:
        return 0.0
    median = float(np.median(diffs))
    since = (timestamps - timestamps[0]).dt.total_microseconds().to_numpy() / 1e6
    candidates = [(median, 1e-3)]
    if median < DAY:  # the median of jittered intervals is near the step, not on it
        per_day = round(DAY / median)
        candidates += [(DAY / k, 0.4) for k in (per_day, per_day - 1, per_day + 1) if k > 0]
    for step, tolerance in candidates:
        phase = _grid_phase(since, step)
        if np.mean(np.abs(phase - np.round(phase)) <= tolerance) >= 0.9:
            return step
    return 0.0


def _grid_phase(since: np.ndarray, step: float) -> np.ndarray:
    """Positions in steps on the regular grid that fits the points best (the first point may be late)."""
    phase = since / step
    offset = np.angle(np.mean(np.exp(2j * np.pi * phase))) / (2 * np.pi)
    return phase - offset


def _periods(step: float) -> tuple[int, ...]:
    """Points per day and per week when the sampling interval divides them (hour-of-day, day-of-week)."""
    if step <= 0 or step > DAY / 4:
        return ()
    found = []
    for span in (DAY, WEEK):
        period = span / step
        if abs(period - round(period)) < 1e-6 * period:
            found.append(int(round(period)))
    return tuple(found)


def _check(X: pl.DataFrame) -> None:
    if "value" not in X.columns or "timestamp" not in X.columns:
        raise ValueError("a series frame needs `timestamp` and `value` columns")
