"""The seasonal series detector: contract, benign patterns that must stay quiet, anomalies it must find."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from analytics import calibration
from analytics.detectors import SeasonalSeries, UnivariateSeries

T0 = datetime(2026, 3, 2, tzinfo=UTC)
THRESHOLD = calibration.ANOMALY_SCORE


def series(values: np.ndarray, step: timedelta = timedelta(minutes=5)) -> pl.DataFrame:
    stamps = pl.datetime_range(T0, T0 + (len(values) - 1) * step, step, eager=True, time_zone="UTC")
    return pl.DataFrame({"timestamp": stamps, "value": np.asarray(values, dtype=float)})


def daily_sine(days: int = 14, step: timedelta = timedelta(minutes=5)) -> np.ndarray:
    per_day = int(timedelta(days=1) / step)
    t = np.arange(days * per_day)
    return 100 + 40 * np.sin(2 * np.pi * t / per_day)


def scores(values: np.ndarray, **params) -> np.ndarray:
    frame = series(values)
    return SeasonalSeries(**params).fit(frame).score_samples(frame)


def test_it_keeps_the_estimator_contract():
    detector = SeasonalSeries(level_window=8)
    assert clone(detector).get_params() == detector.get_params()
    frame = series(np.random.default_rng(0).normal(10, 1, 300))
    with pytest.raises(NotFittedError):
        detector.score_samples(frame)
    assert detector.fit(frame) is detector
    assert detector.version_.startswith(detector.name) and detector.periods_ == (288, 2016)
    assert not hasattr(SeasonalSeries(), "periods_")  # __init__ only stores parameters
    s = detector.score_samples(frame)
    assert s.shape == (300,) and np.all((s >= 0) & (s < 1))
    np.testing.assert_allclose(detector.decision_function(frame), detector.threshold - s)
    assert set(np.unique(detector.predict(frame))) <= {-1, 1}
    with pytest.raises(ValueError, match="timestamp"):
        detector.fit(pl.DataFrame({"value": [1.0]}))


def test_seasonality_comes_from_the_sampling_rate_and_not_from_irregular_or_coarse_series():
    hourly = series(np.ones(10), timedelta(hours=1))
    assert SeasonalSeries().fit(hourly).periods_ == (24, 168)
    assert SeasonalSeries().fit(series(np.ones(10), timedelta(days=1))).periods_ == ()
    jitter = np.cumsum(np.random.default_rng(1).integers(1, 600, 50))
    irregular = pl.DataFrame({"timestamp": [T0 + timedelta(seconds=int(s)) for s in jitter], "value": np.ones(50)})
    assert SeasonalSeries().fit(irregular).periods_ == ()


@pytest.mark.parametrize("step", [timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1)])
def test_a_noiseless_daily_cycle_is_not_an_anomaly(step):
    values = daily_sine(days=14 if step < timedelta(hours=1) else 60, step=step)[:4032]
    frame = series(values, step)
    assert (SeasonalSeries().fit(frame).score_samples(frame) >= THRESHOLD).sum() == 0


def test_missing_points_do_not_shift_the_daily_phase():
    frame = series(daily_sine() + np.random.default_rng(8).normal(0, 1, 4032))
    kept = frame.filter(pl.Series(np.random.default_rng(9).random(4032) > 0.05))  # 5 % of the points lost
    detector = SeasonalSeries().fit(kept)
    assert detector.periods_ == (288, 2016)
    assert (detector.score_samples(kept) >= THRESHOLD).sum() == 0


def test_a_weekday_weekend_cycle_is_learned_where_the_old_detector_flags_every_monday():
    t = np.arange(288 * 21)  # three weeks at 5 minutes, starting on a Monday
    weekend = (t // 288) % 7 >= 5
    values = (100 + 40 * np.sin(2 * np.pi * t / 288)) * np.where(weekend, 0.3, 1.0)
    values += np.random.default_rng(0).normal(0, 2, t.size)
    frame = series(values)
    old = UnivariateSeries().fit(frame).score_samples(frame)
    new = SeasonalSeries().fit(frame).score_samples(frame)
    third_week = slice(288 * 14, None)
    assert (old[third_week] >= THRESHOLD).sum() >= 10  # today's code: every Monday morning is "anomalous"
    assert (new[288 * 8:] >= THRESHOLD).sum() == 0  # once a week has been seen, the week is normal
    assert (new >= THRESHOLD).sum() <= 2  # the first weekend and the first Monday are new, once each


def test_pure_noise_stays_under_the_threshold():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        assert (scores(rng.normal(50, 5, 4032)) >= THRESHOLD).sum() == 0
        assert (scores(rng.poisson(3, 4032)) >= THRESHOLD).sum() == 0


def test_a_noisy_daily_cycle_with_a_spike_flags_the_spike_only():
    rng = np.random.default_rng(3)
    values = daily_sine() + rng.normal(0, 2, 4032)
    values[3000] += 30
    s = scores(values)
    assert np.argmax(s) == 3000 and s[3000] >= THRESHOLD
    assert (s >= THRESHOLD).sum() <= 2


def test_a_level_shift_alarms_near_the_shift_then_settles():
    rng = np.random.default_rng(4)
    values = rng.normal(100, 3, 3000)
    values[2000:] += 40
    s = scores(values)
    assert s[2000:2010].max() >= THRESHOLD
    assert (s[2000:] >= THRESHOLD).sum() <= 10  # once, not for every point at the new level
    assert s[2100:].max() < THRESHOLD


def _alarms(s: np.ndarray, threshold: float) -> int:
    """Times the score rises through ``threshold`` (each one a page)."""
    return int(((s[1:] >= threshold) & (s[:-1] < threshold)).sum())


@pytest.mark.parametrize("kind", ["variance", "cluster"])
def test_what_one_statistic_keeps_saying_is_told_once(kind):
    """A long burst of variance, or a cluster of modest spikes, keeps one statistic high: its own recent values
    discount it (``statistic_free``) before the statistics are combined, so the incident re-alarms less than
    with the combined discount alone, and its first alarm comes as soon (within a point or two)."""
    t = np.arange(4000)
    first, fewer = {}, {}
    for free in (0.0, 3.0):
        total, firsts = 0, []
        for seed in range(10):
            rng = np.random.default_rng(seed)
            values = 50 + 5 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, t.size)
            if kind == "variance":
                values[3000:3300] += rng.normal(0, 5, 300)
            else:
                values[3000:3300:15] += 6
            s = scores(values, statistic_free=free)[3000:]
            total += _alarms(s, 0.3)
            firsts.append(int(np.argmax(s >= 0.3)))
        fewer[free], first[free] = total, firsts
    assert fewer[3.0] < fewer[0.0]
    assert all(abs(a - b) <= 2 for a, b in zip(first[3.0], first[0.0], strict=True))


def test_a_trend_that_sets_a_record_at_every_point_is_not_an_anomaly():
    """The distance beyond the recent range is judged against the series' own history of it: where records
    are routine (a growing counter, a trend) they are not news."""
    rng = np.random.default_rng(2)
    t = np.arange(4000)
    for values in (0.05 * t + rng.normal(0, 1, t.size), np.cumsum(rng.poisson(3, t.size)).astype(float)):
        assert scores(values)[600:].max() < THRESHOLD


def test_the_distance_beyond_the_range_is_zero_inside_and_in_interquartile_ranges_outside():
    from analytics.detectors.seasonal import _beyond_range

    x = np.array([50.0, 0, 100, 30, 70, 20, 80, 40, 60, 10, 90, 45, 55, 160, 130, -35])
    d = _beyond_range(x, window=100, floor=np.zeros(x.size))
    assert np.all(d[:13] == 0.0)  # no quartiles yet (fewer than 8 before), then inside what came before
    iqr = np.quantile(x[:13], 0.75) - np.quantile(x[:13], 0.25)
    assert d[13] == pytest.approx(60 / iqr)  # 60 above the highest value so far
    assert d[14] == 0.0 and d[15] > 0  # 130 is inside the range 160 made; -35 is below its lowest


def test_a_spike_in_counts_is_found():
    rng = np.random.default_rng(1)
    values = rng.poisson(20, 400).astype(float)
    values[300] = 400
    s = scores(values)
    # p <= 1e-7: the count's Poisson floor keeps the scale honest, and 240 points of history only
    # support so extreme a tail extrapolation (it was >= 0.9 before that floor).
    assert np.argmax(s) == 300 and s[300] >= 0.7
    assert (s >= THRESHOLD).sum() == 1


def test_cold_start_scores_zero_and_a_setup_burst_does_not_fire():
    rng = np.random.default_rng(2)
    values = rng.normal(10, 1, 500)
    s = scores(values, min_periods=60)
    assert (s[:60] == 0).all() and s[60:].max() > 0
    # A fresh install: the platform's own setup events at its first minutes, then a quiet count series.
    setup = np.zeros(240)
    setup[:3] = [40, 25, 3]
    setup[rng.choice(np.arange(60, 240), 6, replace=False)] = 1
    frame = series(setup, timedelta(minutes=1))
    found = SeasonalSeries(scale_floor=1.0).fit(frame.head(0)).score_samples(frame)
    assert found.max() < THRESHOLD


def test_extreme_points_rank_without_ties_at_the_top():
    top = []
    for size in (1e2, 1e3, 1e5, 1e7, 1e9):
        values = np.random.default_rng(5).normal(0, 1, 3000)
        values[2000] = size
        top.append(scores(values)[2000])
    top = np.array(top)
    assert (top < 1).all() and (top >= 0.9).all()
    # Bigger is rarer, and every one is distinguishable, even at the nine decimals analyze-series writes
    # (the old detector clipped them all to 1.0).
    assert (np.diff(np.round(top, 9)) > 0).all()


def test_scores_are_causal():
    rng = np.random.default_rng(6)
    frame = series(daily_sine(days=4) + rng.normal(0, 1, 1152))
    detector = SeasonalSeries().fit(frame)
    before = detector.score_samples(frame)
    changed = frame.with_columns(pl.when(pl.int_range(pl.len()) > 700).then(1e6).otherwise(pl.col("value"))
                                 .alias("value"))
    np.testing.assert_array_equal(detector.score_samples(changed)[:701], before[:701])


def test_detect_explains_each_anomalous_point():
    values = np.random.default_rng(7).normal(100, 2, 600)
    values[500] = 180
    frame = series(values)
    found = SeasonalSeries().fit(frame).detect(frame, entity="events_1m:x", step=timedelta(minutes=5))
    assert found["window_start"].to_list() == [frame["timestamp"][500]]
    assert "above the expected" in found["explanation"][0]
    assert found["score"][0] >= THRESHOLD and found["severity"][0] == calibration.severity(found["score"][0])


def test_a_collector_that_does_not_tick_on_the_dot_still_gets_hour_of_day_and_day_of_week():
    rng = np.random.default_rng(4)
    values = daily_sine(days=14)
    seconds = np.arange(values.size) * 300 + rng.uniform(-90, 90, values.size)  # +-30 % of a 5-minute step
    frame = pl.DataFrame({"timestamp": [T0 + timedelta(seconds=float(s)) for s in seconds], "value": values})
    detector = SeasonalSeries().fit(frame)
    assert detector.periods_ == (288, 2016)
    assert (detector.score_samples(frame) >= THRESHOLD).sum() == 0


def test_counts_that_sit_at_zero_every_night_are_not_a_stuck_sensor():
    rng = np.random.default_rng(5)
    per_day = 288
    t = np.arange(14 * per_day)
    rate = np.clip(6 * np.sin(2 * np.pi * t / per_day), 0, None)  # half of each day is quiet
    values = rng.poisson(rate).astype(float)
    night = np.flatnonzero((t // per_day == 10) & (rate == 0))
    values[night[0] - 40:night[0]] = 0.0  # one evening quiet a little earlier than usual
    s = scores(values)
    assert (s >= THRESHOLD).sum() == 0
    stuck = values.copy()
    stuck[12 * per_day:12 * per_day + 200] = 3.0  # a count frozen mid-range is still found
    frozen = scores(stuck)[12 * per_day:12 * per_day + 200]
    assert frozen.max() >= THRESHOLD and (frozen >= THRESHOLD).sum() == 1  # once, not at every repeat


def test_values_an_exporter_rounded_do_not_alarm_at_one_rounding_step():
    # A gauge kept at 0.1 resolution that sits still and now and then moves by one step: the moves are the
    # rounding, not news (before the quantum floor, 2-4 of them per series scored >= 0.6).
    for seed in range(3):
        rng = np.random.default_rng(seed)
        steps = np.where(rng.random(3000) < 0.003, rng.choice([-0.1, 0.1], 3000), 0.0)
        values = np.round(np.round(12 + np.cumsum(steps), 1) + rng.normal(0, 0.02, 3000), 1)
        assert (scores(values) >= THRESHOLD).sum() == 0
        spiked = values.copy()
        spiked[2500] += 3.0  # thirty steps at once still is
        assert scores(spiked)[2500] >= THRESHOLD


def test_a_nightly_job_at_the_same_time_every_day_is_learned():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        values = rng.normal(50, 2, 288 * 14)
        values[30::288] += 20  # a backup at 02:30 every night, ten noise sds high
        assert (scores(values) >= THRESHOLD).sum() == 0
