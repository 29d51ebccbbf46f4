"""A labelled corpus of univariate series with anomalies, generated from a seed.

Independent of the public benchmark (our holdout): we never look at it. Two families of series:

- **metrics** (latency, CPU, temperature): a level that wanders, daily seasonality with a harmonic
  (several seasonalities at once) and a day-of-week profile when the sampling rate allows, trend, noise of
  several shapes (Gaussian, heavy-tailed Student-t, autocorrelated AR(1), Poisson-like);
- **counts** (events per bucket): Poisson draws from a rate with a daily and weekly profile, often low
  enough that most buckets are 0.

Metrics come in the shapes operations teams watch: a generic gauge, **latency** (log-normal: multiplicative,
right-skewed noise), **CPU** (a percentage, quantised, that saturates at 100), **request rates** (large
overdispersed counts with a strong daily and weekly rhythm) and **noisy plateaus** (a gauge that moves between
a few recurring levels at irregular times, like an autoscaled pool: benign once each level has been seen).
A third family, **schedule** (20 more series per split, their own seeds): an on/off load that switches up at
about the same time every day and back down (business hours, a batch window, weekdays only in some), a few
points earlier or later each day; a switch at the usual time is routine however large the step. Its
anomalies: switched on at an unusual time, a day's window skipped, stuck half-way for a day, switched off
early, a spike.

Then what real collection and real systems do to a series: benign 3-4 sigma blips, a nightly job's spike at
the same time every day, values quantised by the exporter, isolated missing points and missing stretches, and
jittered (irregular) timestamps. 0-3 anomalies each: spikes, dips, clustered spikes, level shifts that persist
(labelled only at the shift), ramps (drift), variance bursts and persistent changes of variance, latency
bursts, a lost daily pattern, flatlines, an exporter that reads 0, a pinned CPU, and outages (a count drops
to 0). Each anomaly is labelled at its first point.

Two splits with different seeds *and* different parameter ranges: ``tune`` is the only one any
parameter of the detector was chosen on; ``report`` is what the README quotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

STEPS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=30),
         timedelta(hours=1))
KINDS = ("spike", "dip", "cluster", "shift", "ramp", "variance", "variance_shift", "pattern_loss", "flatline",
         "burst", "zero")
FLAVOURS = ("gauge", "latency", "cpu", "requests", "plateau")
COUNT_KINDS = ("spike", "cluster", "shift", "drop", "outage", "pattern_loss")
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
    counts: float  # share of count series
    missing: float  # chance of missing points and stretches
    irregular: float  # chance of jittered timestamps (as a fraction of the step, up to)
    jitter: float
    flavours: tuple[float, float, float, float, float]  # gauge, latency, cpu, requests, plateau
    nightly: float  # chance of a benign spike at the same time every day
    quantised: float  # chance that an exporter rounds a metric
    schedules: range = range(0)  # seeds of on/off loads (``schedule``), after the others
    switch_jitter: int = 2  # up to this many steps, a load switches on or off earlier or later than usual

SPLITS = {
    "tune": Ranges(seeds=range(0, 80), length=(1_000, 16_000), spike=(5.0, 12.0), shift=(3.0, 8.0),
                   ramp=(4.0, 10.0), variance=(3.0, 6.0), noise_mix=(0.4, 0.2, 0.2, 0.2), benign_rate=1.0,
                   counts=0.25, missing=0.3, irregular=0.2, jitter=0.2,
                   flavours=(0.4, 0.15, 0.15, 0.15, 0.15), nightly=0.15, quantised=0.25,
                   schedules=range(500, 520), switch_jitter=2),
    "report": Ranges(seeds=range(10_000, 10_080), length=(1_500, 20_000), spike=(4.0, 15.0), shift=(2.5, 10.0),
                     ramp=(3.0, 12.0), variance=(2.5, 8.0), noise_mix=(0.25, 0.3, 0.25, 0.2), benign_rate=2.0,
                     counts=0.3, missing=0.4, irregular=0.25, jitter=0.35,
                     flavours=(0.3, 0.2, 0.2, 0.15, 0.15), nightly=0.25, quantised=0.35,
                     schedules=range(20_500, 20_520), switch_jitter=4),
}


@dataclass(frozen=True)
class Series:
    """One labelled series: ``frame`` has ``timestamp, value``; ``anomalies`` are point indices."""

    name: str
    frame: pl.DataFrame
    anomalies: list[int]
    kinds: list[str]
    family: str  # counts, or the flavour of a metric (gauge, latency, cpu, requests, plateau)


def corpus(split: str) -> list[Series]:
    """Every series of a split, in seed order."""
    ranges = SPLITS[split]
    return [generate(seed, ranges) for seed in ranges.seeds] + [schedule(seed, ranges) for seed in ranges.schedules]


SCHEDULE_KINDS = ("wrong_on", "skipped", "stuck_mid", "early_off", "spike")


def schedule(seed: int, ranges: Ranges) -> Series:
    """An on/off load: a level that switches up at about the same time every day (business hours, a batch
    window, on weekdays only in some) and back down, with day-to-day jitter in the switch times. Anomalies:
    switched on at an unusual time, a day's window skipped, stuck half-way for a day, switched off early, a
    spike. A switch at the usual time is routine however large the step."""
    rng = np.random.default_rng(seed)
    step = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=10))[rng.integers(3)]
    per_day = int(timedelta(days=1) / step)
    n = int(rng.uniform(7, 21) * per_day) if per_day < 1000 else int(rng.uniform(5, 12) * per_day)
    n = min(n, ranges.length[1])
    start, duration = int(rng.integers(0, per_day)), int(rng.uniform(0.2, 0.6) * per_day)
    weekdays_only = rng.random() < 0.3
    low = rng.uniform(0, 50)
    sigma = rng.uniform(0.5, 3.0)
    high = low + rng.uniform(8, 40) * sigma
    edge = int(rng.integers(0, 4))  # steps a switch takes
    on = np.zeros(n)
    days = n // per_day + 2
    for day in range(-1, days):
        if weekdays_only and (day % 7) >= 5:  # T0 is a Monday
            continue
        lo = day * per_day + start + int(rng.integers(-ranges.switch_jitter, ranges.switch_jitter + 1))
        hi = lo + duration + int(rng.integers(-ranges.switch_jitter, ranges.switch_jitter + 1))
        for k in range(max(lo, 0), min(hi + edge, n)):
            rise = 1.0 if edge == 0 else min((k - lo + 1) / (edge + 1), 1.0)
            fall = 1.0 if edge == 0 else min((hi + edge - k) / (edge + 1), 1.0)
            on[k] = max(on[k], min(rise, fall)) if k >= lo else on[k]
    anomalies, kinds = [], []
    for at in _slots(rng, n):
        kind = SCHEDULE_KINDS[rng.integers(len(SCHEDULE_KINDS))]
        day = at // per_day
        window = day * per_day + start
        if kind == "wrong_on":  # on, in what is usually an off stretch
            margin = 2 * ranges.switch_jitter + edge + 3  # clear of the usual switches
            near = np.convolve(on > 0, np.ones(2 * margin + 1), mode="same") > 0
            off = [k for k in range(at, min(at + per_day, n)) if not near[k]]
            if not off:
                continue
            at = off[int(rng.integers(0, max(1, len(off) // 2)))]
            length = max(3, min(int(rng.uniform(0.05, 0.2) * per_day), int(np.argmax(near[at:])) - margin
                                if near[at:].any() else n - at))
            on[at:at + length] = np.where(on[at:at + length] == 0, 1.0, on[at:at + length])
        elif kind in ("skipped", "stuck_mid", "early_off"):
            if window < at:
                window += per_day
            if window + duration >= n or on[window + ranges.switch_jitter + edge + 1] == 0:
                continue  # no window expected there (a weekend), or past the end
            if kind == "skipped":
                at = window + ranges.switch_jitter + edge + 1  # when it should have been on by now
                on[window - ranges.switch_jitter - 1:window + duration + ranges.switch_jitter + edge + 1] = 0.0
            elif kind == "stuck_mid":
                at = window + duration // 3
                on[at:at + per_day] = 0.5
            else:
                at = window + int(rng.uniform(0.3, 0.7) * duration)
                on[at:window + duration + ranges.switch_jitter + edge + 1] = 0.0
        else:
            at = int(at)
        anomalies.append(int(at))
        kinds.append(kind)
    values = low + (high - low) * on
    if rng.random() < 0.5:
        values = values + rng.normal(0, sigma, n)
    else:  # multiplicative
        values = values * np.exp(rng.normal(0, sigma / max(high, 1.0), n))
    blips = rng.random(n) < ranges.benign_rate / 1000
    values[blips] += rng.choice([-1, 1], size=blips.sum()) * rng.uniform(3, 4, size=blips.sum()) * sigma
    for at, kind in zip(anomalies, kinds, strict=True):
        if kind == "spike":
            values[at:at + int(rng.integers(1, 4))] += rng.uniform(*ranges.spike) * sigma * 1.5
    values = np.maximum(values, 0.0)
    stamps = [T0 + step * k for k in range(n)]
    frame = pl.DataFrame({"timestamp": pl.Series(stamps, dtype=pl.Datetime("us", "UTC")), "value": values})
    order = np.argsort(anomalies, kind="stable")
    return Series(name=f"sched{seed}-{int(step.total_seconds() // 60)}m-{n}", frame=frame,
                  anomalies=[anomalies[k] for k in order], kinds=[kinds[k] for k in order], family="schedule")


def generate(seed: int, ranges: Ranges) -> Series:
    """One series from ``seed`` within ``ranges``."""
    rng = np.random.default_rng(seed)
    n = int(np.exp(rng.uniform(np.log(ranges.length[0]), np.log(ranges.length[1]))))
    step = STEPS[rng.integers(len(STEPS))]
    per_day = timedelta(days=1) / step
    profile = _profile(rng, n, step)
    if rng.random() < ranges.counts:
        values, anomalies, kinds = _counts(rng, n, per_day, profile, ranges)
        family = "counts"
    else:
        values, anomalies, kinds, family = _metric(rng, n, per_day, profile, ranges)
    seconds = np.arange(n) * step.total_seconds()
    if rng.random() < ranges.irregular:  # a collector that does not tick on the dot
        seconds = seconds + rng.uniform(-ranges.jitter, ranges.jitter, n) * step.total_seconds()
    keep = np.ones(n, dtype=bool)
    if rng.random() < ranges.missing:
        keep &= rng.random(n) > rng.uniform(0.0, 0.03)  # isolated lost points
        for _ in range(int(rng.integers(1, 4))):  # outages of the collector
            lo = int(rng.integers(0, n))
            keep[lo:lo + int(rng.integers(5, max(6, n // 60)))] = False
    keep[anomalies] = True  # a label stays on its point
    index = np.cumsum(keep) - 1
    stamps = [T0 + timedelta(seconds=float(s)) for s in seconds[keep]]
    frame = pl.DataFrame({"timestamp": pl.Series(stamps, dtype=pl.Datetime("us", "UTC")), "value": values[keep]})
    return Series(name=f"s{seed}-{int(step.total_seconds() // 60)}m-{frame.height}", frame=frame,
                  anomalies=[int(index[a]) for a in anomalies], kinds=kinds, family=family)


def _profile(rng: np.random.Generator, n: int, step: timedelta) -> np.ndarray:
    """A unit-amplitude daily and weekly shape (0 for none): a working day, a harmonic, quieter weekdays."""
    t = np.arange(n)
    per_day = timedelta(days=1) / step
    phase = 2 * np.pi * t / per_day
    if rng.random() >= 0.7:
        return np.zeros(n)
    shape = (np.sin(phase + rng.uniform(0, 2 * np.pi))
             + rng.uniform(0, 0.6) * np.sin(2 * phase + rng.uniform(0, 2 * np.pi))
             + rng.uniform(0, 0.3) * np.sin(3 * phase + rng.uniform(0, 2 * np.pi)))
    if rng.random() < 0.6:  # day of week: quieter weekends, and a busier or quieter day or two
        weekday = ((t * step.total_seconds()) // 86_400).astype(int) % 7  # T0 is a Monday
        by_day = np.where(np.arange(7) >= 5, -rng.uniform(0.3, 1.0), rng.normal(0, 0.2, 7))
        shape = shape + by_day[weekday]
    return shape


def _metric(rng: np.random.Generator, n: int, per_day: float, profile: np.ndarray, ranges: Ranges
            ) -> tuple[np.ndarray, list[int], list[str], str]:
    flavour = FLAVOURS[rng.choice(len(FLAVOURS), p=np.asarray(ranges.flavours) / sum(ranges.flavours))]
    base, values, sigma = _shape(rng, flavour, n, profile, ranges)
    blips = rng.random(n) < ranges.benign_rate / 1000
    values[blips] += rng.choice([-1, 1], size=blips.sum()) * rng.uniform(3, 4, size=blips.sum()) * sigma
    values += _nightly(rng, n, per_day, ranges) * sigma
    anomalies, kinds = [], []
    for at in _slots(rng, n):
        kind = KINDS[rng.integers(len(KINDS))]
        if kind == "zero" and abs(float(np.median(base))) < 6 * sigma:
            kind = "spike"  # reading 0 is not news for a gauge that sits near 0
        values = _inject(rng, kind, values, at, sigma, ranges, per_day, base, pinned=flavour == "cpu")
        anomalies.append(at)
        kinds.append(kind)
    if flavour == "cpu":
        values = np.clip(values, 0.0, 100.0)
    elif flavour != "gauge" or rng.random() < 0.3:
        values = np.maximum(values, 0.0)
    if flavour == "cpu" or rng.random() < ranges.quantised:  # what the exporter keeps
        quantum = 0.1 if flavour == "cpu" and rng.random() < 0.5 else _nice(sigma * rng.uniform(0.1, 0.8))
        values = np.round(values / quantum) * quantum
    return values, anomalies, kinds, flavour


def _shape(rng: np.random.Generator, flavour: str, n: int, profile: np.ndarray, ranges: Ranges
           ) -> tuple[np.ndarray, np.ndarray, float]:
    """The normal behaviour of a metric of one flavour: its expected path, its values, and its noise sd."""
    if flavour == "latency":  # multiplicative: the noise grows with the level, and the right tail is long
        level = float(np.exp(rng.uniform(np.log(5), np.log(2000))))
        spread = rng.uniform(0.05, 0.35)
        log_base = np.log(level) + rng.uniform(0.05, 0.5) * profile
        noise = rng.standard_t(rng.uniform(4, 12), n) * spread * 0.8 if rng.random() < 0.5 else rng.normal(0, spread, n)
        return np.exp(log_base), np.exp(log_base + noise), level * spread
    if flavour == "requests":  # large overdispersed counts with a strong rhythm
        level = float(np.exp(rng.uniform(np.log(50), np.log(5000))))
        rate = level * np.exp(rng.uniform(0.3, 1.0) * profile)
        shape = rng.uniform(20, 300)
        values = rng.poisson(rng.gamma(shape, rate / shape)).astype(float)
        return rate, values, float(np.sqrt(level + level * level / shape))
    if flavour == "plateau":  # a few recurring levels, every one visited during the probation
        levels = rng.uniform(0, 100, int(rng.integers(2, 5)))
        sigma = rng.uniform(0.3, 3.0)
        early = np.sort(rng.choice(np.arange(1, int(0.14 * n)), size=levels.size - 1, replace=False))
        later = np.flatnonzero(rng.random(n) < rng.uniform(3, 15) / n)
        later = later[later > int(0.15 * n)]
        which = np.r_[np.arange(levels.size), rng.integers(0, levels.size, later.size)]
        regime = np.zeros(n, dtype=int)
        for at, index in zip(np.r_[0, early, later], which, strict=True):
            regime[at:] = index
        base = levels[regime]
        return base, base + rng.normal(0, sigma, n), float(sigma)
    level = rng.uniform(-50, 500) if flavour == "gauge" and rng.random() < 0.7 else rng.uniform(5, 60)
    sigma = abs(level) * rng.uniform(0.01, 0.1) + rng.uniform(0.1, 2.0)
    base = level + sigma * rng.uniform(1, 15 if flavour == "gauge" else 6) * profile
    if rng.random() < 0.3:
        base += np.linspace(0, sigma * rng.uniform(-20, 20), n)
    if rng.random() < 0.3:  # the level wanders a little: a slow random walk, not an anomaly
        base += np.cumsum(rng.normal(0, sigma * rng.uniform(0.005, 0.03), n))
    return base, base + _noise(rng, n, sigma, ranges.noise_mix, base), float(sigma)


def _nightly(rng: np.random.Generator, n: int, per_day: float, ranges: Ranges) -> np.ndarray:
    """A benign spike at the same time every day (a backup, a batch job), in noise sds; 0 mostly."""
    out = np.zeros(n)
    if rng.random() >= ranges.nightly or per_day > 300:
        return out
    phase = int(rng.integers(0, int(per_day)))
    height = rng.uniform(4, 10) * rng.choice([-1, 1], p=[0.2, 0.8])
    for lo in range(phase, n, int(round(per_day))):
        out[lo:lo + int(rng.integers(1, 3))] = height * rng.uniform(0.8, 1.2)
    return out


def _nice(x: float) -> float:
    """1, 2 or 5 times a power of ten, near ``x`` (what exporters round to)."""
    power = 10.0 ** np.floor(np.log10(max(x, 1e-9)))
    return float(min((1, 2, 5, 10), key=lambda m: abs(m * power - x)) * power)


def _counts(rng: np.random.Generator, n: int, per_day: float, profile: np.ndarray, ranges: Ranges
            ) -> tuple[np.ndarray, list[int], list[str]]:
    """Events per bucket: Poisson from a rate with a daily and weekly profile; anomalies change the rate."""
    mean = float(np.exp(rng.uniform(np.log(0.3), np.log(80))))
    rate = mean * np.exp(rng.uniform(0.2, 1.2) * profile)
    anomalies, kinds = [], []
    extra = np.maximum(_nightly(rng, n, per_day, ranges) * np.sqrt(max(mean, 1.0)), 0.0)
    for at in _slots(rng, n):
        kind = COUNT_KINDS[rng.integers(len(COUNT_KINDS))]
        if kind in ("drop", "outage") and mean < 3:
            kind = "shift"  # a drop from almost nothing is not visible
        sd = np.sqrt(max(mean, 1.0))
        if kind == "spike":
            width = int(rng.integers(1, 4))
            extra[at:at + width] += rng.uniform(*ranges.spike) * sd * 1.5 + 3
        elif kind == "cluster":
            for k in np.sort(rng.choice(np.arange(0, 40), size=int(rng.integers(3, 7)), replace=False)):
                extra[min(at + k, n - 1)] += rng.uniform(*ranges.spike) * sd + 3
            extra[at] += rng.uniform(*ranges.spike) * sd + 3
        elif kind == "shift":
            rate[at:] *= rng.uniform(2.0, 5.0) if mean < 20 else rng.uniform(1.5, 3.0)
        elif kind == "drop":
            rate[at:] *= rng.uniform(0.1, 0.5)
        elif kind == "outage":
            rate[at:at + int(rng.integers(20, max(21, n // 20)))] = 0.0
        else:  # pattern_loss: the daily rhythm stops (a batch job that no longer runs), the mean stays
            length = int(min(max(per_day, 30), n - at))
            rate[at:at + length] = rate.mean() * rng.uniform(1.3, 2.0)
        anomalies.append(at)
        kinds.append(kind)
    return (rng.poisson(rate) + np.round(extra)).astype(float), anomalies, kinds


def _slots(rng: np.random.Generator, n: int) -> list[int]:
    """0-3 anomaly positions after the first 20 % and at least 8 % of the series apart."""
    count = rng.choice([0, 1, 2, 2, 3, 3])
    if not count:
        return []
    picked: list[int] = []
    for at in np.sort(rng.choice(np.arange(int(0.2 * n), int(0.95 * n)), size=count, replace=False)):
        if not picked or at - picked[-1] >= 0.08 * n:
            picked.append(int(at))
    return picked


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
            per_day: float, base: np.ndarray, *, pinned: bool = False) -> np.ndarray:
    values = values.copy()
    n = values.size
    sign = rng.choice([-1, 1])
    if kind == "spike":
        width = int(rng.integers(1, 4))
        values[at:at + width] += rng.uniform(*ranges.spike) * sigma * 1.5
    elif kind == "dip":
        width = int(rng.integers(1, 4))
        values[at:at + width] -= rng.uniform(*ranges.spike) * sigma * 1.5
    elif kind == "cluster":  # a few spikes within a short stretch: one incident
        values[at] += sign * rng.uniform(*ranges.spike) * sigma
        for k in rng.choice(np.arange(1, 40), size=int(rng.integers(2, 6)), replace=False):
            values[min(at + k, n - 1)] += sign * rng.uniform(*ranges.spike) * sigma
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
    elif kind == "variance_shift":  # the noise grows and stays grown (a new, flakier dependency)
        values[at:] += rng.standard_t(4, n - at) * sigma * rng.uniform(*ranges.variance) * 0.7
    elif kind == "pattern_loss":
        length = int(min(max(per_day, 30), n - at))
        values[at:at + length] = np.mean(base) + rng.normal(0, sigma, length) + sign * sigma * 2
    elif kind == "burst":  # a stretch of slow requests, or a CPU pinned at 100
        length = int(rng.integers(5, 40))
        if pinned:
            values[at:at + length] = 100.0 - np.abs(rng.normal(0, 0.3, min(length, n - at)))
        else:
            lift = rng.uniform(*ranges.shift) * sigma
            values[at:at + length] += lift * (1 + np.abs(rng.normal(0, 0.5, min(length, n - at))))
    elif kind == "zero":  # the exporter reads 0 for a while
        values[at:at + int(rng.integers(3, max(4, n // 50)))] = 0.0
    else:  # flatline: the sensor stops moving
        length = int(rng.integers(30, max(31, n // 15)))
        values[at:at + length] = values[at - 1]
    return values
