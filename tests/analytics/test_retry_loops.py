"""A service's first retry loop after its secret is rotated is not an attack; guessing around it still is."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from analytics import scenarios
from analytics.detectors import FailedLoginBurst, FailureThenSuccess, SlowFailures
from analytics.detectors.loops import RetryLoops
from tests.analytics.conftest import T0, burst, event, frame

SVC, HOST, CLIENT = "svc-payments", "10.0.77.5", "payments-worker/3.2 (okhttp/4.12.0)"
FAILURE_DETECTORS = (FailedLoginBurst, FailureThenSuccess, SlowFailures)


def _work(start, hours: float, *, every_min: float = 15.0, host: str = HOST) -> list[dict]:
    """The service logging in on a timer (with jitter) from its host and client, and running a query each time."""
    out, t, k = [], start, 0
    while t < start + timedelta(hours=hours):
        out.append(event(t, SVC, ip=host, country=None, asn=None, ua=CLIENT))
        out.append(event(t + timedelta(seconds=20), SVC, "query_executed", ip=host, country=None, asn=None, ua=CLIENT))
        t += timedelta(minutes=every_min * (0.7 + 0.6 * ((k * 37) % 11) / 10))
        k += 1
    return out


def _loop(start, minutes: float, *, every_s: float = 5.0, host: str = HOST, ua: str = CLIENT, fixed: bool = True
          ) -> list[dict]:
    """The secret rotated at ``start``: a retry every few seconds for ``minutes``, then (``fixed``) a success."""
    out, t, i = [], 0.0, 0
    while t < minutes * 60:
        out.append(event(start + timedelta(seconds=t), SVC, outcome="failure", ip=host, country=None, asn=None, ua=ua))
        t += every_s * (0.8 + 0.4 * ((i * 7) % 5) / 4)
        i += 1
    if fixed:
        out.append(event(start + timedelta(minutes=minutes, seconds=4), SVC, ip=host, country=None, asn=None, ua=ua))
    return out


@pytest.fixture(scope="module")
def fitted(history) -> pl.DataFrame:
    """The shared history with the service working quietly for its last four days."""
    return pl.concat([history, frame(*_work(T0 - timedelta(days=4), 4 * 24))], how="vertical_relaxed")


def _day(*extra: dict) -> pl.DataFrame:
    """A scored day: the service at work, its loop or an attack in the middle of it."""
    day = T0 + timedelta(days=1)
    return frame(*_work(day, 8), *extra)


def _on(found: pl.DataFrame, *entities: str) -> pl.DataFrame:
    return found.filter(pl.col("entity_value").is_in(list(entities)))


def test_a_rotated_secrets_retry_loop_ending_in_its_own_success_is_not_an_anomaly(fitted):
    loop = _day(*_loop(T0 + timedelta(days=1, hours=3), 45))  # 540 failures in 45 min, then fixed
    for cls in FAILURE_DETECTORS:
        found = cls().fit(fitted).detect(loop)
        assert _on(found, SVC, HOST).is_empty(), (cls.name, found.select("entity_value", "window_start", "score"))


def test_the_same_loop_from_a_pair_the_history_never_saw_is_still_paged(history, fitted):
    """Without the service's quiet history (or from another host) nothing vouches for the loop: scored as before."""
    loop = _day(*_loop(T0 + timedelta(days=1, hours=3), 45))
    unknown = FailedLoginBurst().fit(history).detect(loop)
    assert not _on(unknown, SVC, HOST).is_empty()
    elsewhere = _day(*_loop(T0 + timedelta(days=1, hours=3), 45, host="10.0.78.9"))
    assert not _on(FailedLoginBurst().fit(fitted).detect(elsewhere), SVC, "10.0.78.9").is_empty()


def test_a_fast_brute_force_from_a_new_address_at_the_service_is_found_even_during_its_loop(fitted):
    at = T0 + timedelta(days=1, hours=3, minutes=10)
    guesses = [dict(e, user_agent=CLIENT) for e in burst(at, SVC, 60, seconds=120, ip="185.220.7.7")]
    worked = event(at + timedelta(seconds=125), SVC, ip="185.220.7.7", country="RU", asn="AS60729", ua=CLIENT)
    attacked = _day(*_loop(T0 + timedelta(days=1, hours=3), 45), *guesses, worked)
    bursts = FailedLoginBurst().fit(fitted).detect(attacked)
    assert {SVC, "185.220.7.7"} <= set(bursts["entity_value"])
    stuffing = FailureThenSuccess().fit(fitted).detect(attacked)
    assert not _on(stuffing, SVC, "185.220.7.7").is_empty()


