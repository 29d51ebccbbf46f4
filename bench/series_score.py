"""Window-based streaming scoring, after the Numenta Anomaly Benchmark's published rules.

Each labelled anomaly gets a window of ``0.10 * length / anomalies`` points centred on it (overlaps
merge). The first alarm inside a window earns a scaled sigmoid of its position (1 at the window's left
edge, 0 at its right edge); every alarm outside a window costs ``A_FP`` times a sigmoid that is small
just after a window and -1 far from any; a window with no alarm costs ``A_FN``. The first
``min(15 % of the length, 750)`` points are a probation and are not scored. One threshold per
detector is chosen for the whole corpus, and the total is normalised so that "never alarm" is 0 and
"the first point of every window" is 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}
WINDOW_FRACTION = 0.10
PROBATION_FRACTION = 0.15


@dataclass(frozen=True)
class Scored:
    """A detector's corpus score under one profile."""

    normalized: float
    raw: float
    threshold: float
    null: float
    perfect: float


def windows(length: int, anomalies: list[int] | np.ndarray) -> list[tuple[int, int]]:
    """Inclusive index windows centred on each anomaly, overlapping ones merged."""
    anomalies = sorted(int(a) for a in anomalies)
    size = int(WINDOW_FRACTION * length / len(anomalies)) if anomalies else 0
    merged: list[tuple[int, int]] = []
    for a in anomalies:
        lo, hi = max(a - size // 2, 0), min(a + size // 2, length - 1)
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def probation(length: int) -> int:
    """Points at the start of a series that are not scored."""
    return int(min(math.floor(PROBATION_FRACTION * length), PROBATION_FRACTION * 5000))


def _scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    return np.where(position >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0)


def sweep(length: int, spans: list[tuple[int, int]], profile: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the weighted score an alarm there earns, and its window's index (-1 outside windows)."""
    index = np.arange(length)
    weight = np.empty(length)
    window_of = np.full(length, -1)
    max_tp = float(_scaled_sigmoid(np.array(-1.0)))
    previous: tuple[int, int] | None = None
    cursor = 0
    for w, (lo, hi) in enumerate([*spans, (length, length)]):
        gap = index[cursor:lo]
        if previous is None:
            weight[cursor:lo] = -profile["fp"]
        else:
            past = np.abs(previous[1] - gap) / max(previous[1] - previous[0], 1)
            weight[cursor:lo] = _scaled_sigmoid(past) * profile["fp"]
        if lo >= length:
            break
        inside = index[lo:hi + 1]
        width = hi - lo + 1
        weight[lo:hi + 1] = _scaled_sigmoid(-(hi - inside + 1) / width) * profile["tp"] / max_tp
        window_of[lo:hi + 1] = w
        previous, cursor = (lo, hi), hi + 1
    return weight, window_of


def _events(scores: np.ndarray, weight: np.ndarray, window_of: np.ndarray, fn: float) -> tuple[np.ndarray, ...]:
    """(threshold, change in total) events for one series, and how many scorable windows it has."""
    outside = window_of < 0
    thresholds = [scores[outside]]
    deltas = [weight[outside]]
    windows_seen = 0
    for w in np.unique(window_of[~outside]):
        member = window_of == w
        s, v = scores[member], weight[member]
        order = np.argsort(-s, kind="stable")
        best = np.maximum.accumulate(np.maximum(v[order], -fn))
        gain = np.diff(np.concatenate([[-fn], best]))
        keep = gain > 0
        thresholds.append(s[order][keep])
        deltas.append(gain[keep])
        windows_seen += 1
    return np.concatenate(thresholds), np.concatenate(deltas), windows_seen


def score_corpus(series: list[tuple[np.ndarray, list[int]]], profile: dict[str, float],
                 threshold: float | None = None) -> Scored:
    """Normalised corpus score of per-point ``scores`` against labelled anomaly indices.

    ``threshold`` None chooses the best single threshold for the corpus, as the benchmark does.
    """
    all_t, all_d, n_windows = [], [], 0
    for scores, anomalies in series:
        scores = np.asarray(scores, dtype=float)
        n = scores.size
        weight, window_of = sweep(n, windows(n, anomalies), profile)
        keep = slice(probation(n), n)
        t, d, seen = _events(scores[keep], weight[keep], window_of[keep], profile["fn"])
        all_t.append(t)
        all_d.append(d)
        n_windows += seen
    null = -profile["fn"] * n_windows
    perfect = profile["tp"] * n_windows
    t, d = np.concatenate(all_t), np.concatenate(all_d)
    order = np.argsort(-t, kind="stable")
    t, total = t[order], null + np.cumsum(d[order])
    if threshold is None:
        last_of_group = np.r_[t[1:] != t[:-1], True] if t.size else np.array([], dtype=bool)
        candidates = np.r_[null, total[last_of_group]]
        levels = np.r_[np.inf, t[last_of_group]]
        best = int(np.argmax(candidates))
        raw, chosen = float(candidates[best]), float(levels[best])
    else:
        active = t >= threshold
        raw, chosen = (float(total[active][-1]) if active.any() else null), threshold
    span = perfect - null
    normalized = 100.0 * (raw - null) / span if span > 0 else 0.0
    return Scored(normalized=normalized, raw=raw, threshold=chosen, null=null, perfect=perfect)


def perfect_detector(length: int, anomalies: list[int]) -> np.ndarray:
    """Alarms at the first scorable point of every window: the benchmark's 100."""
    out = np.zeros(length)
    start = probation(length)
    for lo, hi in windows(length, anomalies):
        if hi >= start:
            out[max(lo, start)] = 1.0
    return out
