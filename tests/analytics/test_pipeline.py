"""The offline path: prequential ``analyze`` (fit only on the past), one incident per story, the session chain."""

from __future__ import annotations

from datetime import timedelta

import orjson
import polars as pl
import pytest

from analytics import calibration, lookback, pipeline
from analytics.detectors import PasswordSpraying, SessionChain
from analytics.detectors.base import ANOMALY_SCHEMA
from analytics.events import normalize
from tests.analytics.conftest import T0, burst, event, frame


def _row(start, minutes, score, entity="u1", detector="failed_login_burst"):
    return {"detector": detector, "detector_version": "v", "entity_type": "user", "entity_value": entity,
            "window_start": start, "window_end": start + timedelta(minutes=minutes), "score": score,
            "severity": calibration.severity(score), "explanation": orjson.dumps({"summary": str(score)}).decode(),
            "sample_event_ids": [str(score)]}


def test_overlapping_windows_of_one_entity_and_detector_are_one_incident_with_its_peak():
    rows = [_row(T0, 1, 0.7), _row(T0, 10, 0.95), _row(T0 + timedelta(minutes=10), 60, 0.8),
            _row(T0 + timedelta(hours=5), 1, 0.65),  # hours later: a new incident
            _row(T0, 1, 0.9, entity="u2"), _row(T0, 1, 0.9, detector="password_spraying")]
    merged = pipeline.merge_incidents(pl.DataFrame(rows, schema=ANOMALY_SCHEMA))
    mine = merged.filter(pl.col("entity_value") == "u1", pl.col("detector") == "failed_login_burst").sort("first_seen")
    assert mine.height == 2 and merged.height == 4
    first = mine.row(0, named=True)
    assert first["first_seen"] == first["window_start"] == T0
    assert first["last_seen"] == first["window_end"] == T0 + timedelta(minutes=70)
    assert first["peak_score"] == first["score"] == 0.95 and first["severity"] == "critical"
    assert first["windows"] == 3 and orjson.loads(first["explanation"])["summary"] == "0.95"
    assert set(pipeline.INCIDENT_SCHEMA) >= set(ANOMALY_SCHEMA)  # still writable to the anomalies table


def test_an_incident_could_first_be_reported_when_its_earliest_window_closed():
    """A 1 h window from 10:00 and the 10:17 minute inside it: the minute closed first (detection delay)."""
    rows = [_row(T0, 60, 0.8), _row(T0 + timedelta(minutes=17), 1, 0.7)]
    merged = pipeline.merge_incidents(pl.DataFrame(rows, schema=ANOMALY_SCHEMA)).row(0, named=True)
    assert merged["first_seen"] == T0 and merged["last_seen"] == T0 + timedelta(hours=1)
    assert merged["first_window_end"] == T0 + timedelta(minutes=18)


@pytest.fixture(scope="module")
def five_days(history) -> pl.DataFrame:
    return history.filter(pl.col("timestamp") < history["timestamp"].min() + timedelta(days=5))


def test_analyze_scores_every_window_after_the_warmup_with_models_of_the_past_only(five_days):
    lo, hi = five_days["timestamp"].min(), five_days["timestamp"].max()
    plan = pipeline.plan(five_days)
    assert plan.scored_from == (lo + pipeline.WARMUP).replace(minute=0, second=0, microsecond=0)
    assert plan.refit_every == pipeline.REFIT_EVERY and len(plan.steps) >= 4
    assert "warm-up 3.0 days" in plan.describe()
    day4 = (lo + timedelta(days=3, hours=10)).replace(minute=0, second=0, microsecond=0)
    day5 = day4 + timedelta(days=1)
    first = burst(day4, "u00001", 40, seconds=100)
    later = burst(day5, "u00002", 40, seconds=100, ip="185.220.7.7")
    with_first = pl.concat([five_days, normalize(frame(*first)).collect()])
    found = pipeline.analyze(with_first)
    assert {"u00001", "185.220.1.2"} <= set(found["entity_value"])
    assert found["window_start"].min() >= plan.scored_from
    # Prequential: what happens later (inside the same file span) does not change what was found before it.
    both = pipeline.analyze(pl.concat([with_first, normalize(frame(*later)).collect()]))
    assert {"u00002", "185.220.7.7"} <= set(both["entity_value"])
    keys = ["detector", "entity_value", "window_start", "score"]
    before = both.filter(pl.col("last_seen") < day5 - timedelta(hours=1)).select(keys).sort(keys)
    assert before.equals(found.filter(pl.col("last_seen") < day5 - timedelta(hours=1)).select(keys).sort(keys))
    assert hi >= day5  # the extra burst lay inside the file's span, so the refit cadence was the same


