"""Leader election: one worker runs the analytics jobs; killing it hands them to another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from storage.timescale.leader import AdvisoryLeader, holder

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_only_one_session_holds_the_lock_and_release_hands_it_over(db_url):
    first, second = AdvisoryLeader(db_url, name="w1"), AdvisoryLeader(db_url, name="w2")
    try:
        assert first.is_leader() is True
        assert second.is_leader() is False
        assert first.is_leader() is True  # still ours on the next ask
        with psycopg.connect(db_url, autocommit=True) as conn:
            assert holder(conn).application_name == "w1"
            first.release()
            assert second.is_leader() is True
            assert holder(conn).application_name == "w2"
    finally:
        first.release()
        second.release()


def test_a_leader_whose_session_is_killed_stops_leading(db_url):
    leader, other = AdvisoryLeader(db_url, name="w1"), AdvisoryLeader(db_url, name="w2")
    try:
        assert leader.is_leader()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (holder(conn).backend_pid,))
        assert other.is_leader() is True
        assert leader.is_leader() is False  # notices its session is gone, and the lock is taken
    finally:
        leader.release()
        other.release()


def _start_worker(db_url: str, tmp_path: Path, n: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUDITWATCH_DATABASE_URL": db_url,
           "AUDITWATCH_DATA_DIR": str(tmp_path / "data"), "AUDITWATCH_ANALYTICS_SCORE_SECONDS": "1",
           "AUDITWATCH_ANALYTICS_REFIT_SECONDS": "3600"}
    env.pop("AUDITWATCH_CONFIG", None)
    log = (tmp_path / f"worker{n}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "worker"], env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.timeout(180)
def test_killing_the_leader_worker_fails_over_to_the_other(db_url, tmp_path):
    workers = [_start_worker(db_url, tmp_path, n) for n in (1, 2)]
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            def scored_since(moment: datetime):
                row = conn.execute("SELECT max(updated_at) FROM detector_state WHERE job LIKE 'score:%'").fetchone()
                return row[0] is not None and row[0] > moment

            first = wait_for(lambda: holder(conn), what="a leader")
            pids = {f"auditwatch-worker-{w.pid}": w for w in workers}
            assert first.application_name in pids
            wait_for(lambda: scored_since(datetime(2000, 1, 1, tzinfo=UTC)), what="the leader to score")
            leader = pids[first.application_name]
            follower = next(w for w in workers if w is not leader)
            leader.send_signal(signal.SIGKILL)  # no clean shutdown: the lock must go with the dead session
            leader.wait(timeout=10)
            killed_at = conn.execute("SELECT now()").fetchone()[0]
            second = wait_for(lambda: (h := holder(conn)) and h.application_name != first.application_name and h,
                              what="a new leader")
            assert second.application_name == f"auditwatch-worker-{follower.pid}"
            wait_for(lambda: scored_since(killed_at), what="the new leader to score")
            assert follower.poll() is None
            models = conn.execute("SELECT count(DISTINCT detector) FROM detector_models").fetchone()[0]
            assert models >= 7  # the first leader's refit stored every detector
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
    logs = "".join((tmp_path / f"worker{n}.log").read_text() for n in (1, 2))
    assert "is now the analytics leader" in logs
