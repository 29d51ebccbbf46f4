"""Tail probabilities of a statistic against its own earlier values: empirical inside the sample, a
generalised Pareto tail beyond it (the series detector's calibration)."""

from __future__ import annotations

import numpy as np

_PRIOR_WEIGHT = 10.0  # pseudo-exceedances behind the prior tail shape


def tail_log10(stat: np.ndarray, history: int, prior_shape: float, block: int = 64) -> np.ndarray:
    """log10 of P(|stat| >= |value|) under the series' own earlier values of the statistic.

    Causal by blocks: each block of points is judged against the ``history`` values before it. Inside the
    sample the tail is empirical; beyond its top 5 % a generalised Pareto tail (probability-weighted
    moments, the shape shrunk towards ``prior_shape``) extrapolates, so an 8-sigma spike in Gaussian noise
    is far rarer than the same spike in heavy-tailed noise where 8-sigma points are routine.
    """
    a = np.abs(np.nan_to_num(stat, nan=np.nan, posinf=0.0, neginf=0.0))  # NaN: not judged, not history
    out = np.zeros(a.size)
    lo = 0
    while lo < a.size:
        step = block if lo >= 8 * block else 8  # short blocks early, so a short series is judged soon
        past = a[max(0, lo - history):lo]
        past = np.sort(past[~np.isnan(past)])
        if past.size < 20:
            lo += step
            continue
        m = past.size
        u = max(float(past[-max(int(0.05 * m), 5) - 1]), 1.0)
        excess = past[past > u] - u
        shape, scale = gpd(excess, prior_shape)
        v = a[lo:lo + step]
        empirical = np.log10((m - np.searchsorted(past, v, side="left") + 1) / (m + 1))
        over = np.maximum(v - u, 0.0)
        if abs(shape) < 1e-6:
            log_sf = -over / scale
        else:
            log_sf = -np.log(np.maximum(1.0 + shape * over / scale, 1e-300)) / shape
        tail = np.log10((excess.size + 1) / (m + 1)) + log_sf / np.log(10.0)
        out[lo:lo + step] = np.nan_to_num(np.where(v > u, np.minimum(empirical, tail), empirical), nan=0.0)
        lo += step
    return out


def gpd(excess: np.ndarray, prior_shape: float) -> tuple[float, float]:
    """Shape and scale of a generalised Pareto fit to threshold excesses (Hosking-Wallis moments, shrunk)."""
    k = excess.size
    if k < 3:
        return prior_shape, 1.0
    x = np.sort(excess)
    a0 = float(x.mean())
    a1 = float(np.mean((1.0 - (np.arange(1, k + 1) - 0.35) / k) * x))
    if a0 <= 0 or a0 - 2 * a1 <= 0:
        return prior_shape, max(a0, 1e-3)
    raw = 2.0 - a0 / (a0 - 2 * a1)
    shape = float(np.clip((k * raw + _PRIOR_WEIGHT * prior_shape) / (k + _PRIOR_WEIGHT), 0.0, 0.6))
    if raw < 0:  # nearly equal excesses (a rounded statistic) suggest a bounded tail, which is not used:
        # the moment scale of that bounded fit is huge and would call a 60-sigma point ordinary, so take
        # the scale that keeps the mean excess under the shape actually used.
        return shape, max(a0 * (1.0 - shape), 1e-3)
    return shape, max(2 * a0 * a1 / (a0 - 2 * a1), 1e-3)
