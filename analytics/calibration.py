"""One score scale for every detector: a score is a tail probability on a log scale.

``score = -log10(p) / 10`` clipped to [0, 1], where ``p`` is the probability, under the learned
normal behaviour of the entity, of a window at least this extreme. So 0.6 means "one in a million
windows" whichever detector produced it, and an analyst can compare scores across detectors.
"""

from __future__ import annotations

import numpy as np

# p <= 1e-6: the default line between "unusual" and "anomalous".
ANOMALY_SCORE = 0.6
SEVERITIES = ((0.9, "critical"), (0.8, "high"), (0.7, "medium"), (0.0, "low"))
_FLOOR = 1e-300


def score_from_p(p: np.ndarray | float) -> np.ndarray:
    """Calibrated score in [0, 1] from tail probabilities."""
    p = np.clip(np.asarray(p, dtype=float), _FLOOR, 1.0)
    return np.clip(-np.log10(p) / 10.0, 0.0, 1.0)


def p_from_score(score: np.ndarray | float) -> np.ndarray:
    """The tail probability a calibrated score stands for."""
    return np.power(10.0, -10.0 * np.asarray(score, dtype=float))


def severity(score: float) -> str:
    """low | medium | high | critical from a calibrated score."""
    for low, name in SEVERITIES:
        if score >= low:
            return name
    return "low"


class EmpiricalTail:
    """Tail probabilities of a raw score from its distribution on normal data.

    Inside the sample the tail is empirical (with a +1 so it is never zero); beyond the top
    ``tail_fraction`` of the sample it is extrapolated with an exponential fitted (robustly, by the
    median) to the excesses, which is what makes a one-in-a-million statement possible from fifty
    thousand samples. The extrapolation is the exponential's predictive tail given the ``k`` excesses it
    was fitted to (a Lomax, ``(1 + x / (k * scale)) ** -k``): its scale is uncertain by about
    ``1 / sqrt(k)``, and far out that uncertainty is most of the probability. With the 500 excesses of a
    fifty-thousand sample, one in a million is 1.1 in a million (a score 0.004 lower); with the 15 of a
    day's warm-up, an hour the exponential called one in 27 million (p 3.7e-8 from 1,500 samples) is one in
    a million, about 30 times less certain. ``predictive=False`` keeps the plain exponential, for a tail
    whose scale has a floor of its own (``min_scale``) that a few bunched excesses cannot thin.
    """

    def __init__(self, *, tail_fraction: float = 0.01, min_scale: float = 1e-9, predictive: bool = True) -> None:
        self.tail_fraction = tail_fraction
        self.min_scale = min_scale
        self.predictive = predictive

    def fit(self, raw: np.ndarray) -> EmpiricalTail:
        raw = np.sort(np.asarray(raw, dtype=float))
        if raw.size == 0:
            raise ValueError("cannot calibrate on an empty sample; fit on history with some normal windows")
        self.sorted_ = raw
        k = max(10, int(raw.size * self.tail_fraction))
        k = min(k, raw.size)
        self.threshold_ = raw[-k]
        excess = raw[-k:] - self.threshold_
        # The exponential's scale from the median excess (scale * ln 2): a few extreme samples in the history
        # (last week's attack, still in the refit's window) cannot stretch the tail that judges the next one.
        self.scale_ = max(float(np.median(excess)) / np.log(2), float(excess.mean()) / 4, self.min_scale)
        self.tail_p_ = k / (raw.size + 1)
        self.k_ = k if self.predictive else None
        return self

    def sf(self, raw: np.ndarray) -> np.ndarray:
        """P(raw score >= value) on normal data."""
        raw = np.asarray(raw, dtype=float)
        n = self.sorted_.size
        above = n - np.searchsorted(self.sorted_, raw, side="left")
        empirical = (above + 1) / (n + 1)
        over = np.maximum(raw - self.threshold_, 0.0) / self.scale_
        k = getattr(self, "k_", None)  # a model stored before the predictive tail reproduces its own scores
        decay = over if k is None else k * np.log1p(over / k)
        extrapolated = self.tail_p_ * np.exp(-decay)
        return np.where(raw > self.threshold_, np.minimum(empirical, extrapolated), empirical)
