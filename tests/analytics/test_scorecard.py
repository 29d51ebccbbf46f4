"""Scoring by incident on hand-made anomalies and labels, with the exact figures worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest

from analytics import labels as L
from analytics import scorecard
from analytics.detectors.base import ANOMALY_SCHEMA
from analytics.errors import MalformedInput
from analytics.scenarios import Incident

T0 = datetime(2025, 1, 6, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def anomalies(*rows: tuple[str, str, float, float]) -> pl.DataFrame:
    """(detector, entity, start hour, end hour) rows in the anomaly schema."""
    return pl.DataFrame([{"detector": d, "detector_version": "t", "entity_type": "user", "entity_value": e,
                          "window_start": at(a), "window_end": at(b), "score": 0.7, "severity": "medium",
                          "explanation": "{}", "sample_event_ids": []} for d, e, a, b in rows], schema=ANOMALY_SCHEMA)


def test_merge_joins_overlapping_and_adjacent_windows_per_detector_and_entity():
    found = anomalies(("d1", "u1", 0, 1 / 6), ("d1", "u1", 1 / 12, 0.25), ("d1", "u1", 1.0, 1 + 1 / 6),
                      ("d1", "u1", 3.0, 3 + 1 / 6), ("d2", "u1", 0, 1 / 6), ("d1", "u2", 0.1, 0.2))
    merged = scorecard.merge(found, timedelta(hours=1)).sort("detector", "entity_value", "start")
    assert merged.select("detector", "entity_value", "windows").rows() == [
        ("d1", "u1", 3), ("d1", "u1", 1), ("d1", "u2", 1), ("d2", "u1", 1)]
    first = merged.row(0, named=True)
    assert (first["start"], first["end"], first["first_end"]) == (at(0), at(1 + 1 / 6), at(1 / 6))
    # a gap of 45 minutes merges with a 1 h gap, not with a 30 min one
    assert scorecard.merge(found, timedelta(minutes=30)).filter(pl.col("detector") == "d1",
                                                                pl.col("entity_value") == "u1").height == 3


LABELS = L.Labels(
    incidents=[Incident("spray", at(10), at(10.5), frozenset({"ip1", "u1", "u2"})),
               Incident("spray", at(20), at(20.25), frozenset({"ip2", "u3"})),
               Incident("exfil", at(30), at(31), frozenset({"u4"})),
               Incident("spray", at(-5), at(-4), frozenset({"ip9"}))],  # before the scored span: not counted
    cohorts=[L.CohortEvent("close", at(40), at(44), frozenset({"u5", "u6"}))],
    users=500, scored_from=at(0), end=at(48),
)


def test_score_gives_recall_delay_false_rate_precision_and_cohort_blame():
    found = anomalies(
        ("burst", "ip1", 10.0, 10 + 1 / 12),  # spray #1 found 5 min after it starts
        ("burst", "ip1", 10.1, 10.2),  # the same alert incident
        ("ftos", "u9|ip2", 21.0, 21.1),  # spray #2 through the ip half of a user|ip entity, 50 min after its end
        ("burst", "u3", 21.4, 21.5),  # 70 min after spray #2 ended: beyond the 1 h grace, a false incident
        ("export", "u5", 41.0, 42.0),  # during the close: false, blamed on it
        ("export", "u6", 41.5, 41.6),  # another member: a second false incident
        ("export", "u7", 41.0, 42.0),  # not a member: false, no cohort event
        ("export", "u4", -3.0, -2.0),  # before scored_from: ignored
    )
    card = scorecard.score(found, LABELS, classes=("spray", "exfil", "stuffing"))
    by = {c.scenario: c for c in card.classes}
    assert (by["spray"].incidents, by["spray"].detected, by["spray"].recall) == (2, 2, 1.0)
    assert by["spray"].median_delay_s == pytest.approx((300 + 3600 * 1.1 - 0) / 2)  # 5 min and 66 min
    assert by["spray"].by_detector == {"burst": 1, "ftos": 1}
    assert (by["exfil"].recall, by["exfil"].median_delay_s) == (0.0, None)
    assert by["stuffing"].incidents == 0
    assert card.false_incidents == 4
    assert card.days == 2.0 and card.false_per_day_per_1000_users == pytest.approx(4 / 2 / 0.5)
    assert card.detectors["burst"] == {"incidents": 2, "true": 1, "false": 1, "windows": 3}
    assert card.precision("burst") == 0.5 and card.precision("ftos") == 1.0 and card.precision("export") == 0.0
    assert card.cohorts == {"close": {"events": 1, "false": 2, "export": 2}}
    assert card.unexplained_false == 2
    assert card.ignored_before == 1 and card.anomalies == 7
    assert card.passed() == {"recall": False, "false_incidents_per_day_per_1000_users": False}
    # What was missed, named, so a data scientist knows where to look (the spray before the span is not counted).
    assert card.missed == ["exfil u4 01-07 06:00–01-07 07:00"]
    assert card.detail_lines()[:2] == ["missed incidents:", "  exfil u4 01-07 06:00–01-07 07:00"]
    assert card.to_dict()["missed_incidents"] == card.missed
    many = scorecard.Scorecard(**{**card.__dict__, "missed": [f"x u{i}" for i in range(45)]})
    assert many.detail_lines()[41:43] == ["  … and 5 more (all of them in --json's missed_incidents)",
                                          "highest-scoring false incidents:"]


def test_nothing_found_on_a_quiet_month_meets_the_false_rate_target():
    quiet = L.Labels([], [L.CohortEvent("holiday", at(5), at(29), frozenset({"u1"}))], 1000, at(0), at(24 * 7))
    card = scorecard.score(anomalies(), quiet, classes=("spray",))
    assert card.false_incidents == 0 and card.false_per_day_per_1000_users == 0.0
    assert card.passed() == {"recall": True, "false_incidents_per_day_per_1000_users": True}
    assert card.cohorts == {"holiday": {"events": 1, "false": 0}}
    assert "0.00 per day per 1,000 users" in "\n".join(card.lines())


def test_labels_and_anomalies_files_round_trip(tmp_path):
    path = tmp_path / "labels.json"
    labelled = L.LabelledIncident("insider", at(1), at(1.1), frozenset({"x-1"}), actor="x-1",
                                  event_ids=("a", "b"), params=(("steps", 3.0),))
    L.write(path, L.Labels([labelled, *LABELS.incidents], LABELS.cohorts, 500, at(0), at(48), "b", {"seed": 4}))
    back = L.read(path)
    assert back.incidents[0] == labelled and back.incidents[1:] == LABELS.incidents
    assert back.cohorts == LABELS.cohorts and (back.users, back.scored_from, back.end) == (500, at(0), at(48))
    with pytest.raises(L.LabelsError, match="incidents\\[0\\]: 'yesterday' is not an ISO 8601 time"):
        L.loads(orjson.dumps([{"scenario": "x", "entities": ["u"], "start": "yesterday", "end": "x"}]))

    out = tmp_path / "anomalies.jsonl"
    found = anomalies(("burst", "ip1", 10.0, 10.1))
    out.write_bytes(b"".join(orjson.dumps({**r, "explanation": {"summary": "s"}}) + b"\n"
                             for r in found.iter_rows(named=True)))
    read = scorecard.read_anomalies(out)
    assert read.select("detector", "entity_value", "window_start", "window_end").rows() == [
        ("burst", "ip1", at(10.0), at(10.1))]
    out.write_text('{"detector": "x"}\n')
    with pytest.raises(MalformedInput, match="line 1"):
        scorecard.read_anomalies(out)


def test_a_merged_incident_is_timed_from_its_first_window_not_its_last():
    """analyze writes one row per incident: its delay is when its first window closed, not when it ended."""
    merged = anomalies(("burst", "u4", 30.0, 35.0)).with_columns(pl.lit(at(30 + 1 / 12)).alias("first_window_end"))
    card = scorecard.score(merged, LABELS)
    exfil = next(c for c in card.classes if c.scenario == "exfil")
    assert exfil.recall == 1.0 and exfil.median_delay_s == 300.0
    plain = scorecard.score(anomalies(("burst", "u4", 30.0, 35.0)), LABELS)
    assert next(c for c in plain.classes if c.scenario == "exfil").median_delay_s == 5 * 3600.0