def test_a_file_shorter_than_the_warmup_is_scored_from_priors():
    events = frame(*burst(T0, "root", 60, seconds=120, ip="203.0.113.9"))
    plan = pipeline.plan(normalize(events).collect())
    assert plan.refit_every is None and "priors" in plan.describe()
    assert {"root", "203.0.113.9"} <= set(pipeline.analyze(events)["entity_value"])


def test_session_chain_does_not_hold_an_organisation_wide_step_against_each_person(history):
    """A password-expiry morning: dozens fail once, change their password and log in within the hour. The same
    rare steps by many people at once are the organisation's, not each person's; an insider's chain is still found."""
    detector = SessionChain().fit(history)
    people = sorted(u for u in history["user_id"].unique() if u.startswith("u"))[:40]
    morning = T0.replace(hour=8)
    expiry = []
    for i, who in enumerate(people):
        at = morning + timedelta(seconds=80 * i)
        expiry += [event(at, who, outcome="failure", metadata={"reason": "password_expired"}),
                   event(at + timedelta(seconds=20), who, "password_change", resource=who),
                   event(at + timedelta(seconds=40), who)]
    newcomer = "contractor-2"
    at = morning + timedelta(minutes=20)
    chain = [event(at, newcomer), event(at + timedelta(minutes=2), newcomer, "permission_change", resource=newcomer,
                                        metadata={"granted": "admin", "target_user": newcomer}),
             event(at + timedelta(minutes=4), newcomer, "api_key_created", metadata={"scope": "all"}),
             event(at + timedelta(minutes=7), newcomer, "config_change",
                   metadata={"setting": "audit.retention_days", "value": 1})]
    alone = detector.detect(frame(*expiry[:3]), min_score=0.0)  # one person's expiry on an ordinary day costs bits
    assert alone.height == 1 and orjson.loads(alone["explanation"][0])["observed"]["evidence_bits"] > 0
    found = detector.detect(frame(*expiry, *chain))
    assert found["entity_value"].to_list() == [newcomer]


def test_session_chain_adds_up_modest_steps_and_leaves_an_ordinary_session_alone(history):
    detector = SessionChain().fit(history)
    newcomer = "contractor-1"  # no history: judged against the population
    at = T0.replace(hour=3, minute=17)
    chain = [event(at, newcomer),
             event(at + timedelta(minutes=2), newcomer, "permission_change", resource=newcomer,
                   metadata={"granted": "admin", "target_user": newcomer}),
             event(at + timedelta(minutes=4), newcomer, "api_key_created", metadata={"scope": "all"}),
             event(at + timedelta(minutes=7), newcomer, "config_change",
                   metadata={"setting": "audit.retention_days", "value": 1})]
    worker = history.filter(pl.col("user_id").str.starts_with("u")).group_by("user_id").len().sort("len")["user_id"][-1]
    usual = history.filter(pl.col("user_id") == worker).sort("timestamp").tail(30)
    ordinary = usual.with_columns(pl.col("timestamp") + (T0 - usual["timestamp"].min()) + timedelta(days=1))
    found = detector.detect(pl.concat([normalize(frame(*chain)).collect(), ordinary]))
    assert found["entity_value"].to_list() == [newcomer]
    explanation = orjson.loads(found["explanation"][0])
    steps = {s["action"]: s for s in explanation["steps"]}
    assert {"permission_change/admin/self", "api_key_created/all", "config_change/audit"} <= set(steps)
    assert all(s["contribution"] > 0 for a, s in steps.items() if a != "user_login")
    assert sum(s["contribution"] for s in explanation["steps"]) == pytest.approx(
        explanation["observed"]["evidence_bits"], rel=1e-3)
    # Each step alone is modest: no single step would make the session anomalous.
    single = detector.score_frame(frame(chain[0], chain[2]))
    assert single["score"].max() < calibration.ANOMALY_SCORE


