"""Backtest helpers: exact counts on a hand-made scored frame, and a real fit/score on labelled data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from analytics import tuning
from analytics.detectors import FailedLoginBurst, PasswordSpraying
from analytics.scenarios import Incident

T = datetime(2024, 3, 10, tzinfo=UTC)
M = timedelta(minutes=1)


def _scored(rows):
    return pl.DataFrame([{"detector": d, "entity_type": "user", "entity_value": e, "window_start": T + s * M,
                          "window_end": T + (s + 10) * M, "score": score} for d, e, s, score in rows],
                        schema=tuning.SCORED_SCHEMA)


INCIDENTS = [
    Incident("brute_force_fast", T + 5 * M, T + 8 * M, frozenset({"alice", "6.6.6.6"})),
    Incident("exfiltration", T + 24 * 60 * M, T + 24 * 60 * M + 30 * M, frozenset({"bob"})),
]


def test_evaluate_counts_recall_precision_and_false_anomalies_per_threshold():
    scored = _scored([
        ("burst", "alice", 0, 0.95),     # overlaps the brute force on its victim: true
        ("burst", "alice", 100, 0.7),    # alice again, long after: false
        ("burst", "carol", 3, 0.65),     # at the right time, wrong entity: false
        ("export", "bob", 24 * 60 + 20, 0.5),  # the exfiltration, weakly scored
        ("export", "dave", 24 * 60 + 20, 0.2),  # below every threshold
    ])
    result = tuning.evaluate(scored, INCIDENTS, thresholds=[0.6, 0.4], days=2.0)
    overall = {r["threshold"]: r for r in result.overall.iter_rows(named=True)}
    assert (overall[0.6]["anomalies"], overall[0.6]["true"], overall[0.6]["false"]) == (3, 1, 2)
    assert overall[0.6]["recall"] == 0.5 and overall[0.6]["precision"] == pytest.approx(1 / 3)
    assert overall[0.6]["false_per_day"] == 1.0
    assert (overall[0.4]["anomalies"], overall[0.4]["true"], overall[0.4]["recall"]) == (4, 2, 1.0)
    recall = {(r["threshold"], r["scenario"]): r["recall"] for r in result.by_scenario.iter_rows(named=True)}
    assert recall == {(0.4, "brute_force_fast"): 1.0, (0.4, "exfiltration"): 1.0,
                      (0.6, "brute_force_fast"): 1.0, (0.6, "exfiltration"): 0.0}
    burst = result.by_detector.filter(threshold=0.6, detector="burst").row(0, named=True)
    assert (burst["anomalies"], burst["true"], burst["false"], burst["false_per_day"]) == (3, 1, 2, 1.0)
    assert result.per_day.filter(threshold=0.6)["false"].sum() == 2
    assert result.per_day.filter(threshold=0.4).height == 1  # both false ones fall on the first day


def test_evaluate_with_nothing_found_keeps_the_scenarios():
    result = tuning.evaluate(tuning.score_windows({}, pl.DataFrame(
        {"timestamp": [T], "event_type": ["user_login"], "user_id": ["alice"]})), INCIDENTS, thresholds=[0.6])
    assert result.by_scenario["recall"].to_list() == [0.0, 0.0]
    assert result.overall.row(0, named=True)["precision"] is None
    assert result.by_detector.is_empty() and result.per_day.is_empty()


@pytest.fixture
def dataset(small_dataset):
    return small_dataset


def test_backtest_fits_on_history_and_finds_the_bursts(dataset):
    detectors = {"failed_login_burst": FailedLoginBurst(), "password_spraying": PasswordSpraying()}
    scored = tuning.backtest(detectors, dataset.events, train_end=dataset.attack_start)
    assert scored["window_start"].min() >= dataset.attack_start
    assert all(d.trained_to_ < dataset.attack_start for d in detectors.values())
    result = tuning.evaluate(scored, dataset.incidents, thresholds=[0.6])
    recall = dict(result.by_scenario.select("scenario", "recall").iter_rows())
    assert recall["brute_force_fast"] == 1.0 and recall["password_spraying"] == 1.0


def test_sweep_refits_per_value_and_labels_the_rows(dataset):
    result = tuning.sweep(PasswordSpraying, "prior_days", [1.0, 7.0], dataset.events, dataset.incidents,
                          train_end=dataset.attack_start, thresholds=[0.5, 0.6])
    assert result.overall.select("param", "value", "threshold").rows() == [
        ("prior_days", "1.0", 0.5), ("prior_days", "1.0", 0.6), ("prior_days", "7.0", 0.5),
        ("prior_days", "7.0", 0.6)]


def test_backtest_refuses_a_test_range_without_history(dataset):
    with pytest.raises(ValueError, match="train_end"):
        tuning.backtest({"b": FailedLoginBurst()}, dataset.events, train_end=dataset.start - timedelta(days=1))


def test_backtest_range_reads_the_store_like_the_frame_it_was_written_from(pool, tiny_dataset):
    from analytics.events import from_records, to_records
    from storage.timescale.writer import EventWriter
    from tests.analytics.conftest import burst

    attack_at = tiny_dataset.end - timedelta(hours=6)
    events = pl.concat([tiny_dataset.events, from_records(burst(attack_at, "u00003", 30))]).sort("timestamp")
    EventWriter(pool).write(to_records(events))
    split = tiny_dataset.end - timedelta(days=1)
    stored = tuning.backtest_range(pool, {"burst": FailedLoginBurst()}, train=(tiny_dataset.start, split),
                                   test=(split, tiny_dataset.end))
    in_memory = tuning.backtest({"burst": FailedLoginBurst()}, events, train_end=split, end=tiny_dataset.end)
    assert stored.equals(in_memory)
    label = [Incident("brute_force_fast", attack_at, attack_at + timedelta(minutes=2), frozenset({"u00003"}))]
    assert tuning.evaluate(stored, label).by_scenario["recall"].to_list() == [1.0]
    with pytest.raises(ValueError, match="no peeking"):
        tuning.backtest_range(pool, {"burst": FailedLoginBurst()}, train=(tiny_dataset.start, tiny_dataset.end),
                              test=(split, tiny_dataset.end))


def test_chosen_settings_are_plain_json():
    import orjson
    settings = tuning.chosen_settings(PasswordSpraying(prior_days=3.0), 0.7)
    assert orjson.loads(orjson.dumps(settings)) == settings
    assert settings["params"]["prior_days"] == 3.0 and settings["threshold"] == 0.7
