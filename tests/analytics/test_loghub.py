"""Real sshd logs (loghub OpenSSH_2k) through the syslog parsers and every detector.

There are no labels in these logs, so this checks plausibility: the sources that hammered the
server are flagged, and the one legitimate-looking login is not raised from noise alone.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import polars as pl
import pytest

from analytics.events import from_records
from analytics.pipeline import analyze
from ingest.syslog import parse_file
from tests.conftest import shared_data

LOG = shared_data() / "loghub" / "OpenSSH_2k.log"


@pytest.fixture(scope="module")
def parsed() -> list[dict]:
    return list(parse_file(LOG, now=datetime(2026, 1, 5, tzinfo=UTC)))


@pytest.fixture(scope="module")
def anomalies(parsed) -> pl.DataFrame:
    return analyze(from_records(parsed))


def test_the_heaviest_brute_force_sources_are_flagged(parsed, anomalies):
    failures = Counter(r["source_ip"] for r in parsed
                       if r["event_type"] == "user_login" and r["outcome"] == "failure")
    heaviest = [ip for ip, _ in failures.most_common(5)]
    assert failures[heaviest[0]] > 200  # 183.62.140.253 tried 286 passwords in the file
    flagged = set(anomalies.filter((pl.col("detector") == "failed_login_burst")
                                   & (pl.col("entity_type") == "source_ip"))["entity_value"])
    assert set(heaviest) <= flagged, f"not flagged: {set(heaviest) - flagged}"
    assert anomalies.filter(pl.col("entity_value") == heaviest[0])["severity"].to_list()[0] == "critical"


def test_the_lone_accepted_login_is_not_a_false_alarm(parsed, anomalies):
    accepted = [r for r in parsed if r["event_type"] == "user_login" and r["outcome"] == "success"]
    assert len(accepted) == 1
    user, ip = accepted[0]["user_id"], accepted[0]["source_ip"]
    assert anomalies.filter(pl.col("entity_value").is_in([user, ip])).is_empty()
    # ...and no detector turned its single success into a failure-then-success finding.
    assert anomalies.filter(pl.col("detector") == "failure_then_success").is_empty()