def test_an_insider_guessing_a_colleagues_password_from_the_shared_office_address_is_found(history):
    """The colleague works from that office address with that browser every day: a long-known pair, but shared by
    many accounts and a human's browser, so a run of failures from it that ends in a success is still stuffing."""
    office = (history.filter(pl.col("source_ip").is_not_null()).group_by("source_ip")
              .agg(pl.col("user_id").n_unique().alias("n")).sort("n", descending=True)["source_ip"][0])
    logins = history.filter((pl.col("source_ip") == office) & (pl.col("event_type") == "user_login")
                            & (pl.col("outcome") == "success"))
    usual = logins.group_by("user_id", "user_agent").agg(pl.col("timestamp").dt.date().n_unique().alias("days"),
                                                         pl.len().alias("n")).sort("days", "n", descending=True)
    colleague, browser = usual.row(0)[:2]
    assert usual.row(0)[2] >= 2 and history.filter(pl.col("source_ip") == office)["user_id"].n_unique() >= 10
    assert "svc" not in colleague and "Mozilla/" in browser
    learned = RetryLoops.learn(history.lazy()).pairs
    assert learned.filter(pl.col("source_ip") == office).is_empty()

    at = T0 + timedelta(hours=2)
    place = {"ip": office, "country": logins["source_country"][0], "asn": logins["source_asn"][0], "ua": browser}
    guesses = [event(at + timedelta(seconds=20 * i), colleague, outcome="failure", **place) for i in range(30)]
    takeover = frame(*guesses, event(at + timedelta(minutes=10, seconds=30), colleague, **place))
    stuffing = FailureThenSuccess().fit(history).detect(takeover)
    assert colleague in set(stuffing["entity_value"])
    assert colleague in set(FailedLoginBurst().fit(history).detect(takeover)["entity_value"])


def test_only_known_exclusive_programs_are_learned(history):
    start = T0 - timedelta(days=3)
    shared_host = [event(start + timedelta(days=d, minutes=m), f"svc-batch{k}", ip="10.0.90.1", country=None,
                         asn=None, ua="batch/1.0") for d in range(3) for m in range(0, 60, 10) for k in range(5)]
    browser_at_home = [event(start + timedelta(days=d, minutes=m), "u00007", ip="73.12.9.9", ua="Mozilla/5.0 x")
                       for d in range(3) for m in range(0, 60, 10)]
    one_day = [event(start + timedelta(minutes=m), "svc-new", ip="10.0.91.1", country=None, asn=None, ua="new/1")
               for m in range(0, 120, 5)]
    events = frame(*_work(start, 72), *shared_host, *browser_at_home, *one_day)
    pairs = RetryLoops.learn(pl.concat([history, events], how="vertical_relaxed").lazy()).pairs
    assert pairs.filter(pl.col("user_id") == SVC).rows() == [(SVC, HOST, CLIENT)]
    assert pairs.filter(pl.col("user_id").is_in(["svc-batch0", "u00007", "svc-new"])).is_empty()


def test_a_loop_is_cut_to_its_last_failure_and_nothing_else_is_touched(fitted):
    loops = RetryLoops.learn(fitted.lazy())
    day = T0 + timedelta(days=1)
    fixed = _loop(day, 30)
    unresolved = _loop(day + timedelta(hours=2), 20, fixed=False)  # not fixed (yet): scored in full
    flood = [event(day + timedelta(hours=4, seconds=s / 4), SVC, outcome="failure", ip=HOST, country=None, asn=None,
                   ua=CLIENT) for s in range(400)] + [event(day + timedelta(hours=4, minutes=2), SVC, ip=HOST,
                                                            country=None, asn=None, ua=CLIENT)]
    paused = _loop(day + timedelta(hours=6), 10, fixed=False) + _loop(day + timedelta(hours=7), 5)  # a 50-min pause
    other_client = _loop(day + timedelta(hours=9), 5, ua="curl/8.0")  # not the program's client
    kept = loops.thin(frame(*fixed, *unresolved, *flood, *paused, *other_client).lazy()).collect()
    failures = kept.filter(pl.col("outcome") == "failure").sort("timestamp")

    def between(lo: float, hi: float) -> pl.DataFrame:
        return failures.filter((pl.col("timestamp") >= day + timedelta(hours=lo))
                               & (pl.col("timestamp") < day + timedelta(hours=hi)))

    assert between(0, 1).height == 1  # the last failure stays, which its success resolves
    assert between(0, 1)["timestamp"][0].isoformat() == max(e["timestamp"] for e in fixed if e["outcome"] == "failure")
    assert between(2, 3).height == len(unresolved)
    assert between(4, 5).height == 400  # 240 a minute: no program retries that fast
    assert between(6, 6.5).height == len(paused) - len(_loop(day, 5))  # before the pause: not ended by the success
    assert between(7, 8).height == 1
    assert between(9, 10).height == len(other_client) - 1
    assert kept.filter(pl.col("outcome") == "success").height == 4  # every success stays


