"""Ctrl-C on `make up`: the terminal sends SIGINT to the whole foreground process group (make, `auditwatch
up`, and every component it started); after a clean shutdown `up` must exit 0, so make does not report
"Error 1"."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port


def _start_up(db_url: str | None, tmp_path, *extra: str) -> tuple[subprocess.Popen, int, object]:
    """`auditwatch up` on an existing server (db_url) or, as `make up` runs it, on the embedded database."""
    port, syslog_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITWATCH_")}
    env.update(AUDITWATCH_PORT=str(port), AUDITWATCH_DATA_DIR=str(tmp_path / "data"),
               AUDITWATCH_SYSLOG_UDP_PORT=str(syslog_port), AUDITWATCH_SYSLOG_TCP_PORT=str(syslog_port))
    if db_url:
        env["AUDITWATCH_DATABASE_URL"] = db_url
    else:
        env["AUDITWATCH_DB_PORT"] = str(free_port())
    log = tmp_path / "up.log"
    # Its own session and process group, as a terminal's foreground job is.
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "up", *extra], env=env, cwd=tmp_path,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port, log


def _wait_up(proc: subprocess.Popen, port: int, log, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200 and \
                    "Ctrl-C stops everything" in log.read_text():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"`auditwatch up` did not come up:\n{log.read_text()}")


def _ctrl_c(proc: subprocess.Popen) -> int:
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: every process of the group gets it
    try:
        return proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def _group_left(pgid: int, seconds: float = 30) -> str:
    """The processes of the group still running after ``seconds`` ("" when none)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return ""
        time.sleep(0.2)
    return subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(pgid)], capture_output=True, text=True).stdout


def _assert_quiet_stop(output: str) -> None:
    """What Ctrl-C once printed on a newcomer's terminal: each component's reaction to the SIGINT and the SIGTERM
    that follows it (ingest/stopsignals.py)."""
    stop = output[output.index("Ctrl-C stops everything"):]
    for noise in ("Traceback", "Exception ignored", "race condition", "Aborted!", "KeyboardInterrupt"):
        assert noise not in stop, f"{noise!r} printed while stopping:\n{stop[-12000:]}"


def test_ctrl_c_on_up_stops_everything_and_exits_0(db_url, tmp_path):
    proc, port, log = _start_up(db_url, tmp_path)
    try:
        _wait_up(proc, port, log)
        time.sleep(3)  # the demo producer is sending by now
        code = _ctrl_c(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 0, f"exit {code}:\n{output[-12000:]}"
    assert "stopping" in output
    _assert_quiet_stop(output)
    left = _group_left(proc.pid)
    assert not left, f"components outlived `up`:\n{left}"


@pytest.fixture
def open_dir():
    """A data directory the database's own user can reach (pytest's tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="aw-up-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ctrl_c_on_up_with_the_embedded_database_exits_0_and_stops_it(open_dir):
    """`make up` as the README runs it: the embedded database is started, and stopped again on Ctrl-C."""
    tmp_path = open_dir
    proc, port, log = _start_up(None, tmp_path)
    try:
        _wait_up(proc, port, log, seconds=240)
        time.sleep(3)
        code = _ctrl_c(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 0, f"exit {code}:\n{output[-12000:]}"
    assert "stopping" in output and "database stopped" in output
    _assert_quiet_stop(output)
    left = _group_left(proc.pid)
    assert not left, f"components outlived `up`:\n{left}"
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists(), "the embedded database still runs"
