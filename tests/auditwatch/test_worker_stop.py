"""A stopping worker ends within its drain time even while a job cannot finish.

CI once saw `up`'s Ctrl-C end with exit 1: the worker did not stop within up's 45 s budget. A job's thread
cannot be interrupted, and the interpreter's exit waited for it. Here a real `auditwatch worker` runs while
the test holds an exclusive lock on the events table, so every job that reads events blocks for as long as
the test likes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _blocked_backends(conn: psycopg.Connection) -> int:
    """This database's sessions waiting for a lock (the worker's jobs, behind the test's)."""
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'").fetchone()[0]


@pytest.mark.parametrize("first", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM)],
                         ids=["sigterm", "ctrl-c-then-up's-sigterm"])
def test_a_worker_whose_job_cannot_finish_stops_after_its_drain_time_with_status_0(db_url, tmp_path, first):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITWATCH_")}
    env.update(PYTHONPATH=str(ROOT), AUDITWATCH_DATABASE_URL=db_url, AUDITWATCH_DATA_DIR=str(tmp_path / "data"),
               AUDITWATCH_WORKER_OPS_PORT=str(free_port()), AUDITWATCH_WORKER_DRAIN_SECONDS="2")
    log = tmp_path / "worker.log"
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
        worker = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "worker"], env=env, cwd=tmp_path,
                                  stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            with psycopg.connect(db_url, autocommit=True) as watcher:
                while _blocked_backends(watcher) == 0:
                    assert worker.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, f"no job of the worker blocked:\n{log.read_text()}"
                    time.sleep(0.2)
            signalled = time.monotonic()
            for sig in first:  # back to back, as Ctrl-C's SIGINT and up's SIGTERM arrive
                os.kill(worker.pid, sig)
            # Then what `up` and an impatient user add: SIGINT and SIGTERM every few ms until it has exited. They
            # must neither cut the stop short nor print anything.
            others = 0
            while worker.poll() is None and time.monotonic() - signalled < 30:
                time.sleep(0.005)
                with contextlib.suppress(ProcessLookupError):
                    worker.send_signal((signal.SIGINT, signal.SIGTERM)[others % 2])
                others += 1
            try:
                code = worker.wait(timeout=1)
            except subprocess.TimeoutExpired:
                raise AssertionError("the worker did not stop within 30 s of the signal, with a 2 s drain time:\n"
                                     + log.read_text()) from None
            took = time.monotonic() - signalled
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        holder.execute("ROLLBACK")
    output = log.read_text()
    assert code == 0, output
    assert "still run" in output and "again at the next start" in output, output
    assert others > 100  # signals kept landing while it stopped
    for noise in ("Traceback", "Exception ignored", "race condition", "KeyboardInterrupt"):
        assert noise not in output, output
    assert took >= 2, f"it stopped after {took:.1f} s, before its drain time"
