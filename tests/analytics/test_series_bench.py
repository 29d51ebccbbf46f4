"""The window-based streaming scorer and the labelled series corpus behind ``bench/series.py``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bench.series_corpus import SPLITS, _nightly, _shape, corpus, generate, schedule
from bench.series_score import PROFILES, perfect_detector, probation, score_corpus, windows

STANDARD = PROFILES["standard"]


def _sigmoid_reward(position: float) -> float:
    """The published scaled sigmoid, written out independently of the scorer."""
    return 2 / (1 + math.exp(5 * position)) - 1


def test_windows_are_a_tenth_of_the_series_split_between_anomalies_and_merge_when_they_overlap():
    assert windows(1000, [500]) == [(450, 550)]
    assert windows(1000, [300, 700]) == [(275, 325), (675, 725)]
    assert windows(1000, [500, 520]) == [(475, 545)]  # two 50-point windows that overlap become one
    assert windows(1000, []) == []
    assert probation(1000) == 150 and probation(20_000) == 750


@pytest.mark.parametrize("profile", list(PROFILES))
def test_perfect_scores_100_and_never_alarming_scores_0(profile):
    corpus_ = [(perfect_detector(1000, [500]), [500]), (perfect_detector(2000, [600, 1500]), [600, 1500])]
    assert score_corpus(corpus_, PROFILES[profile]).normalized == pytest.approx(100.0)
    silent = [(np.zeros(1000), [500]), (np.zeros(2000), [600, 1500])]
    assert score_corpus(silent, PROFILES[profile]).normalized == pytest.approx(0.0)
    always = [(np.ones(1000), [500]), (np.ones(2000), [600, 1500])]
    assert score_corpus(always, PROFILES[profile], threshold=1.0).normalized < 0


def test_a_hand_made_example_has_the_published_score():
    scores = np.zeros(1000)
    scores[500] = 0.9  # in the window [450, 550], at its centre
    scores[900] = 0.8  # far after the window: a full false positive
    scores[100] = 0.95  # inside the probation: not scored
    width = 101
    reward = _sigmoid_reward(-(550 - 500 + 1) / width) / _sigmoid_reward(-1.0)
    raw = reward - 0.11
    result = score_corpus([(scores, [500])], STANDARD, threshold=0.8)
    assert result.raw == pytest.approx(raw) and (result.null, result.perfect) == (-1.0, 1.0)
    assert result.normalized == pytest.approx(100 * (raw + 1) / 2)
    # The optimiser prefers the threshold above the false positive: only the detection counts.
    best = score_corpus([(scores, [500])], STANDARD)
    assert best.threshold == pytest.approx(0.9) and best.raw == pytest.approx(reward)


def test_earlier_detection_earns_more_and_a_false_positive_just_after_a_window_costs_less():
    def one(at: int) -> float:
        scores = np.zeros(1000)
        scores[at] = 1.0
        return score_corpus([(scores, [500])], STANDARD, threshold=1.0).raw

    assert one(450) > one(500) > one(549) > 0
    missed = -1.0  # the window's false negative
    assert -0.11 < one(560) - missed < 0 and one(900) - missed == pytest.approx(-0.11)


def test_one_threshold_is_chosen_for_the_whole_corpus():
    a = np.zeros(1000)
    a[500] = 0.5  # a detection at 0.5
    b = np.zeros(1000)
    b[300:340] = 0.7  # forty false positives above it, in a series without anomalies
    best = score_corpus([(a, [500]), (b, [])], STANDARD)
    assert best.threshold > 0.7 and best.normalized == pytest.approx(0.0)  # 40 x 0.11 > one detection
    b[300:340] = 0.3
    assert score_corpus([(a, [500]), (b, [])], STANDARD).threshold == pytest.approx(0.5)


def test_the_corpus_is_reproducible_and_its_splits_differ():
    assert set(SPLITS["tune"].seeds).isdisjoint(SPLITS["report"].seeds)
    one, again = generate(3, SPLITS["tune"]), generate(3, SPLITS["tune"])
    assert one.frame.equals(again.frame) and one.anomalies == again.anomalies
    tune = corpus("tune")
    assert 900 <= min(s.frame.height for s in tune) and max(s.frame.height for s in tune) <= 16_000  # minus gaps
    assert {s.name.split("-")[1] for s in tune} == {"1m", "5m", "10m", "30m", "60m"}
    assert all(probation(s.frame.height) < min(s.anomalies, default=10**9) for s in tune)
    assert sum(1 for s in tune if not s.anomalies) >= 3  # noise-only series, where every alarm is false


def test_the_corpus_has_what_real_collection_does_to_a_series():
    tune = corpus("tune")
    gaps = irregular = sparse_counts = 0
    for s in tune:
        seconds = s.frame["timestamp"].diff().dt.total_seconds(fractional=True).drop_nulls().to_numpy()
        step = np.median(seconds)
        assert np.all(seconds > 0)  # jitter never reorders points
        gaps += bool(np.any(seconds > 1.8 * step))
        irregular += bool(np.mean(np.abs(seconds / step - np.round(seconds / step)) > 0.05) > 0.2)
        values = s.frame["value"].to_numpy()
        sparse_counts += bool(np.all(values == np.round(values)) and np.mean(values == 0) > 0.2)
        assert all(0 <= a < s.frame.height for a in s.anomalies)
    assert gaps >= 10 and irregular >= 5 and sparse_counts >= 3
    kinds = {k for s in tune for k in s.kinds}
    assert {"cluster", "variance_shift", "outage", "shift", "flatline"} <= kinds


def test_the_corpus_has_the_shapes_operations_teams_watch():
    tune = corpus("tune")
    assert {s.family for s in tune} == {"counts", "gauge", "latency", "cpu", "requests", "plateau", "schedule"}
    for s in tune:
        values = s.frame["value"].to_numpy()
        if s.family == "cpu":  # a percentage, as an exporter keeps it
            assert values.min() >= 0 and values.max() <= 100
            assert np.allclose(values * 10, np.round(values * 10))
        if s.family in ("latency", "requests"):
            assert values.min() >= 0
    latency = [s.frame["value"].to_numpy() for s in tune if s.family == "latency" and not s.anomalies]
    latency = latency or [s.frame["value"].to_numpy()[: s.anomalies[0]] for s in tune if s.family == "latency"]
    assert all(np.mean(v) > np.median(v) for v in latency)  # multiplicative noise: a long right tail
    assert {"burst", "zero"} <= {k for s in tune for k in s.kinds}


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_plateau_visits_every_level_during_the_probation(seed):
    n = 5000
    base, values, sigma = _shape(np.random.default_rng(seed), "plateau", n, np.zeros(n), SPLITS["tune"])
    levels = np.unique(base)
    assert levels.size >= 2 and set(np.unique(base[: probation(n)])) == set(levels)
    assert np.std(values - base) == pytest.approx(sigma, rel=0.1)


def test_a_nightly_job_recurs_at_the_same_time_every_day():
    ranges = dataclasses.replace(SPLITS["tune"], nightly=1.0)
    out = _nightly(np.random.default_rng(0), 288 * 5, 288.0, ranges)
    days = out.reshape(5, 288)
    assert np.all((days != 0).sum(axis=1) >= 1)
    assert len({int(np.flatnonzero(day)[0]) for day in days}) == 1  # the same phase every day


def test_an_on_off_load_switches_at_about_the_same_time_every_day_and_its_anomalies_break_that():
    ranges = SPLITS["tune"]
    loads = [schedule(seed, ranges) for seed in ranges.schedules]
    assert {"wrong_on", "skipped", "stuck_mid", "early_off", "spike"} <= {k for s in loads for k in s.kinds}
    for s in loads:
        values = s.frame["value"].to_numpy()
        per_day = round(86_400 / np.median(s.frame["timestamp"].diff().dt.total_seconds().drop_nulls().to_numpy()))
        before = values[: min(s.anomalies, default=values.size)]
        high = before > (np.percentile(before, 5) + np.percentile(before, 95)) / 2
        ups = np.flatnonzero(high[1:] & ~high[:-1]) + 1
        phases = ups % per_day
        # every switch on before the first anomaly within a few points of the usual moment (blips aside)
        apart = np.abs(phases[:, None] - phases[None, :]) % per_day
        apart = np.minimum(apart, per_day - apart)  # on the clock: 23:58 and 00:01 are 3 minutes apart
        near = apart[np.argmin(apart.sum(axis=1))] <= 2 * ranges.switch_jitter + 4
        assert near.mean() >= 0.8, (s.name, phases)
        assert probation(values.size) < min(s.anomalies, default=10**9)
    wrong = [(s, a) for s in loads for a, k in zip(s.anomalies, s.kinds, strict=True) if k == "wrong_on"]
    for s, at in wrong:  # switched on in what is usually an off stretch: at the low level just before
        values = s.frame["value"].to_numpy()
        assert values[at] > values[at - 1] and values[at - 1] < np.median(values)
    assert set(SPLITS["tune"].schedules).isdisjoint(SPLITS["report"].schedules)
    assert SPLITS["report"].switch_jitter > SPLITS["tune"].switch_jitter  # the report split is harder
