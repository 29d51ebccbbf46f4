"""The command line, run for real (click's runner in-process, subprocesses where a server is involved)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import requests

from storage.timescale import migrations
from tests.conftest import free_port


def test_db_status_reports_versions_edition_and_schema(run):
    result = run("db", "status")
    assert result.exit_code == 0, result.output
    assert "timescaledb version: 2." in result.output
    assert any(f"edition:             {e}" in result.output for e in ("apache", "timescale"))
    assert f"schema version:      {migrations.available()[-1].version}" in result.output
    assert "(external server)" in result.output


def test_db_up_refuses_external_server_with_a_hint(run):
    result = run("db", "up")
    assert result.exit_code == 2
    assert "AUDITWATCH_DATABASE_URL" in result.output


def test_migrate_is_idempotent(run):
    first = run("migrate")
    assert first.exit_code == 0 and f"schema at version {migrations.available()[-1].version}" in first.output
    assert "applied" not in first.output  # the test database is already migrated


def test_keys_create_list_revoke_and_audit(run, conn):
    created = run("keys", "create", "--role", "auditor", "--name", "alice-laptop")
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("aw_")
    stored = conn.execute("SELECT secret_hash FROM api_keys WHERE name = 'alice-laptop'").fetchone()[0]
    assert secret.split("_", 2)[2] not in stored

    listed = run("keys", "list")
    assert "alice-laptop" in listed.output and "auditor" in listed.output

    duplicate = run("keys", "create", "--role", "viewer", "--name", "alice-laptop")
    assert duplicate.exit_code == 2 and "exists" in duplicate.output

    bad = run("keys", "create", "--role", "viewer", "--name", "no spaces; allowed")
    assert bad.exit_code == 2

    revoked = run("keys", "revoke", "alice-laptop")
    assert revoked.exit_code == 0
    assert conn.execute("SELECT revoked_at IS NOT NULL FROM api_keys WHERE name = 'alice-laptop'").fetchone()[0]
    again = run("keys", "revoke", "alice-laptop")
    assert again.exit_code == 2 and "no live key" in again.output

    audited = conn.execute(
        "SELECT event_type FROM audit_events WHERE event_type IN ('api_key_created', 'api_key_revoked') "
        "ORDER BY \"timestamp\"").fetchall()
    assert [r[0] for r in audited] == ["api_key_created", "api_key_revoked"]


def test_users_add_and_list(run):
    added = run("users", "add", "alice", "bob", "--department", "finance")
    assert added.exit_code == 0 and "registered 2 new" in added.output
    again = run("users", "add", "alice")
    assert "registered 0 new" in again.output
    listed = run("users", "list")
    assert "alice" in listed.output and "finance" in listed.output


def _events(n: int, *, days_ago: int = 30, user: str = "alice") -> list[dict]:
    base = datetime.now(UTC) - timedelta(days=days_ago)
    return [{"event_id": str(uuid.uuid4()), "timestamp": (base + timedelta(minutes=i)).isoformat(),
             "event_type": "user_login", "user_id": user, "outcome": "success",
             "metadata": {"api_key": "sk-live-123"}} for i in range(n)]


def test_ingest_ndjson_backfills_history_with_summary(run, conn, tmp_path):
    run("users", "add", "alice")
    events = _events(120)
    path = tmp_path / "events.ndjson"
    lines = [json.dumps(e) for e in events] + ["{not json", json.dumps({**events[0], "event_type": "nope"}), ""]
    path.write_text("\n".join(lines))

    result = run("ingest", str(path), "--batch-size", "50")
    assert result.exit_code == 2  # some lines were rejected
    assert "accepted 120, duplicates 0, rejected 2" in result.output
    assert "line 121: malformed_json" in result.output
    assert "line 122: unknown_event_type" in result.output
    assert conn.execute("SELECT count(*) FROM audit_events WHERE user_id = 'alice'").fetchone()[0] == 120
    # Redaction applies to bulk loads too.
    assert conn.execute("SELECT count(*) FROM audit_events WHERE metadata->>'api_key' = '[REDACTED]'").fetchone()[0] == 120

    rerun = run("ingest", str(path))
    assert "accepted 0, duplicates 120, rejected 2" in rerun.output


def test_ingest_json_array_and_register_users(run, conn, tmp_path):
    path = tmp_path / "events.json"
    path.write_text(json.dumps(_events(10, user="newcomer")))
    refused = run("ingest", str(path))
    assert "accepted 0" in refused.output and "unknown_user" in refused.output
    admitted = run("ingest", str(path), "--register-users", "--errors", str(tmp_path / "errors.ndjson"))
    assert admitted.exit_code == 0, admitted.output
    assert "accepted 10, duplicates 0, rejected 0" in admitted.output
    assert conn.execute("SELECT 1 FROM users WHERE user_id = 'newcomer'").fetchone()


def test_ingest_rejects_future_events_even_as_backfill(run, tmp_path):
    run("users", "add", "alice")
    path = tmp_path / "future.ndjson"
    path.write_text(json.dumps(_events(1, days_ago=-2)[0]) + "\n")
    result = run("ingest", str(path), "--errors", str(tmp_path / "errors.ndjson"))
    assert "rejected 1" in result.output
    error = json.loads((tmp_path / "errors.ndjson").read_text())
    assert error["line"] == 1 and error["code"] == "timestamp_out_of_window"


def test_ingest_a_malformed_json_array_fails_clearly(run, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"event_id": ')
    result = run("ingest", str(path))
    assert result.exit_code == 1 and "is not valid JSON" in result.output


def test_bad_config_is_a_usage_error(run, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("unknown_users = 'maybe'\n")
    result = run("--config", str(config), "db", "status")
    assert result.exit_code == 2 and "unknown_users" in result.output


def test_up_serves_the_api_and_streams_demo_traffic(db_url, tmp_path, conn):
    """The README's first command against an existing server (AUDITWATCH_DATABASE_URL)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITWATCH_")}
    env.update(AUDITWATCH_DATABASE_URL=db_url, AUDITWATCH_PORT=str(port), AUDITWATCH_DATA_DIR=str(tmp_path / "data"))
    syslog_port = free_port()
    env.update(AUDITWATCH_SYSLOG_UDP_PORT=str(syslog_port), AUDITWATCH_SYSLOG_TCP_PORT=str(syslog_port))
    log = tmp_path / "up.log"
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "up"], env=env, cwd=tmp_path,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        keys = tmp_path / "data" / "demo-keys.json"
        deadline = time.monotonic() + 120
        count = 0
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            count = conn.execute("SELECT count(*) FROM audit_events WHERE source LIKE 'demo-%'").fetchone()[0]
            if keys.exists() and count > 1000:
                break
            time.sleep(1)
        assert count > 1000, log.read_text()
        admin = json.loads(keys.read_text())["admin"]
        assert oct(keys.stat().st_mode & 0o777) == "0o600"
        response = requests.get(f"http://127.0.0.1:{port}/api/v1/logs?limit=5&source_ip=10.0.0.0/8",
                                headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        assert response.status_code == 200
        assert len(response.json()["events"]) == 5
        assert "Auditwatch is up" in log.read_text()
        # `up` also listens for syslog (no broker needed).
        subprocess.run(["logger", "--server", "127.0.0.1", "--port", str(syslog_port), "--tcp", "--tag", "sshd",
                        "Accepted password for up-check from 192.0.2.1 port 22 ssh2"], check=True, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not conn.execute(
                "SELECT count(*) FROM audit_events WHERE user_id = 'up-check'").fetchone()[0]:
            time.sleep(0.2)
        assert conn.execute("SELECT outcome FROM audit_events WHERE user_id = 'up-check'").fetchone() == ("success",)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode in (0, 1, -signal.SIGINT), log.read_text()


def test_storage_refresh_and_status(run, conn, tmp_path):
    run("users", "add", "alice")
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in _events(90, days_ago=2)))
    assert run("ingest", str(path)).exit_code == 0

    refreshed = run("storage", "refresh")
    assert refreshed.exit_code == 0, refreshed.output
    assert "rollups current to" in refreshed.output and "recomputed" in refreshed.output
    assert conn.execute("SELECT sum(events) FROM events_1m WHERE user_id = 'alice'").fetchone()[0] == 90

    status = run("storage", "status")
    assert status.exit_code == 0, status.output
    assert "edition:" in status.output and "events_1m" in status.output and "events_1h" in status.output
    if "apache" in status.output:
        assert "compression:  not available on the Apache edition" in status.output
        assert "materialised up to 20" in status.output


