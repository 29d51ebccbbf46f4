"""The series detector against two baselines, scored with window-based streaming rules.

    python -m bench.series [--split tune|report|both]

Runs each detector causally over every series of our own labelled corpus (``bench.series_corpus``),
scores the corpus with ``bench.series_score`` (the public benchmark's published rules: windows,
early-detection sigmoid, false-positive cost, probation, one threshold per detector, 0 = never alarm,
100 = perfect) and prints detector x profile, with ratios against both baselines measured in the same run.
The baselines live here, not in the package: a causal rolling z-score and a windowed Gaussian.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import polars as pl

from analytics import calibration
from analytics.detectors import SeasonalSeries, UnivariateSeries
from bench.series_corpus import corpus
from bench.series_score import PROFILES, probation, score_corpus, windows


def rolling_z(frame: pl.DataFrame, *, window: int = 100) -> np.ndarray:
    """|value - mean| / std of the preceding ``window`` points; 0 until the window is full."""
    prior = pl.col("value").shift(1)
    z = frame.select(((pl.col("value") - prior.rolling_mean(window)) / prior.rolling_std(window)).abs())
    return np.nan_to_num(z.to_series().to_numpy(), nan=0.0, posinf=0.0)


def windowed_gaussian(frame: pl.DataFrame, *, window: int = 6400, step: int = 100) -> np.ndarray:
    """|z| against the mean and std of up to ``window`` earlier points, refreshed every ``step`` points."""
    values = frame["value"].to_numpy().astype(float)
    out = np.zeros(values.size)
    for lo in range(step, values.size, step):
        history = values[max(0, lo - window):lo]
        std = history.std()
        if std > 0:
            out[lo:lo + step] = np.abs(values[lo:lo + step] - history.mean()) / std
    return out


def seasonal(frame: pl.DataFrame) -> np.ndarray:
    return SeasonalSeries().fit(frame.head(0)).score_samples(frame)


def todays(frame: pl.DataFrame) -> np.ndarray:
    return UnivariateSeries().fit(frame).score_samples(frame)


DETECTORS: dict[str, Callable[[pl.DataFrame], np.ndarray]] = {
    "seasonal_series (new)": seasonal, "rolling z-score": rolling_z, "windowed Gaussian": windowed_gaussian,
    "univariate_series (old)": todays,
}


CALIBRATED = ("seasonal_series (new)", "univariate_series (old)")


def at_alert_threshold(scored: list[tuple[np.ndarray, list[int]]], threshold: float) -> tuple[int, int, float]:
    """Windows with an alarm, scorable windows, and alarms outside windows per 10,000 scored points."""
    found = total = false = outside = 0
    for scores, anomalies in scored:
        n = scores.size
        start = probation(n)
        inside = np.zeros(n, dtype=bool)
        for lo, hi in windows(n, anomalies):
            inside[lo:hi + 1] = True
            if hi >= start:
                total += 1
                found += bool((scores[max(lo, start):hi + 1] >= threshold).any())
        false += int(((scores >= threshold) & ~inside)[start:].sum())
        outside += int((~inside)[start:].sum())
    return found, total, 1e4 * false / max(outside, 1)


def by_family(series: list, scored: list[tuple[np.ndarray, list[int]]]) -> str:
    """Each family's standard score at the threshold chosen for the whole corpus (where the misses are)."""
    chosen = score_corpus(scored, PROFILES["standard"]).threshold
    parts = []
    for family in sorted({s.family for s in series}):
        subset = [pair for s, pair in zip(series, scored, strict=True) if s.family == family]
        if any(anomalies for _, anomalies in subset):
            parts.append(f"{family} {score_corpus(subset, PROFILES['standard'], threshold=chosen).normalized:.1f}")
    return ", ".join(parts)


def run(split: str, detectors: dict[str, Callable[[pl.DataFrame], np.ndarray]] = DETECTORS
        ) -> dict[str, dict[str, float]]:
    """Normalised score per detector and profile on one split (also prints the table)."""
    series = corpus(split)
    results: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    alerts: dict[str, tuple[int, int, float]] = {}
    families: dict[str, str] = {}
    for name, detect in detectors.items():
        started = time.perf_counter()
        scored = [(detect(s.frame), s.anomalies) for s in series]
        seconds[name] = time.perf_counter() - started
        results[name] = {profile: score_corpus(scored, weights).normalized for profile, weights in PROFILES.items()}
        if name in CALIBRATED:
            alerts[name] = at_alert_threshold(scored, calibration.ANOMALY_SCORE)
        families[name] = by_family(series, scored)
    points = sum(s.frame.height for s in series)
    print(f"\n{split}: {len(series)} series, {points:,} points, {sum(len(s.anomalies) for s in series)} anomalies")
    print(f"| detector | {' | '.join(PROFILES)} | seconds |")
    print("|---|" + "---|" * (len(PROFILES) + 1))
    for name, row in results.items():
        print(f"| {name} | {' | '.join(f'{row[p]:.1f}' for p in PROFILES)} | {seconds[name]:.2f} |")
    for name, (found, total, false) in alerts.items():
        print(f"{name} at the alert threshold {calibration.ANOMALY_SCORE}: {found}/{total} windows alarmed, "
              f"{false:.2f} false alarms per 10,000 points")
    print("standard, per family at the corpus threshold (one threshold for all, as scored):")
    for name, text in families.items():
        print(f"  {name}: {text}")
    new, z, gauss = (results[name]["standard"] for name in list(detectors)[:3])
    print(f"standard: new / rolling z = {new / z:.2f}, new / windowed Gaussian = {new / gauss:.2f}"
          if z > 0 and gauss > 0 else "")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["tune", "report", "both"], default="both")
    args = parser.parse_args()
    for split in (["tune", "report"] if args.split == "both" else [args.split]):
        run(split)


if __name__ == "__main__":
    main()
