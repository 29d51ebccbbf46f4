"""The scoring job at the live edge, as the worker runs it on a real TimescaleDB: a rotated secret's retry loop
is not paged while its fix may be minutes away, and is when it is not coming; a window still open is scored."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from analytics import jobs
from analytics.events import from_records
from storage.timescale import anomalies as store
from storage.timescale.writer import EventWriter
from tests.analytics.conftest import event, records

CONFIG = jobs.JobConfig(history=timedelta(days=3), first_run=timedelta(hours=2))
SVC, HOST, CLIENT = "svc-ledger", "10.0.77.9", "ledger-sync/2.1 (okhttp/4.12.0)"
WHERE = {"ip": HOST, "country": None, "asn": None, "ua": CLIENT}


def _write(pool, events: list[dict]) -> None:
    EventWriter(pool).write(records(from_records(events)))


def _failures(start, minutes: float, every_s: float = 5.0) -> list[dict]:
    return [event(start + timedelta(seconds=s), SVC, outcome="failure", **WHERE)
            for s in range(0, int(minutes * 60), int(every_s))]


@pytest.fixture
def now(pool, tiny_dataset):
    """The tiny dataset's days stored, with the service logging in from its host every 15 minutes all along,
    and models fitted two hours before its end."""
    end = tiny_dataset.end
    EventWriter(pool).write(records(tiny_dataset.events))
    t, work = tiny_dataset.start, []
    while t < end - timedelta(minutes=40):
        work.append(event(t, SVC, **WHERE))
        t += timedelta(minutes=15)
    _write(pool, work)
    jobs.refit_job(pool, now=end - timedelta(hours=2), config=CONFIG)
    return end


def _paged(pool) -> pl.DataFrame:
    stored = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000))
    return stored.filter(pl.col("entity_value").is_in([SVC, HOST]))


def test_a_loop_open_at_the_live_edge_is_not_stored_and_its_fix_leaves_nothing_to_take_back(pool, now):
    rotated = now - timedelta(minutes=25)
    _write(pool, _failures(rotated, 25))  # 300 failures so far, every 5 s, and still failing
    jobs.score_job(pool, now=now, config=CONFIG)
    assert _paged(pool).is_empty(), _paged(pool).select("detector", "window_start", "explanation").rows()
    _write(pool, _failures(now, 10) + [event(now + timedelta(minutes=10, seconds=3), SVC, **WHERE)])  # fixed
    for minutes in (5, 11, 20, 45):  # every run rescores the late allowance
        jobs.score_job(pool, now=now + timedelta(minutes=minutes), config=CONFIG)
    assert _paged(pool).is_empty(), _paged(pool).select("detector", "window_start", "explanation").rows()


def test_a_run_that_falls_silent_without_its_success_is_paged_once_it_has_ended(pool, now):
    rotated = now - timedelta(minutes=20)
    _write(pool, _failures(rotated, 20))
    jobs.score_job(pool, now=now, config=CONFIG)
    assert _paged(pool).is_empty()  # open: its fix may be minutes away
    jobs.score_job(pool, now=now + timedelta(minutes=15), config=CONFIG)
    assert _paged(pool).is_empty(), _paged(pool).select("detector", "window_start", "explanation").rows()
    jobs.score_job(pool, now=now + timedelta(minutes=32), config=CONFIG)  # silent for over 30 minutes: ended
    found = _paged(pool)
    assert not found.is_empty() and "failed_login_burst" in set(found["detector"])
    assert found["window_start"].min() >= rotated - timedelta(hours=1)


def test_an_export_window_still_open_at_the_live_edge_is_scored(pool, now):
    """A span reads the hour after it and keeps only its own windows, except at the live edge: there a 10-minute
    or hour window that has not closed yet is all there is, and data leaving now must not wait for it to close."""
    at = now + timedelta(minutes=1)
    taken = [event(at + timedelta(seconds=20 * i), "u00001", "data_export", metadata={"rows": 400_000})
             for i in range(12)]
    _write(pool, taken)
    jobs.score_job(pool, now=now + timedelta(minutes=6, seconds=40), config=CONFIG)  # scores up to +6 min
    stored = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000, entity_value="u00001"))
    exports = stored.filter(pl.col("detector") == "export_volume")
    assert not exports.is_empty()
    assert exports["window_end"].min() > now + timedelta(minutes=6)  # a window that had not closed
