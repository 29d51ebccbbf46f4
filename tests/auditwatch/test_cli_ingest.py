"""`auditwatch syslog`, `writer` and `deadletters` as real processes and commands."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
from click.testing import CliRunner

from auditwatch.cli.main import main
from tests.conftest import ROOT, free_port
from tests.dbproxy import DatabaseProxy


def _env(db_url: str, tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITWATCH_")}
    env.update(PYTHONPATH=str(ROOT), AUDITWATCH_DATABASE_URL=db_url, AUDITWATCH_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


def test_syslog_command_receives_stores_and_reports(db_url, tmp_path, conn):
    udp, tcp = free_port(), free_port()
    log = tmp_path / "syslog.log"
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "syslog", "--udp-port", str(udp),
                             "--tcp-port", str(tcp)], env=_env(db_url, tmp_path, AUDITWATCH_SYSLOG_ZONE="Europe/Berlin"),
                            cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "received" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        for port, transport in ((udp, "--udp"), (tcp, "--tcp")):
            subprocess.run(["logger", "--server", "127.0.0.1", "--port", str(port), transport, "--rfc3164",
                            "--tag", "su", f"FAILED su for root by cli{transport.strip('-')}"], check=True, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and conn.execute(
                "SELECT count(*) FROM audit_events WHERE event_type = 'su'").fetchone()[0] < 2:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    rows = conn.execute("SELECT user_id, outcome, metadata->>'target_user' FROM audit_events WHERE event_type = 'su' "
                        "ORDER BY user_id").fetchall()
    assert rows == [("clitcp", "failure", "root"), ("cliudp", "failure", "root")]
    assert proc.returncode == 0, log.read_text()
    assert "stored 2" in log.read_text()  # the final progress line


def test_bad_settings_are_usage_errors(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    zone = runner.invoke(main, ["syslog", "--udp-port", "0", "--tcp-port", str(free_port())],
                         env=_env(db_url, tmp_path, AUDITWATCH_SYSLOG_ZONE="Mars/Olympus"))
    assert zone.exit_code == 2 and "IANA" in zone.output
    none = runner.invoke(main, ["syslog", "--udp-port", "0", "--tcp-port", "0"], env=_env(db_url, tmp_path))
    assert none.exit_code == 2 and "every syslog port is 0" in none.output
    tls = runner.invoke(main, ["syslog", "--tls-port", str(free_port())], env=_env(db_url, tmp_path))
    assert tls.exit_code == 2 and "SYSLOG_TLS_CERT" in tls.output
    writer = runner.invoke(main, ["writer"], env=_env(db_url, tmp_path))
    assert writer.exit_code == 2 and "AUDITWATCH_BUS_URL" in writer.output
    dead = runner.invoke(main, ["deadletters", "list"], env=_env(db_url, tmp_path))
    assert dead.exit_code == 2 and "no bus configured" in dead.output
    bad_url = runner.invoke(main, ["writer"], env=_env(db_url, tmp_path, AUDITWATCH_BUS_URL="http://x"))
    assert bad_url.exit_code == 2 and "nats://" in bad_url.output
    unreachable = runner.invoke(main, ["deadletters", "list"],
                                env=_env(db_url, tmp_path, AUDITWATCH_BUS_URL=f"nats://127.0.0.1:{free_port()}"))
    assert unreachable.exit_code == 1 and "bus is unavailable" in unreachable.output


def _store_workers(pid: int) -> list[int]:
    """The store worker processes of a listener (not multiprocessing's resource tracker beside them)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in found if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _wait_for_store_workers(proc: subprocess.Popen, log: Path, count: int = 2) -> None:
    """Until the listener has said it stores through processes and ``count`` of them run."""
    deadline = time.monotonic() + 60
    while ("store processes" not in log.read_text() or len(_store_workers(proc.pid)) < count) \
            and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and 'channel="syslog"' in line)


def _counter(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.split(" ")[0] == name)


