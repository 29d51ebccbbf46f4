"""Evaluation and the delivery tick's flush share a lock: a flush never makes an evaluation skip its run."""

from __future__ import annotations

import threading

import psycopg

from alerts import engine
from storage.timescale import alerts as store
from storage.timescale.db import advisory_lock
from tests.alerts.conftest import T0


def test_an_evaluation_waits_for_a_short_flush_and_a_flush_skips_a_busy_evaluator(rig, db_url):
    with psycopg.connect(db_url, autocommit=True) as other:
        held = advisory_lock(other, store.EVALUATOR_LOCK, wait=False)
        assert held.__enter__()
        assert engine.flush(rig.pool, rig.config, now=T0) == []  # busy: skipped, nothing to wait for
        timer = threading.Timer(0.5, held.__exit__, args=(None, None, None))
        timer.start()
        result = rig.evaluate(T0)  # waits the half second instead of skipping this period
        timer.join()
    assert result.ran and result.rules == 8
