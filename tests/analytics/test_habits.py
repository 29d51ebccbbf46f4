"""A stale credential's failure stream is a habit judged by its changes; guessing never becomes a habit."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from analytics.detectors import FailedLoginBurst, FailureThenSuccess, SlowFailures
from analytics.detectors.habits import FailureHabits
from tests.analytics.conftest import T0, burst, event, frame

AGENT = "report-runner/1.8"


def _timer(start, days: float, *, every_min: float = 7.0, hosts=("10.0.30.1", "10.0.30.2")) -> list[dict]:
    """A service whose secret went stale: one failure every few minutes from its hosts, never a success."""
    out, t, k = [], start, 0
    while t < start + timedelta(days=days):
        out.append(event(t, "svc-report", outcome="failure", ip=hosts[k % len(hosts)], country=None, asn=None,
                         ua=AGENT))
        t += timedelta(minutes=every_min * (0.6 + 0.8 * ((k * 37) % 11) / 10))
        k += 1
    return out


def _history(history: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([history, frame(*_timer(T0 - timedelta(days=4), 4))], how="vertical_relaxed")


def test_a_stale_timer_is_a_habit_and_guessing_is_not(history):
    start = T0 - timedelta(days=4)
    rotating = [event(start + timedelta(hours=h), "u00042", outcome="failure", ip=f"{20 + h}.{h}.1.1", ua=AGENT)
                for h in range(60)]  # a slow brute force: one client, days long, but a new network every hour
    one_day = burst(start, "u00043", 200, seconds=3600 * 5, ip="185.220.1.9")  # many failures, one day only
    habits = FailureHabits.learn(pl.concat([history, frame(*_timer(start, 4), *rotating, *one_day)],
                                           how="vertical_relaxed").lazy())
    habitual = set(habits.streams["user_id"])
    assert "svc-report" in habitual and not habitual & {"u00042", "u00043"}
    assert set(habits.networks.filter(pl.col("user_id") == "svc-report")["_network"]) == {"10.0.30"}


def test_only_the_failures_that_fit_the_habit_are_set_aside(history):
    habits = FailureHabits.learn(_history(history).lazy())
    later = T0 + timedelta(days=1)
    usual = _timer(later, 0.5, hosts=("10.0.30.7",))  # a new replica in the same subnet
    outside = [event(later + timedelta(minutes=m), "svc-report", outcome="failure", ip="185.220.9.9", ua=AGENT)
               for m in range(3)]
    other_client = [event(later, "svc-report", outcome="failure", ip="10.0.30.1", ua="curl/8.0")]
    flood = [event(later + timedelta(hours=13, seconds=s), "svc-report", outcome="failure", ip="10.0.30.1", ua=AGENT)
             for s in range(0, 600, 2)]  # 300 in ten minutes: a rate the habit never had
    kept = habits.drop_from(frame(*usual, *outside, *other_client, *flood).lazy()).collect()
    assert kept.filter(pl.col("source_ip") == "10.0.30.7").is_empty()
    assert kept.filter(pl.col("source_ip") == "185.220.9.9").height == 3
    assert kept.filter(pl.col("user_agent") == "curl/8.0").height == 1
    assert kept.filter(pl.col("timestamp") >= later + timedelta(hours=13)).height == 300


def test_the_failure_detectors_page_on_the_habits_change_not_on_its_persistence(history):
    fitted = _history(history)
    later = T0 + timedelta(days=1)
    usual = frame(*_timer(later, 1))
    attacked = frame(*_timer(later, 1), *burst(later + timedelta(hours=5), "svc-report", 40, ip="185.220.66.6"))
    for detector in (FailedLoginBurst(), SlowFailures()):
        detector.fit(fitted)
        assert detector.detect(usual).is_empty(), detector.name
        found = detector.detect(attacked)
        assert "svc-report" in set(found["entity_value"]) or "185.220.66.6" in set(found["entity_value"]), \
            detector.name
    stuffing = FailureThenSuccess().fit(fitted)
    fixed = frame(*_timer(later, 0.1), event(later + timedelta(hours=2, minutes=30), "svc-report", ip="10.0.30.1",
                                             country=None, asn=None, ua=AGENT))
    assert stuffing.detect(fixed).is_empty()


def test_before_the_habit_the_same_stream_was_flagged(history):
    """Without the habit (today's detectors, fitted on history without the timer) the same day pages."""
    later = T0 + timedelta(days=1)
    found = SlowFailures().fit(history).detect(frame(*_timer(later, 1)))
    assert not found.is_empty()