def test_syslog_store_processes_lose_no_line_to_a_killed_worker_or_a_sigterm(db_url, tmp_path, conn):
    """`auditwatch syslog --processes 2`: parsing and writing run in two worker processes. One is SIGKILLed while
    lines stream in, and the listener is SIGTERMed as soon as the last line is sent: every line is stored exactly
    once, and the listener's ops port counts what its workers stored."""
    tcp, ops = free_port(), free_port()
    log = tmp_path / "syslog.log"
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "syslog", "--udp-port", "0", "--tcp-port",
                             str(tcp), "--processes", "2"], env=_env(db_url, tmp_path, AUDITWATCH_SYSLOG_OPS_PORT=str(ops)),
                            cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    stored = "SELECT count(*) FROM audit_events WHERE resource_id LIKE 'pw-%%'"
    lines = [f"<38>Nov 28 10:00:00 pw-{i % 50} sshd[{i}]: Failed password for u{i % 300} from 10.7.{i % 250}.1 "
             f"port {i} ssh2\n".encode() for i in range(30_000)]
    try:
        _wait_for_store_workers(proc, log)
        workers = _store_workers(proc.pid)
        with socket.create_connection(("127.0.0.1", tcp)) as s:
            s.sendall(b"".join(lines[:15_000]))
            deadline = time.monotonic() + 60
            while conn.execute(stored).fetchone()[0] < 2_000 and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(workers[0], signal.SIGKILL)  # mid-stream: its batch and the others in flight are retried
            s.sendall(b"".join(lines[15_000:25_000]))
        deadline = time.monotonic() + 120
        while conn.execute(stored).fetchone()[0] < 25_000 and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert conn.execute(stored).fetchone()[0] == 25_000, log.read_text()
        accepted = _metric(ops, "auditwatch_ingest_events_accepted_total")
        duplicates = _metric(ops, "auditwatch_ingest_events_duplicate_total")
        # The killed worker may have committed a batch it never reported: its retry counts as duplicates.
        assert accepted <= 25_000 <= accepted + duplicates, (accepted, duplicates)
        assert _counter(ops, "auditwatch_syslog_store_workers_replaced_total") >= 1
        with socket.create_connection(("127.0.0.1", tcp)) as s:
            s.sendall(b"".join(lines[25_000:]))
    finally:
        proc.send_signal(signal.SIGTERM)  # at once: what was received is drained through the workers first
        proc.wait(120)
    assert proc.returncode == 0, log.read_text()
    assert "a store worker died" in log.read_text()
    assert conn.execute(stored).fetchone()[0] == 30_000, log.read_text()
    assert conn.execute("SELECT count(DISTINCT metadata->>'pid') FROM audit_events WHERE resource_id LIKE 'pw-%%'"
                        ).fetchone()[0] == 30_000
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_syslog_store_workers_exit_when_the_listener_is_killed(db_url, tmp_path):
    """A SIGKILLed listener cannot shut its workers down, and they hold its queue's write end themselves, so they
    would wait for ever with their database connections: each notices it was orphaned and exits."""
    log = tmp_path / "syslog.log"
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "syslog", "--udp-port", "0", "--tcp-port",
                             str(free_port()), "--processes", "2"],
                            env=_env(db_url, tmp_path, AUDITWATCH_SYSLOG_OPS_PORT=str(free_port())),
                            cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while len(_store_workers(proc.pid)) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    workers = _store_workers(proc.pid)
    assert len(workers) == 2, log.read_text()
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), log.read_text()
    assert log.read_text().count("this store worker exits") == 2


def test_syslog_stops_on_ctrl_c_with_status_0_and_nothing_printed_by_the_signals_that_follow(db_url, tmp_path):
    """Under `up`, Ctrl-C's SIGINT is followed by up's SIGTERM. One landing while the listener's loop closed
    printed "Exception ignored when trying to write to the signal wakeup fd ... Bad file descriptor", and SIGINT
    was a KeyboardInterrupt again during the cleanup after the loop. Here a signal every few ms follows the first
    one until the process has exited."""
    log, ops = tmp_path / "syslog.log", free_port()
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "syslog", "--udp-port", "0", "--tcp-port",
                             str(free_port())], env=_env(db_url, tmp_path, AUDITWATCH_SYSLOG_OPS_PORT=str(ops)),
                            cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "received" not in log.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    ready = orjson.loads(urllib.request.urlopen(f"http://127.0.0.1:{ops}/readyz", timeout=10).read())
    assert ready["status"] == "ok" and ready["checks"]["listening"] == {"ok": True}, ready
    sent = 0
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT if sent % 2 == 0 else signal.SIGTERM)
        sent += 1
        time.sleep(0.003)
    output = log.read_text()
    assert proc.wait(5) == 0, output
    assert sent > 10  # signals kept landing while it stopped
    for noise in ("Exception ignored", "Traceback", "KeyboardInterrupt", "Aborted"):
        assert noise not in output, output
    assert "received" in output.rsplit("\n", 2)[-2]  # it still printed its final report


def test_a_store_worker_replaced_during_a_database_outage_waits_for_it_and_loses_no_line(db_url, tmp_path, conn):
    """A store worker that dies while the database is down is replaced by one that cannot open its pool. That
    failed start used to break the new pool just as a death does: the listener counted each as one, and after
    three gave the waiting lines up as unstorable (lost). Now the new worker waits for the database, the lines
    wait for it, and they are stored once it is back."""
    proxy = DatabaseProxy(db_url)
    tcp, ops = free_port(), free_port()
    log = tmp_path / "syslog.log"
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "syslog", "--udp-port", "0", "--tcp-port",
                             str(tcp), "--processes", "2"],
                            env=_env(proxy.url, tmp_path, AUDITWATCH_SYSLOG_OPS_PORT=str(ops)),
                            cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    stored = "SELECT count(*) FROM audit_events WHERE resource_id = 'outage-host'"
    try:
        _wait_for_store_workers(proc, log)
        proxy.cut()
        for worker in _store_workers(proc.pid):
            os.kill(worker, signal.SIGKILL)  # its pool is broken: the next batch finds it so and replaces it
        with socket.create_connection(("127.0.0.1", tcp)) as s:
            s.sendall(b"".join(f"<38>Nov 28 10:00:00 outage-host sshd[{i}]: Failed password for u{i} from "
                               f"10.9.0.{i} port {i} ssh2\n".encode() for i in range(1, 41)))
        deadline = time.monotonic() + 60
        while proxy.refused == 0 and time.monotonic() < deadline:  # a new worker is trying to start
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(20)  # a failed start took 15 s (the pool's own wait): long enough for one or two of them
        assert proc.poll() is None, log.read_text()
        proxy.restore()
        deadline = time.monotonic() + 60
        while conn.execute(stored).fetchone()[0] < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert conn.execute(stored).fetchone()[0] == 40, log.read_text()
        # One replacement, for the kill: a start that waited for the database is not a death.
        assert _counter(ops, "auditwatch_syslog_store_workers_replaced_total") == 1, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        proxy.close()
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "could not be stored" not in output and "Exception in initializer" not in output, output
    assert "this store worker cannot reach the database" in output, output
    assert proxy.refused > 0  # the outage was real for the new workers
