"""A labelled corpus of univariate series with anomalies, generated from a seed.

Independent of the public benchmark (our holdout): we never look at it. Series mix a level, daily and
weekly seasonality (when the sampling rate allows), trend, noise of several shapes (Gaussian,
heavy-tailed, autocorrelated, counts) and 0-3 anomalies: spikes, dips, level shifts, ramps (drift),
variance bursts, a lost daily pattern and flatlines. Each anomaly is labelled at its first point.

Two splits with different seeds *and* different parameter ranges: ``tune`` is the only one any
parameter of the detector was chosen on; ``report`` is what the README quotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

STEPS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1))
KINDS = ("spike", "dip", "shift", "ramp", "variance", "pattern_loss", "flatline")
T0 = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Ranges:
    """The parameter ranges of one split."""

    seeds: range
    length: tuple[int, int]
    spike: tuple[float, float]  # in noise standard deviations
    shift: tuple[float, float]
    ramp: tuple[float, float]
    variance: tuple[float, float]  # multiplier of the noise
    noise_mix: tuple[float, float, float, float]  # gaussian, student-t, AR(1), poisson
    benign_rate: float  # isolated 3-4 sigma blips that are *not* anomalies, per 1,000 points


SPLITS = {
    "tune": Ranges(seeds=range(0, 60), length=(1_000, 16_000), spike=(5.0, 12.0), shift=(3.0, 8.0),
                   ramp=(4.0, 10.0), variance=(3.0, 6.0), noise_mix=(0.4, 0.2, 0.2, 0.2), benign_rate=1.0),
    "report": Ranges(seeds=range(10_000, 10_060), length=(1_500, 20_000), spike=(4.0, 15.0), shift=(2.5, 10.0),
                     ramp=(3.0, 12.0), variance=(2.5, 8.0), noise_mix=(0.25, 0.3, 0.25, 0.2), benign_rate=2.0),
}


@dataclass(frozen=True)
class Series:
    """One labelled series: ``frame`` has ``timestamp, value``; ``anomalies`` are point indices."""

    name: str
    frame: pl.DataFrame
    anomalies: list[int]
    kinds: list[str]


def corpus(split: str) -> list[Series]:
    """Every series of a split, in seed order."""
    ranges = SPLITS[split]
    return [generate(seed, ranges) for seed in ranges.seeds]


def generate(seed: int, ranges: Ranges) -> Series:
    """One series from ``seed`` within ``ranges``."""
    rng = np.random.default_rng(seed)
    n = int(np.exp(rng.uniform(np.log(ranges.length[0]), np.log(ranges.length[1]))))
    step = STEPS[rng.integers(len(STEPS))]
    per_day = timedelta(days=1) / step
    t = np.arange(n)
    phase_day = 2 * np.pi * t / per_day
    level = rng.uniform(-50, 500) if rng.random() < 0.7 else rng.uniform(0, 5)
    sigma = abs(level) * rng.uniform(0.01, 0.1) + rng.uniform(0.1, 2.0)
    base = np.full(n, level, dtype=float)
    if rng.random() < 0.7:  # daily shape: a sine plus a harmonic (a working day)
        amp = sigma * rng.uniform(1, 15)
        base += amp * (np.sin(phase_day + rng.uniform(0, 2 * np.pi))
                       + rng.uniform(0, 0.6) * np.sin(2 * phase_day + rng.uniform(0, 2 * np.pi)))
        if rng.random() < 0.5:  # quieter weekends
            weekday = (t * step.total_seconds() // 86_400) % 7  # T0 is a Monday
            base -= np.where(weekday >= 5, amp * rng.uniform(0.3, 1.0), 0.0)
    if rng.random() < 0.3:
        base += np.linspace(0, sigma * rng.uniform(-20, 20), n)
    values = base + _noise(rng, n, sigma, ranges.noise_mix, base)
    blips = rng.random(n) < ranges.benign_rate / 1000
    values[blips] += rng.choice([-1, 1], size=blips.sum()) * rng.uniform(3, 4, size=blips.sum()) * sigma
    anomalies, kinds = [], []
    count = rng.choice([0, 1, 2, 2, 3, 3])
    if count:
        start = int(0.2 * n)
        slots = np.sort(rng.choice(np.arange(start, int(0.95 * n)), size=count, replace=False))
        for at in slots:
            if anomalies and at - anomalies[-1] < 0.08 * n:
                continue
            kind = KINDS[rng.integers(len(KINDS))]
            values = _inject(rng, kind, values, int(at), sigma, ranges, per_day, base)
            anomalies.append(int(at))
            kinds.append(kind)
    if rng.random() < 0.3:
        values = np.maximum(values, 0.0)
    frame = pl.DataFrame({"timestamp": pl.datetime_range(T0, T0 + (n - 1) * step, step, eager=True,
                                                         time_zone="UTC"), "value": values})
    return Series(name=f"s{seed}-{int(step.total_seconds() // 60)}m-{n}", frame=frame, anomalies=anomalies,
                  kinds=kinds)


def _noise(rng: np.random.Generator, n: int, sigma: float, mix: tuple[float, ...], base: np.ndarray) -> np.ndarray:
    kind = rng.choice(4, p=np.asarray(mix) / sum(mix))
    if kind == 0:
        return rng.normal(0, sigma, n)
    if kind == 1:
        return rng.standard_t(rng.uniform(2.5, 6), n) * sigma * 0.7
    if kind == 2:
        phi = rng.uniform(0.5, 0.95)
        e = rng.normal(0, sigma * np.sqrt(1 - phi * phi), n)
        out = np.empty(n)
        out[0] = e[0]
        for i in range(1, n):
            out[i] = phi * out[i - 1] + e[i]
        return out
    rate = np.maximum(base - base.min() + rng.uniform(0.5, 20), 0.1)
    return rng.poisson(rate) - rate


def _inject(rng: np.random.Generator, kind: str, values: np.ndarray, at: int, sigma: float, ranges: Ranges,
            per_day: float, base: np.ndarray) -> np.ndarray:
    values = values.copy()
    n = values.size
    sign = rng.choice([-1, 1])
    if kind == "spike":
        width = int(rng.integers(1, 4))
        values[at:at + width] += rng.uniform(*ranges.spike) * sigma * 1.5
    elif kind == "dip":
        width = int(rng.integers(1, 4))
        values[at:at + width] -= rng.uniform(*ranges.spike) * sigma * 1.5
    elif kind == "shift":
        values[at:] += sign * rng.uniform(*ranges.shift) * sigma
    elif kind == "ramp":
        length = int(rng.integers(20, max(21, n // 20)))
        ramp = np.minimum(np.arange(n - at) / length, 1.0) * sign * rng.uniform(*ranges.ramp) * sigma
        values[at:] += ramp
    elif kind == "variance":
        length = int(rng.integers(10, max(11, n // 30)))
        noise = rng.normal(0, sigma * rng.uniform(*ranges.variance), min(length, n - at))
        values[at:at + length] += noise
    elif kind == "pattern_loss":
        length = int(min(max(per_day, 30), n - at))
        values[at:at + length] = np.mean(base) + rng.normal(0, sigma, length) + sign * sigma * 2
    else:  # flatline: the sensor stops moving
        length = int(rng.integers(30, max(31, n // 15)))
        values[at:at + length] = values[at - 1]
    return values