def test_storage_refresh_since_rebuilds_rollups_believed_wrong(run, conn, tmp_path):
    """A late event only adds its minute's difference to an hour the hourly rollups hold, so an hour already wrong
    stays wrong; `--since` recomputes whole hours from the raw events. A time that is not one, or not in the past,
    is refused before anything is touched."""
    run("users", "add", "alice")
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in _events(90, days_ago=2)))
    assert run("ingest", str(path)).exit_code == 0
    assert run("storage", "refresh").exit_code == 0
    edition = conn.execute("SELECT extversion, current_setting('timescaledb.license', true) FROM pg_extension "
                           "WHERE extname = 'timescaledb'").fetchone()[1]
    hour, right = conn.execute("SELECT bucket, events FROM events_1h WHERE user_id = 'alice' ORDER BY bucket LIMIT 1"
                               ).fetchone()
    if edition == "apache":  # the community edition's aggregates are TimescaleDB's own, not ours to break
        conn.execute("UPDATE events_1h SET events = events + 1000 WHERE user_id = 'alice' AND bucket = %s", (hour,))
        assert run("storage", "refresh").exit_code == 0
        assert conn.execute("SELECT events FROM events_1h WHERE user_id = 'alice' AND bucket = %s", (hour,)
                            ).fetchone()[0] == right + 1000  # a refresh does not look behind its watermark
    rebuilt = run("storage", "refresh", "--since", (hour + timedelta(minutes=30)).isoformat())
    assert rebuilt.exit_code == 0, rebuilt.output
    assert edition != "apache" or f"recomputed {hour:%Y-%m-%d %H:%M}" in rebuilt.output  # from its hour's start
    assert conn.execute("SELECT events FROM events_1h WHERE user_id = 'alice' AND bucket = %s", (hour,)
                        ).fetchone()[0] == right
    assert conn.execute("SELECT sum(events) FROM events_1h WHERE user_id = 'alice'").fetchone()[0] == 90
    # Long before any event (a typo, a hostile 0001): the rebuild starts at the first event's hour, not there.
    ancient = run("storage", "refresh", "--since", "0001-01-01T00:00:00+00:00")
    assert ancient.exit_code == 0, ancient.output
    assert edition != "apache" or f"recomputed {hour:%Y-%m-%d %H:%M}" in ancient.output, ancient.output
    assert ancient.output.count("recomputed") <= 10, ancient.output
    for bad, said in (("yesterday", "is not an ISO 8601 time"), ("2999-01-01T00:00:00+00:00", "is not in the past")):
        refused = run("storage", "refresh", "--since", bad)
        assert refused.exit_code == 2 and said in refused.output, refused.output


def test_worker_keeps_the_rollups_current(db_url, tmp_path, conn):
    conn.execute("INSERT INTO users (user_id) VALUES ('bob')")
    conn.execute(
        "INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id) "
        "SELECT gen_random_uuid(), now() - interval '10 minutes' - g * interval '1 second', 'user_login', 'bob' "
        "FROM generate_series(1, 50) AS g")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITWATCH_")}
    env.update(AUDITWATCH_DATABASE_URL=db_url, AUDITWATCH_DATA_DIR=str(tmp_path / "data"))
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "worker"], env=env, cwd=tmp_path,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        total, started = None, False
        # Both: on the community edition real-time aggregation shows the rows before the worker has started.
        while time.monotonic() < deadline and not (total and started):
            assert proc.poll() is None, log.read_text()
            total = conn.execute("SELECT sum(events) FROM events_1m WHERE user_id = 'bob'").fetchone()[0]
            started = "worker started" in log.read_text()
            time.sleep(0.5)
        assert total == 50, log.read_text()
        # Stopped more than once, as a supervisor and its process group both signal it: it stops once, cleanly,
        # whenever the later signals land (one landing as the interpreter finalized killed it: status -15).
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            proc.terminate()
            time.sleep(0.005)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert "worker started" in log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