def test_every_detector_reports_the_same_rows_on_every_run(small_dataset, history):
    """Scoring is a function of the events: the same windows, scores, explanations and sample ids each time
    (a rerun over unchanged data must rewrite no stored incident; group_by emits groups in no set order)."""
    detectors = pipeline.fit_all(history)
    attacks = small_dataset.events.filter(pl.col("timestamp") >= small_dataset.attack_start - timedelta(hours=6))
    keys = ["detector", "entity_type", "entity_value", "window_start"]
    first = pipeline.detect_all(detectors, attacks, min_score=0.0).sort(keys)
    assert first.height > 100 and first["detector"].n_unique() >= 5
    for _ in range(3):
        again = pipeline.detect_all(detectors, attacks, min_score=0.0).sort(keys)
        assert again.equals(first)


def test_every_detector_reports_the_same_rows_whatever_order_the_events_come_in(small_dataset, history):
    """Samples, firsts and peaks are chosen in time order, not in the order rows reach a step (a join before a
    group_by reorders them): a burst's ten sample ids of forty failures were whichever the join emitted first,
    and a second scoring run rewrote two stored incidents with other ids."""
    detectors = pipeline.fit_all(history)
    attacks = small_dataset.events.filter(pl.col("timestamp") >= small_dataset.attack_start - timedelta(hours=6))
    keys = ["detector", "entity_type", "entity_value", "window_start"]
    first = _settled(pipeline.detect_all(detectors, attacks, min_score=0.0).sort(keys))
    assert first.height > 100
    for seed in (1, 2):
        shuffled = attacks.sample(fraction=1.0, shuffle=True, seed=seed)
        again = _settled(pipeline.detect_all(detectors, shuffled, min_score=0.0).sort(keys))
        assert again.equals(first), seed


def _settled(found: pl.DataFrame) -> pl.DataFrame:
    """Scores and explanation figures to 9 significant digits: sums taken in another order differ in their last
    digits (which the incident store treats as a tie), everything else must be identical."""
    def rounded(value):
        if isinstance(value, float):
            return float(f"{value:.9g}")
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rounded(v) for v in value]
        return value
    return found.with_columns(
        pl.col("score").map_elements(rounded, return_dtype=pl.Float64),
        pl.col("explanation").map_elements(lambda e: orjson.dumps(rounded(orjson.loads(e))).decode(),
                                           return_dtype=pl.String))


def _range(detector, events: pl.DataFrame, low, context_from, high) -> pl.DataFrame:
    """What the scoring job gives ``detector`` for a range from ``low``: every event from ``context_from``, and
    before it what the detector declares it reads (``analytics.lookback``)."""
    recent = events.filter((pl.col("timestamp") >= context_from) & (pl.col("timestamp") < high))
    since = low - lookback.reach(detector, bound=timedelta(days=7))
    if since >= context_from:
        return recent
    longer = events.filter((pl.col("timestamp") >= since) & (pl.col("timestamp") < context_from))
    if types := lookback.event_types(detector):
        longer = longer.filter(pl.col("event_type").is_in(types))
    return pl.concat([longer, recent])


def test_a_range_scored_from_a_later_start_reports_its_windows_as_the_earlier_range_did(small_dataset, history):
    """The worker's runs start wherever their watermark is; the windows two runs both report must be the same
    rows, or the second rewrites the first's incidents. A release night's crowd is counted over whole periods
    and a day's exports are judged among the day's (each detector declares that lookback), and a 4-hour export
    window whose start already had a shorter anomalous window is that start's longer window in either run."""
    detectors = pipeline.fit_all(history)
    events = small_dataset.events
    hour = timedelta(hours=1)
    checked = 0
    for name, detector in detectors.items():
        for offset in range(0, 46, 2):  # every other hour of the two attack days
            start = small_dataset.attack_start.replace(minute=0, second=0, microsecond=0) + offset * hour
            end = start + 2 * hour
            early = detector.detect(_range(detector, events, start, start - hour, end), start=start, min_score=0.3,
                                    now=end)
            late = detector.detect(_range(detector, events, start + hour, start, end), start=start + hour,
                                   min_score=0.3, now=end)
            both = ((pl.col("window_end") > start + hour) if detector.scores_windows_closing_in_range
                    else (pl.col("window_start") >= start + hour))
            keys = ["entity_type", "entity_value", "window_start"]
            early, late = early.filter(both).sort(keys), late.filter(both).sort(keys)
            assert late.equals(early), (name, start)
            checked += early.height
    assert checked > 50


