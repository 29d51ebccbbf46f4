"""Anomalies are stored as incidents: windows of one detector and entity merge into one row that grows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl

from analytics.detectors import ANOMALY_SCHEMA
from storage.timescale import anomalies as store

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def _window(start_min: int, length_min: int, score: float, *, entity: str = "alice", detector: str = "login_volume",
            severity: str | None = None, ids: int = 2) -> dict:
    severity = severity or ("critical" if score >= 0.99 else "high" if score >= 0.95 else "medium")
    return {"detector": detector, "detector_version": f"{detector}-v1-{int(score * 1000)}", "entity_type": "user",
            "entity_value": entity, "window_start": T0 + timedelta(minutes=start_min),
            "window_end": T0 + timedelta(minutes=start_min + length_min), "score": score, "severity": severity,
            "explanation": orjson.dumps({"summary": f"peak {score}"}).decode(),
            "sample_event_ids": [str(uuid.uuid5(uuid.NAMESPACE_OID, f"{entity}{start_min}-{i}")) for i in range(ids)]}


def _frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=ANOMALY_SCHEMA)


def _all(pool) -> list[store.Anomaly]:
    return store.list_anomalies(pool, store.AnomalyQuery(order="oldest"))


def test_overlapping_and_adjacent_windows_are_one_incident_with_its_peak(pool):
    # Ten-minute windows sliding by five minutes for an hour, then a 30-minute quiet gap, then one more.
    rows = [_window(m, 10, 0.9 + m / 1000) for m in range(0, 60, 5)]
    rows[4] = _window(20, 10, 0.999)  # the peak
    rows.append(_window(95, 10, 0.91))
    result = store.upsert(pool, _frame(*rows), detected_at=T0 + timedelta(hours=2))
    assert result.inserted == 1
    [incident] = _all(pool)
    assert (incident.window_start, incident.window_end) == (T0, T0 + timedelta(minutes=105))
    assert incident.windows == 13
    assert incident.score == 0.999 and incident.severity == "critical"
    assert incident.peak_at == T0 + timedelta(minutes=20)
    assert incident.explanation["summary"] == "peak 0.999"
    assert incident.detector_version == "login_volume-v1-999"
    assert incident.sample_event_ids[:2] == tuple(uuid.UUID(i) for i in rows[4]["sample_event_ids"])
    assert len(incident.sample_event_ids) == 26


def test_windows_further_apart_than_the_gap_or_of_another_entity_or_detector_stay_apart(pool):
    frame = _frame(_window(0, 10, 0.96), _window(80, 10, 0.96), _window(0, 10, 0.96, entity="bob"),
                   _window(0, 10, 0.96, detector="export_volume"))
    assert store.upsert(pool, frame, detected_at=T0, merge_gap=timedelta(hours=1)).inserted == 4
    spans = sorted((a.detector, a.entity_value, a.window_start, a.windows) for a in _all(pool))
    assert spans == [("export_volume", "alice", T0, 1), ("login_volume", "alice", T0, 1),
                     ("login_volume", "alice", T0 + timedelta(minutes=80), 1), ("login_volume", "bob", T0, 1)]
    # A wider merge gap (the setting) joins alice's two on the next write that touches them.
    store.upsert(pool, _frame(_window(40, 10, 0.95)), detected_at=T0, merge_gap=timedelta(minutes=30))
    alice = [a for a in _all(pool) if a.entity_value == "alice" and a.detector == "login_volume"]
    assert [(a.window_start, a.window_end, a.windows) for a in alice] == [(T0, T0 + timedelta(minutes=90), 3)]


def test_rescoring_the_same_windows_changes_nothing(pool):
    rows = [_window(m, 10, 0.9 + m / 1000) for m in range(0, 60, 5)]
    store.upsert(pool, _frame(*rows), detected_at=T0)
    before = _all(pool)
    again = store.upsert(pool, _frame(*rows), detected_at=T0 + timedelta(hours=3))
    assert (again.inserted, again.updated) == (0, 0)
    # Any part of the same windows, in any order, changes nothing either.
    assert store.upsert(pool, _frame(*reversed(rows[3:7])), detected_at=T0 + timedelta(hours=4)).updated == 0
    assert _all(pool) == before


def test_a_rescored_peak_that_differs_in_its_last_digits_is_the_same_peak(pool):
    """Sums run in another order give a score a few units in the 16th decimal apart: a tie, which the stored peak
    wins (its details stay), not a higher score that rewrites the incident; a real rise still does."""
    peak = _window(0, 10, 0.27861425805442663)
    store.upsert(pool, _frame(peak), detected_at=T0)
    before = _all(pool)
    noise = {**peak, "score": 0.27861425805442697, "explanation": orjson.dumps({"summary": "rerun"}).decode()}
    assert store.upsert(pool, _frame(noise), detected_at=T0 + timedelta(hours=1)).updated == 0
    assert _all(pool) == before
    higher = {**noise, "score": 0.2786143}
    assert store.upsert(pool, _frame(higher), detected_at=T0 + timedelta(hours=2)).updated == 1
    assert _all(pool)[0].explanation["summary"] == "rerun"


def test_an_incident_grows_forward_and_backward_keeping_its_id_and_first_detection(pool):
    store.upsert(pool, _frame(_window(30, 10, 0.96)), detected_at=T0 + timedelta(minutes=41))
    [first] = _all(pool)
    grown = store.upsert(pool, _frame(_window(45, 10, 0.97)), detected_at=T0 + timedelta(minutes=56))
    assert (grown.inserted, grown.updated) == (0, 1)
    # A late window before it (a backfill) moves its start earlier: same id, same first detection.
    store.upsert(pool, _frame(_window(0, 10, 0.999)), detected_at=T0 + timedelta(hours=2))
    [incident] = _all(pool)
    assert incident.anomaly_id == first.anomaly_id and incident.detected_at == first.detected_at
    assert (incident.window_start, incident.window_end, incident.windows) == (T0, T0 + timedelta(minutes=55), 3)
    assert (incident.score, incident.severity, incident.peak_at) == (0.999, "critical", T0)
    assert store.get_anomaly(pool, first.anomaly_id) == incident


def test_a_window_between_two_incidents_bridges_them_into_one(pool):
    store.upsert(pool, _frame(_window(0, 10, 0.97), _window(140, 10, 0.96)), detected_at=T0)
    assert len(_all(pool)) == 2
    result = store.upsert(pool, _frame(_window(70, 10, 0.95)), detected_at=T0)
    assert (result.inserted, result.updated) == (0, 2)
    [incident] = _all(pool)
    assert (incident.window_start, incident.window_end, incident.windows, incident.score) == (
        T0, T0 + timedelta(minutes=150), 3, 0.97)


def test_the_data_api_reads_the_incident_span(pool):
    from storage.dataapi import AuditData

    store.upsert(pool, _frame(*[_window(m, 10, 0.96) for m in range(0, 120, 10)]), detected_at=T0)
    frame = AuditData(pool).anomalies(start=T0 + timedelta(minutes=100), end=T0 + timedelta(hours=3))
    assert frame.height == 1 and frame["windows"].to_list() == [12]
    assert frame["window_start"].to_list() == [T0] and frame["peak_at"].to_list() == [T0]