def test_generator_a_rotates_secrets_under_quiet_services():
    data = scenarios.generate(users=200, days=8, attack_days=3, seed=3)
    rotated = [i for i in data.lookalikes if i.note.startswith("secret rotated")]
    assert 3 <= len(rotated) <= 5
    for loop in rotated:
        sid = next(e for e in loop.entities if e.startswith("svc-"))
        mine = data.events.filter(pl.col("user_id") == sid)
        before = mine.filter(pl.col("timestamp") < loop.start)
        assert before["outcome"].unique().to_list() == ["success"]  # quiet all along
        assert before["timestamp"].dt.date().n_unique() >= 5 and set(before["source_ip"]) <= loop.entities
        assert loop.start >= data.attack_start
        failing = mine.filter(pl.col("outcome") == "failure")
        assert failing.height >= 10 and failing["timestamp"].max() <= loop.end
        after = mine.filter((pl.col("timestamp") > failing["timestamp"].max())
                            & (pl.col("event_type") == "user_login")).sort("timestamp")
        assert after["outcome"][0] == "success" and after["user_agent"][0] == failing["user_agent"][0]
        assert after["timestamp"][0] <= loop.end


def _live(*, loop_minutes: float, fixed: bool, now_after: float) -> tuple[pl.DataFrame, datetime]:
    """The service's quiet morning, then its secret rotated at 11:00: what the worker holds ``now_after`` minutes
    into the loop (no success of the service's inside the loop but its own fix)."""
    day = T0 + timedelta(days=1)
    rotated = day + timedelta(hours=3)
    now = rotated + timedelta(minutes=now_after)
    held = frame(*_work(day, 3), *_loop(rotated, loop_minutes, fixed=fixed)).filter(pl.col("timestamp") < now)
    return held, now


@pytest.mark.parametrize("cls", [FailedLoginBurst, SlowFailures])
def test_a_loop_still_open_at_the_live_edge_waits_for_how_it_ends_instead_of_paging(fitted, cls):
    """Live, 20 minutes into a rotated secret's loop, nothing is paged (offline the same open run is scored in
    full); once its success arrives it is a loop. A stored peak never lowers, so a page sent first could not be
    taken back."""
    model = cls().fit(fitted)
    held, now = _live(loop_minutes=45, fixed=True, now_after=20)
    assert held.filter(pl.col("outcome") == "failure").height > 200
    assert not _on(model.detect(held), SVC, HOST).is_empty()  # a closed history that ends here: an unresolved run
    assert _on(model.detect(held, now=now), SVC, HOST).is_empty()
    fixed, later = _live(loop_minutes=45, fixed=True, now_after=60)
    assert _on(model.detect(fixed, now=later), SVC, HOST).is_empty()


@pytest.mark.parametrize("cls", [FailedLoginBurst, SlowFailures])
def test_a_run_that_falls_silent_without_its_success_or_fails_for_hours_is_scored_in_full_live(fitted, cls):
    model = cls().fit(fitted)
    gave_up, now = _live(loop_minutes=20, fixed=False, now_after=20 + 31)  # silent for more than max_gap
    assert not _on(model.detect(gave_up, now=now), SVC, HOST).is_empty()
    still, now = _live(loop_minutes=300, fixed=False, now_after=4 * 60 + 10)  # open past max_pending
    assert not _on(model.detect(still, now=now), SVC, HOST).is_empty()


def test_a_loop_fixed_only_after_max_pending_is_scored_offline_as_it_was_live(fitted):
    """Live it paged at max_pending; a file gives the same anomaly, though the success came after."""
    loops = RetryLoops.learn(fitted.lazy())
    day = T0 + timedelta(days=1)
    long = frame(*_loop(day, 5 * 60))
    short = frame(*_loop(day, 3 * 60))
    assert loops.thin(long.lazy()).collect().filter(pl.col("outcome") == "failure").height == long.height - 1
    assert loops.thin(short.lazy()).collect().filter(pl.col("outcome") == "failure").height == 1


def test_guessing_from_elsewhere_is_found_at_the_live_edge_during_an_open_loop(fitted):
    held, now = _live(loop_minutes=45, fixed=True, now_after=20)
    at = now - timedelta(minutes=4)
    guesses = frame(*[dict(e, user_agent=CLIENT) for e in burst(at, SVC, 60, seconds=120, ip="185.220.7.7")])
    found = FailedLoginBurst().fit(fitted).detect(pl.concat([held, guesses], how="vertical_relaxed"), now=now)
    assert {SVC, "185.220.7.7"} <= set(found["entity_value"])
