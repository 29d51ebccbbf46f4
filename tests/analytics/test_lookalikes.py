"""Benign look-alikes must not page, and the insider chain must: each on generator A's scored days.

The detectors are fitted on the dataset's history and score its last days (as ``evaluation`` does),
without peer groups: cohorts have to be found in the data. Each test counts the anomalies that land
on one look-alike (its entities, inside its time span) and that no attack explains.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest

from analytics import evaluation, pipeline, scenarios
from analytics.events import from_records
from storage.incidents import Incident
from tests.analytics.conftest import burst


@pytest.fixture(scope="module")
def dataset() -> scenarios.Dataset:
    """500 people over 12 days from a Monday; the last 5 (a working week) hold attacks and look-alikes."""
    return scenarios.generate(users=500, days=12, attack_days=5, seed=21, start=datetime(2024, 3, 4, tzinfo=UTC))


@pytest.fixture(scope="module")
def matched(dataset) -> pl.DataFrame:
    history = dataset.events.filter(pl.col("timestamp") < dataset.attack_start)
    detectors = pipeline.fit_all(history)
    scored = dataset.events.filter(pl.col("timestamp") >= dataset.attack_start - timedelta(hours=1))
    anomalies = pipeline.detect_all(detectors, scored, start=dataset.attack_start)
    return evaluation.match(anomalies, dataset.incidents)


@pytest.fixture(scope="module")
def found(matched) -> pl.DataFrame:
    return matched.filter(pl.col("incident").is_null())


def _on(found: pl.DataFrame, labels: list[Incident]) -> pl.DataFrame:
    """False anomalies on the labelled look-alikes (entity and time overlap)."""
    hits = [found.filter(pl.col("entity_value").is_in(sorted(i.entities)) & (pl.col("window_start") <= i.end)
                         & (pl.col("window_end") > i.start)) for i in labels]
    return pl.concat(hits).unique() if hits else found.clear()


def _pattern(dataset, name: str) -> list[Incident]:
    labels = [i for i in dataset.lookalikes if i.scenario == name]
    assert labels, f"the generator planned no {name}"
    return labels


def test_a_departments_month_end_close_is_a_cohort_shift_not_an_anomaly_per_member(dataset, found):
    close = _pattern(dataset, "month_end_close")
    assert len(close[0].entities) >= 15
    on = _on(found, close)
    assert on.height <= 2, on.select("detector", "entity_value", "window_start", "score")


def test_a_password_expiry_day_behind_the_vpn_is_not_credential_stuffing(dataset, found):
    expiry = _pattern(dataset, "password_expiry")
    assert len(expiry[0].entities) >= 50  # many people behind one corporate egress address
    on = _on(found, expiry)
    assert on.height == 0, on.select("detector", "entity_value", "window_start", "score")


def test_a_service_account_in_a_retry_loop_does_not_page_again_and_again(dataset, found):
    loops = [i for i in _pattern(dataset, "service_retry_loop") if i.start >= dataset.attack_start]
    on = _on(found, loops)
    assert on.height <= 1, on.select("detector", "entity_value", "window_start", "score")


def test_service_retry_loops_in_history_do_not_hide_a_slow_brute_force(dataset, matched):
    """Bursts of failures that a few service accounts have every day must not make every burst look normal."""
    assert any(i.start < dataset.attack_start for i in _pattern(dataset, "service_retry_loop"))
    slow = [k for k, i in enumerate(dataset.incidents)
            if i.scenario == "brute_force_slow" and not i.note.startswith("hard:")]  # the hard ones: slow_failures
    caught = matched.filter(pl.col("incident").is_in(slow) & (pl.col("detector") == "failed_login_burst"))
    assert set(caught["incident"]) == set(slow)


def test_a_traveller_abroad_for_days_draws_one_low_severity_anomaly_at_most(dataset, found):
    for trip in _pattern(dataset, "traveller"):
        on = _on(found, [trip])
        assert on.height <= 1, on.select("detector", "entity_value", "window_start", "score")
        assert set(on["severity"]) <= {"low"}


def test_a_release_night_of_config_changes_is_not_a_string_of_night_escalations(dataset, found):
    on = _on(found, _pattern(dataset, "release_night"))
    assert on.height <= 1, on.select("detector", "entity_value", "window_start", "score")


def test_a_holiday_with_little_traffic_raises_nothing(dataset, found):
    day = _pattern(dataset, "holiday")[0]
    on = found.filter((pl.col("window_start") >= day.start) & (pl.col("window_start") < day.end))
    assert on.height <= 1, on.select("detector", "entity_value", "window_start", "score")


def test_the_insider_chain_is_one_anomaly_that_lists_every_step(dataset):
    history = dataset.events.filter(pl.col("timestamp") < dataset.attack_start)
    detectors = pipeline.fit_all(history)
    scored = dataset.events.filter(pl.col("timestamp") >= dataset.attack_start - timedelta(hours=1))
    anomalies = pipeline.detect_all(detectors, scored, start=dataset.attack_start)
    matched = evaluation.match(anomalies, dataset.incidents)
    chains = [k for k, i in enumerate(dataset.incidents) if i.scenario == "insider_chain"]
    assert len(chains) == 5
    caught = matched.filter(pl.col("incident").is_in(chains) & (pl.col("detector") == "session_chain"))
    assert set(caught["incident"]) == set(chains)
    steps = orjson.loads(caught["explanation"][0])["steps"]
    assert {"permission_change", "api_key_created", "config_change"} <= {s["event_type"] for s in steps}
    assert all(s["surprisal"] >= 0 for s in steps)


def test_a_month_without_attacks_raises_at_most_one_false_incident_per_day_per_1000_users():
    quiet = scenarios.generate(users=400, days=10, attack_days=4, seed=5, attacks=False)
    assert not quiet.incidents
    # One canary in the middle of the file: a plain analyze must score the whole month, not only its last day.
    canary_at = quiet.start + timedelta(days=5, hours=11)
    canary = from_records(burst(canary_at, "u00003", 40, seconds=90, ip="185.220.66.6"))
    found = pipeline.analyze(pl.concat([quiet.events, canary]))
    assert {"u00003", "185.220.66.6"} <= set(found.filter(pl.col("window_start") <= canary_at + timedelta(minutes=5))
                                             ["entity_value"])
    false = found.filter(~pl.col("entity_value").is_in(["u00003", "185.220.66.6"]))
    scored_days = (quiet.end - quiet.start).days - 3  # after the default warm-up
    assert false.height / scored_days / (quiet.users / 1000) <= 1.0, false.group_by("detector").len()