def _expiry_morning(events: pl.DataFrame, at, *, resolved_after: float) -> tuple[list[dict], str, list[str]]:
    """Nine people behind the busiest office address each fail once at ``at`` (an expired password) and get in
    ``resolved_after`` seconds later from the same address."""
    office = (events.filter(pl.col("outcome") == "success").group_by("source_ip")
              .agg(pl.col("user_id").n_unique().alias("n")).sort("n", descending=True)["source_ip"][0])
    people = sorted(events.filter(pl.col("source_ip") == office)["user_id"].unique().to_list())[:9]
    place = {"ip": office, "country": "US", "asn": "AS7922"}
    out = []
    for i, who in enumerate(people):
        out.append(event(at + timedelta(seconds=2 * i), who, outcome="failure", **place))
        out.append(event(at + timedelta(seconds=2 * i + resolved_after), who, **place))
    return out, office, people


def test_failures_resolved_just_after_a_refit_step_are_resolved_in_a_file(five_days):
    """A step of ``analyze`` read nothing after its end, so people who failed in its last minute and got in
    seconds later were nine unresolved failures from one address: a spray, paged at 1.00 in generator A
    (a password-expiry morning behind the VPN). The step reads the hour after it, as the worker's rescoring
    does, for its own windows only."""
    boundary = pipeline.plan(five_days).steps[2]
    morning, office, people = _expiry_morning(five_days, boundary - timedelta(seconds=40), resolved_after=45)
    found = pipeline.analyze(pl.concat([five_days, normalize(frame(*morning)).collect()]))
    failing = ("failed_login_burst", "password_spraying", "slow_failures", "failure_then_success")
    about = found.filter(pl.col("detector").is_in(failing) & pl.col("entity_value").is_in([office, *people]))
    assert about.is_empty(), about.select("detector", "entity_value", "window_start", "score").rows()


def test_at_the_live_edge_a_failure_its_owner_may_still_resolve_waits_and_a_spray_does_not(five_days):
    """Live, the worker scores a minute after the failures, before the successes: held while they may still be
    resolved (an address that has done legitimate work, for ``resolve_minutes``); a spray from an address that
    never worked is judged at once."""
    at = five_days["timestamp"].max() + timedelta(hours=1)
    morning, office, _ = _expiry_morning(five_days, at, resolved_after=90)
    now = at + timedelta(minutes=1)
    seen = pl.concat([five_days.filter(pl.col("timestamp") >= at - timedelta(hours=2)),
                      normalize(frame(*morning)).collect().filter(pl.col("timestamp") < now)])
    model = PasswordSpraying().fit(five_days)
    assert office in set(model.detect(seen)["entity_value"])  # closed at ``now``: nine unresolved failures
    assert office not in set(model.detect(seen, now=now)["entity_value"])
    sprayed = [dict(e, source_ip="185.220.9.9") for e in burst(at, "x", 1)]
    spray = [dict(sprayed[0], user_id=f"u{i:05d}", event_id=f"00000000-0000-4000-8000-{i:012d}") for i in range(12)]
    live = pl.concat([seen, normalize(frame(*spray)).collect()])
    assert "185.220.9.9" in set(model.detect(live, now=now)["entity_value"])


def _escalation(at, who: str) -> list[dict]:
    return [event(at, who), event(at + timedelta(minutes=2), who, "permission_change", resource=who,
                                  metadata={"granted": "admin", "target_user": who}),
            event(at + timedelta(minutes=4), who, "config_change", metadata={"setting": "audit.retention_days"}),
            event(at + timedelta(minutes=6), who, "config_change", metadata={"setting": "mfa.required"})]


