"""Generator A's hard variants are found, and the habits they hide among are not anomalies.

The detectors are fitted on the dataset's attack-free history and score its last days, as
``evaluation`` does with ``--baseline-until``; no peer groups are given. Each attack test looks
only at the ``hard:`` instances of its class; each benign test counts anomalies on its entities.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from analytics import evaluation, hardcases, lookalikes, pipeline, scenarios
from analytics.detectors import NewContext
from tests.analytics.conftest import T0, event, frame


@pytest.fixture(scope="module")
def dataset() -> scenarios.Dataset:
    """500 people over 12 days from a Monday; the last 5 hold the attacks, easy and hard."""
    return scenarios.generate(users=500, days=12, attack_days=5, seed=21, start=datetime(2024, 3, 4, tzinfo=UTC))


@pytest.fixture(scope="module")
def anomalies(dataset) -> pl.DataFrame:
    return pipeline.analyze(dataset.events, baseline_until=dataset.attack_start)


def _hard(dataset, scenario: str) -> list:
    found = [i for i in dataset.incidents if i.scenario == scenario and i.note.startswith("hard:")]
    assert len(found) >= 2, f"the generator injected too few hard {scenario}"
    return found


def _missed(anomalies: pl.DataFrame, incidents: list) -> list[str]:
    matched = evaluation.match(anomalies, incidents)
    hit = set(matched["incident"].drop_nulls().to_list())
    return [incidents[k].note for k in range(len(incidents)) if k not in hit]


def test_the_hard_variants_are_patient_and_blended_in(dataset):
    events = dataset.events
    for i in _hard(dataset, "brute_force_slow"):
        assert i.end - i.start >= timedelta(hours=8)
        assert len(i.entities) - 1 >= 4  # rotating addresses
    for i in _hard(dataset, "password_spraying_slow"):
        people = [e for e in i.entities if e.startswith("u")]
        assert len(people) >= 30 and len(i.entities) - len(people) <= 3
        sources = [e for e in i.entities if not e.startswith("u")]
        span = events.filter(pl.col("source_ip").is_in(sources) & (pl.col("outcome") == "failure"))
        assert span.height <= 1.2 * len(people) + 5  # about one guess per person
    finance = {u for u, g in dataset.peer_groups.items() if g == "finance"}
    close = next(i for i in dataset.lookalikes if i.scenario == "month_end_close")
    in_close = [i for i in _hard(dataset, "exfiltration") if "close" in i.note]
    staged = [i for i in _hard(dataset, "exfiltration") if "staged" in i.note]
    assert len(in_close) >= 2 and len(staged) >= 2
    for i in in_close:
        assert set(i.entities) <= finance and close.start <= i.start <= close.end
    for i in staged:  # dozens of exports over hours, none of them large on its own
        (who,) = i.entities
        taken = events.filter((pl.col("user_id") == who) & pl.col("event_type").is_in(["data_export", "export_requested"])
                              & pl.col("timestamp").is_between(i.start, i.end))
        assert taken.height >= 12 and i.end - i.start >= timedelta(minutes=30)
        rows = taken["metadata"].str.json_path_match("$.rows").cast(pl.Int64)
        assert rows.max() < 100_000  # an easy exfiltration's exports are 200,000-900,000 rows each
    late = {u for i in dataset.lookalikes if i.scenario == "late_worker" for u in i.entities}
    for i in _hard(dataset, "night_privilege_escalation"):
        assert set(i.entities) <= late
    elsewhere = {c for c, _, _ in hardcases.ELSEWHERE}
    for i in _hard(dataset, "new_country_login"):
        ip = next(e for e in i.entities if "." in e)
        row = events.filter(pl.col("source_ip") == ip).row(0, named=True)
        assert row["source_country"] in elsewhere and "Chrome" in row["user_agent"]


def test_slow_brute_force_from_rotating_proxies_is_found(dataset, anomalies):
    assert _missed(anomalies, _hard(dataset, "brute_force_slow")) == []


def test_slow_password_spray_over_a_night_is_found(dataset, anomalies):
    assert _missed(anomalies, _hard(dataset, "password_spraying_slow")) == []


def test_a_late_worker_granting_themselves_a_role_is_found(dataset, anomalies):
    assert _missed(anomalies, _hard(dataset, "night_privilege_escalation")) == []


def test_an_account_used_from_a_travel_country_with_a_current_browser_is_found(dataset, anomalies):
    assert _missed(anomalies, _hard(dataset, "new_country_login")) == []


def test_exfiltration_inside_a_departments_month_end_close_or_staged_over_hours_is_found(dataset, anomalies):
    assert _missed(anomalies, _hard(dataset, "exfiltration")) == []


def _on_benign(dataset, anomalies: pl.DataFrame, scenario: str) -> pl.DataFrame:
    labels = [i for i in dataset.lookalikes if i.scenario == scenario]
    assert labels, f"the generator planned no {scenario}"
    false = evaluation.match(anomalies, dataset.incidents).filter(pl.col("incident").is_null()).drop("incident")
    return evaluation.match(false, labels).filter(pl.col("incident").is_not_null())


def test_a_monitor_failing_steadily_every_few_minutes_for_weeks_is_not_an_anomaly(dataset, anomalies):
    pollers = [i for i in dataset.lookalikes if any(e.startswith("svc-monitor") for e in i.entities)]
    assert len(pollers) == 2
    failures = dataset.events.filter(pl.col("user_id").str.starts_with("svc-monitor")
                                     & (pl.col("timestamp") >= dataset.attack_start))
    assert failures.height > 500  # hundreds of unresolved failures in the scored days alone
    on = anomalies.filter(pl.col("entity_value").str.starts_with("svc-monitor")
                          | pl.col("entity_value").str.starts_with("10.0.8."))
    assert on.is_empty(), on.select("detector", "entity_value", "window_start", "score")


def test_people_who_often_work_late_are_not_anomalies_for_it(dataset, anomalies):
    on = _on_benign(dataset, anomalies, "late_worker")
    assert on.is_empty(), on.select("detector", "entity_value", "window_start", "score")


def test_a_browser_version_bump_is_not_a_new_client(history):
    detector = NewContext().fit(history)
    chrome = history.filter(pl.col("user_id").str.starts_with("u") & pl.col("user_agent").str.contains("Chrome/126")
                            & pl.col("source_ip").is_not_null())
    user = chrome.group_by("user_id").len().sort("len")["user_id"][-1]
    known = chrome.filter(pl.col("user_id") == user).row(0, named=True)
    bumped = known["user_agent"].replace("Chrome/126.0", "Chrome/131.0")
    assert bumped != known["user_agent"]
    same_place = {"ip": known["source_ip"], "country": known["source_country"], "asn": known["source_asn"]}
    found = detector.detect(frame(event(T0.replace(hour=3), user, ua=bumped, **same_place)))
    assert found.is_empty()
    other = detector.detect(frame(event(T0.replace(hour=3), user, ua="curl/8.0", **same_place)))
    assert other["entity_value"].to_list() == [user]


@pytest.mark.parametrize("variant", lookalikes.STALE_VARIANTS)
def test_a_service_account_whose_stale_credential_keeps_failing_is_not_an_anomaly(dataset, anomalies, variant):
    """Timers with jitter, fleets of hosts, bursts on every deploy, a fix that comes too late: habits, not attacks."""
    loop = next(i for i in dataset.lookalikes if i.note == f"stale credential: {variant}")
    sid = next(e for e in loop.entities if e.startswith("svc-"))
    failures = dataset.events.filter((pl.col("user_id") == sid) & (pl.col("outcome") == "failure")
                                     & (pl.col("timestamp") >= dataset.attack_start))
    assert failures.height >= 100  # it keeps failing through the scored days
    resolved = dataset.events.filter((pl.col("user_id") == sid) & (pl.col("outcome") == "success"))
    assert resolved.height <= 12  # never, or once a night: not within minutes of each run
    on = anomalies.filter(pl.col("entity_value").is_in(sorted(loop.entities)))
    assert on.is_empty(), on.group_by("detector", "entity_value").len().sort("detector").rows()


@pytest.mark.parametrize("note", ["a multi-country trip", "a multi-country trip, the browser updated on the way",
                                  "a conference in"])
def test_travellers_on_the_move_are_not_anomalies(dataset, anomalies, note):
    """Several countries in a week, a browser that updates itself abroad, colleagues behind one hotel address."""
    trip = next(i for i in dataset.lookalikes if i.scenario == "traveller" and i.note.startswith(note))
    people = sorted(trip.entities)
    away = dataset.events.filter(pl.col("user_id").is_in(people) & (pl.col("timestamp") >= trip.start)
                                 & (pl.col("timestamp") < trip.end) & (pl.col("outcome") == "success"))
    home = dataset.events.filter(pl.col("user_id").is_in(people) & (pl.col("timestamp") < dataset.attack_start))
    assert away.height and not set(away["source_ip"]) & set(home["source_ip"])  # every event of the trip is abroad
    if note == "a conference in":
        assert len(people) >= 4 and away["source_ip"].n_unique() == 1
    elif "browser" in note:
        assert set(away["user_agent"]) - set(home["user_agent"])  # a version the history never had
    else:
        assert away["source_country"].n_unique() >= 2
    on = anomalies.filter(pl.col("entity_value").is_in(people) & (pl.col("window_start") < trip.end)
                          & (pl.col("window_end") > trip.start))
    assert on.is_empty(), on.group_by("detector", "entity_value").len().rows()
