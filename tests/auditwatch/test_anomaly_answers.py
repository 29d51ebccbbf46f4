"""One anomaly question, three ways in: the HTTP API, the dashboard's widget and the data API agree.

The question: "which anomalies scoring at least 0.5 were abnormal between 13:00 and 14:00?" A window that
began at 12:55 and ran into the hour is part of the answer (windows overlap the range); one that ended at
13:00 sharp, or began at 14:00, is not.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl

from analytics.detectors import ANOMALY_SCHEMA
from dashboard.widgets import anomalies as anomaly_widget
from storage.auth import Role
from storage.dataapi import AuditData
from storage.timescale import anomalies
from storage.timescale.anomalies import AnomalyQuery

START = datetime(2024, 6, 3, 13, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
MIN = timedelta(minutes=1)

# (entity, window start, window length, score): which are in the answer is written out below.
WINDOWS = [
    ("straddles-start", START - 5 * MIN, 10 * MIN, 0.91),
    ("inside", START + 20 * MIN, 5 * MIN, 0.74),
    ("straddles-end", END - 2 * MIN, 10 * MIN, 0.66),
    ("ends-at-start", START - 10 * MIN, 10 * MIN, 0.95),
    ("starts-at-end", END, 5 * MIN, 0.88),
    ("weak", START + 30 * MIN, 5 * MIN, 0.2),
]
EXPECTED = {"straddles-start", "inside", "straddles-end"}


def _store(pool) -> None:
    rows = [{"detector": "failed_login_burst", "detector_version": "v1-test", "entity_type": "user",
             "entity_value": entity, "window_start": start, "window_end": start + length, "score": score,
             "severity": "critical" if score >= 0.9 else "high" if score >= 0.8 else "medium" if score >= 0.7
             else "low", "explanation": orjson.dumps({"summary": entity}).decode(),
             "sample_event_ids": [str(uuid.uuid4())]} for entity, start, length, score in WINDOWS]
    anomalies.upsert(pool, pl.DataFrame(rows, schema=ANOMALY_SCHEMA), detected_at=END + timedelta(hours=1))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_the_api_the_dashboard_and_the_data_api_give_the_same_anomalies(services, client, make_key):
    _store(services.pool)

    response = client.get(f"/api/v1/anomalies?start_time={_iso(START)}&end_time={_iso(END)}&min_score=0.5",
                          headers=make_key(Role.VIEWER))
    assert response.status_code == 200
    by_api = {a["anomaly_id"]: a["entity_value"] for a in response.get_json()["anomalies"]}

    by_dashboard = {str(a.anomaly_id): a.entity_value
                    for a in anomaly_widget.read(services.pool, START, END, min_score=0.5)}

    frame = AuditData(services.pool).anomalies(START, END, min_score=0.5)
    by_data_api = dict(zip(frame["anomaly_id"].to_list(), frame["entity_value"].to_list(), strict=True))

    assert set(by_api.values()) == EXPECTED
    assert by_api == by_dashboard == by_data_api
    # The dashboard's count tile asks the same question without the score floor.
    assert anomalies.anomaly_count(services.pool, AnomalyQuery(start=START, end=END)) == len(EXPECTED) + 1