def test_an_alarmed_chain_in_the_history_does_not_make_the_next_one_ordinary(history):
    """The demo's nights: each night someone else escalates. Learned as the population's, the two earlier
    chains in the refit's history made tonight's steps 2^6 times likelier each (37 bits, not an anomaly). Chains
    alarmed on leave the population's shares of their rare steps, each judged as if left out of the history, so
    two earlier chains cannot vouch for each other; a step many actors take stays learned."""
    tonight = frame(*_escalation(T0.replace(hour=1, minute=40), "contractor-9"))
    base = SessionChain().fit(history).score_frame(tonight)["score"].max()
    earlier = [e for d in (1, 2) for e in _escalation(T0.replace(hour=1, minute=41) - timedelta(days=d),
                                                         f"contractor-{d}")]
    refitted = pl.concat([history, frame(*earlier)], how="diagonal_relaxed").sort("timestamp")
    detector = SessionChain().fit(refitted)
    assert "permission_change/admin/self" not in detector.population_
    assert detector.score_frame(tonight)["score"].max() == pytest.approx(base, abs=0.02)
    assert base >= calibration.ANOMALY_SCORE
    # Five actors each granting themselves admin (self-service elevation): the organisation's practice, learned.
    practice = [e for d in range(1, 6) for e in _escalation(T0.replace(hour=1, minute=41) - timedelta(days=d),
                                                            f"contractor-{d}")[1:2]]
    shared = SessionChain().fit(pl.concat([history, frame(*practice)], how="diagonal_relaxed").sort("timestamp"))
    assert shared.population_["permission_change/admin/self"] > 0


def test_an_alarmed_chain_that_repeats_a_rare_step_leaves_every_repeat_out_of_the_population(history):
    """A session's row names each of its actions once (its first occurrence); a chain that granted itself admin
    twice left the second grant in the population's shares, so tonight's self-grant by someone else was a
    step the population had taken."""
    tonight = frame(*_escalation(T0.replace(hour=1, minute=40), "contractor-9"))
    base = SessionChain().fit(history).score_frame(tonight)["score"].max()
    at = T0.replace(hour=1, minute=41) - timedelta(days=1)
    earlier = _escalation(at, "contractor-1")
    again = event(at + timedelta(minutes=3), "contractor-1", "permission_change",
                  resource="contractor-1", metadata={"granted": "admin", "target_user": "contractor-1"})
    refitted = pl.concat([history, frame(*earlier, again)], how="diagonal_relaxed").sort("timestamp")
    detector = SessionChain().fit(refitted)
    assert "permission_change/admin/self" not in detector.population_, detector.population_
    assert detector.score_frame(tonight)["score"].max() == pytest.approx(base, abs=0.02)


def test_in_a_days_history_two_alarmed_chains_do_not_stretch_the_tail(history):
    """`make up`'s first days: a small history, so the calibration's tail is fitted on its top ten sessions or
    so, and the two earlier chains among them stretched it (here its scale from 2 bits to 4, and tonight's chain
    scored 0.37 instead of 1.0). Judged against that tail they were not alarmed either, and stayed learned: in
    `make up`'s store the scale went from about 3.5 bits to 6 and the third night's chain scored 0.40. Alarms
    are judged against the sessions without rare actions, and leave the tail."""
    day = history.filter(pl.col("timestamp") >= history["timestamp"].max() - timedelta(hours=30))
    tonight = frame(*_escalation(T0.replace(hour=1, minute=40), "contractor-9"))
    alone = SessionChain().fit(day)
    earlier = [e for d in (1, 2) for e in _escalation(T0.replace(hour=1, minute=41) - timedelta(days=d),
                                                         f"contractor-{d}")]
    detector = SessionChain().fit(pl.concat([day, frame(*earlier)], how="diagonal_relaxed").sort("timestamp"))
    assert alone.score_frame(tonight)["score"].max() >= calibration.ANOMALY_SCORE
    assert detector.score_frame(tonight)["score"].max() == pytest.approx(alone.score_frame(tonight)["score"].max(),
                                                                         abs=0.02)
    assert detector.tail_.scale_ == pytest.approx(alone.tail_.scale_, rel=0.05)
    learned = SessionChain(alarm_score=1.0).fit(pl.concat([day, frame(*earlier)], how="diagonal_relaxed")
                                                .sort("timestamp"))
    assert learned.score_frame(tonight)["score"].max() < calibration.ANOMALY_SCORE
    assert learned.tail_.scale_ > 1.5 * alone.tail_.scale_
