"""`auditwatch syslog`, `writer` and `deadletters` as real processes and commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from auditwatch.cli.main import main
from tests.conftest import ROOT, free_port


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
