"""`auditwatch verify` and `auditwatch integrity ...` end to end: API ingest, erasure, tampering, anchors."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from auditwatch.cli.main import main
from storage.integrity import checkpoints
from tests.auditwatch.conftest import event
from tests.conftest import ROOT


def test_api_traffic_verifies_clean_and_tampering_is_reported_with_where(run, client, make_key, users, conn,
                                                                         tmp_path):
    users("alice", "bob")
    system = make_key("system")
    batch = [event("alice", metadata={"n": i, "amount": 1.50, "neg": -0.0}, source_ip="2001:db8::7")
             for i in range(30)]
    assert client.post("/api/v1/logs/batch", json=batch, headers=system).status_code in (200, 201, 207)
    erased = client.delete(f"/api/v1/logs/{batch[3]['event_id']}", json={"reason": "GDPR art. 17"},
                           headers=make_key("admin"))
    assert erased.status_code == 200
    # A client retry with a few new events: the writer's staging-table ON CONFLICT path.
    retry = batch[10:20] + [event("bob") for _ in range(5)]
    body = client.post("/api/v1/logs/batch", json=retry, headers=system).get_json()
    assert (body["accepted"], body["duplicates"]) == (5, 10)

    first = run("integrity", "checkpoint")
    assert first.exit_code == 0, first.output
    key_file = tmp_path / "data" / "integrity" / "signing.key"
    assert "generated a new integrity signing key" in first.output and str(key_file) in first.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "signed checkpoint at chain position" in first.output
    assert "nothing sealed since" in run("integrity", "checkpoint").output

    clean = run("verify")
    assert clean.exit_code == 0, clean.output
    assert "OK: no tampering found" in clean.output and "1 lawful erasures" in clean.output
    assert "verifying" in clean.output  # the progress bar

    anchors = tmp_path / "anchors.jsonl"
    exported = run("integrity", "export-checkpoints", str(anchors))
    assert exported.exit_code == 0 and "exported 1 checkpoints" in exported.output
    assert json.loads(anchors.read_text().splitlines()[0])["signature"]

    conn.execute("UPDATE audit_events SET user_id = 'bob' WHERE event_id = %s", (batch[20]["event_id"],))
    tampered = run("verify")
    assert tampered.exit_code == 1
    assert "TAMPERING DETECTED" in tampered.output
    assert "first broken link [content_changed]: batch #1" in tampered.output
    assert "a field was altered" in tampered.output

    conn.execute("UPDATE audit_events SET user_id = 'alice' WHERE event_id = %s", (batch[20]["event_id"],))
    restored = run("verify")
    assert restored.exit_code == 0, restored.output
    newest = conn.execute("SELECT max(batch_seq) FROM audit_events").fetchone()[0]
    conn.execute("DELETE FROM audit_events WHERE batch_seq = %s", (newest,))
    conn.execute("DELETE FROM integrity_batches WHERE batch_seq = %s", (newest,))
    conn.execute("DELETE FROM integrity_checkpoints")
    conn.execute("UPDATE integrity_head SET chain_pos = b.chain_pos, chain_hash = b.chain_hash FROM "
                 "(SELECT chain_pos, chain_hash FROM integrity_batches ORDER BY chain_pos DESC LIMIT 1) b")
    alone = run("verify")  # the database counts the checkpoints it signed
    assert alone.exit_code == 1 and "[checkpoints_missing]" in alone.output, alone.output
    caught = run("verify", "--anchors", str(anchors))
    assert caught.exit_code == 1
    assert "[truncated]" in caught.output and "the newest batches (and their events) were removed" in caught.output


def test_verify_windows_and_bad_input(run, tmp_path):
    assert run("integrity", "checkpoint").exit_code == 0  # makes the key and its .pub
    ok = run("verify", "--since", "2024-05-01", "--until", "2024-05-02T00:00:00+02:00")
    assert ok.exit_code == 0, ok.output
    bad = run("verify", "--since", "yesterday")
    assert bad.exit_code == 2 and "ISO 8601" in bad.output
    backwards = run("verify", "--since", "2024-05-02", "--until", "2024-05-01")
    assert backwards.exit_code == 2 and "--since must be before --until" in backwards.output
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n")
    refused = run("verify", "--anchors", str(junk))
    assert refused.exit_code == 2 and "export-checkpoints" in refused.output
    untrusted = run("verify", "--trust", "not-a-key")
    assert untrusted.exit_code == 2 and "public key" in untrusted.output


def test_a_configured_key_is_used_and_one_readable_by_others_is_refused(run, tmp_path):
    out = tmp_path / "signing.key"
    made = run("integrity", "keygen", "--out", str(out))
    assert made.exit_code == 0 and out.stat().st_mode & 0o777 == 0o600
    public = made.output.split("public key (give verifiers; `verify --trust`): ")[1].split()[0]
    assert len(base64.b64decode(public)) == 32
    assert run("integrity", "keygen", "--out", str(out)).exit_code == 2  # never overwritten

    env = {**run.env, "AUDITWATCH_INTEGRITY_SIGNING_KEY_FILE": str(out)}
    signed = CliRunner().invoke(main, ["integrity", "checkpoint", "--force"], env=env)
    assert signed.exit_code == 0 and "generated" not in signed.output
    exported = CliRunner().invoke(main, ["integrity", "export-checkpoints", "-"], env=env)
    line = json.loads(exported.stdout.splitlines()[0])
    assert line["public_key"] == public
    assert "public key written to" in made.output
    assert (tmp_path / "signing.key.pub").read_text().strip() == public
    out.chmod(0o644)
    refused = CliRunner().invoke(main, ["integrity", "checkpoint", "--force"], env=env)
    assert refused.exit_code == 1 and "chmod 600" in refused.output
    # The verifier never reads the private key: its public half is enough.
    checked = CliRunner().invoke(main, ["verify", "--public-key", str(tmp_path / "signing.key.pub")], env=env)
    assert checked.exit_code == 0 and "OK: no tampering found" in checked.output, checked.output


def test_verify_runs_as_a_module(db_url, tmp_path):
    """`python -m auditwatch.cli` imports cli.py as __main__; the integrity commands must still register."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITWATCH_")}
    env.update(AUDITWATCH_DATABASE_URL=db_url, AUDITWATCH_DATA_DIR=str(tmp_path / "data"),
               PYTHONPATH=str(ROOT))
    public = base64.b64encode(checkpoints.public_bytes(checkpoints.generate())).decode()
    done = subprocess.run([sys.executable, "-m", "auditwatch.cli", "verify", "--trust", public], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "OK: no tampering found" in done.stdout
    assert not Path(tmp_path / "data" / "integrity" / "signing.key").exists()  # verify creates no key


def test_the_worker_signs_checkpoints_with_the_project_local_key(settings, services, tmp_path):
    from apscheduler.util import ref_to_obj

    from auditwatch.worker import build_scheduler
    from storage.timescale import sealing

    scheduler = build_scheduler(services.pool, settings.replace(integrity_checkpoint_seconds=42))
    job = scheduler.get_job("integrity_checkpoint")
    assert job.trigger.interval.total_seconds() == 42
    services.committer.write([services.audit_record("config_change", "tests")])
    ref_to_obj(job.func_ref)(**job.kwargs)
    ref_to_obj(job.func_ref)(**job.kwargs)  # nothing new sealed: no second checkpoint
    (cp,) = sealing.list_checkpoints(services.pool)
    assert cp.chain_pos == 1 and cp.events == 1
    assert (Path(settings.data_dir) / "integrity" / "signing.key").stat().st_mode & 0o777 == 0o600


def test_verify_on_an_unmigrated_database_says_to_migrate(empty_db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"AUDITWATCH_DATABASE_URL": empty_db_url, "AUDITWATCH_DATA_DIR": str(tmp_path / "data")}
    public = base64.b64encode(checkpoints.public_bytes(checkpoints.generate())).decode()
    result = CliRunner().invoke(main, ["verify", "--trust", public], env=env)
    assert result.exit_code == 1 and "auditwatch migrate" in result.output


def test_verify_with_no_public_key_says_how_to_give_one(run, tmp_path):
    refused = run("verify")
    assert refused.exit_code == 2 and "--public-key" in refused.output
    assert not (tmp_path / "data" / "integrity" / "signing.key").exists()


def test_a_forged_retention_record_and_a_deleted_export_are_reported(run, client, make_key, users, conn, tmp_path):
    """Issue 14's reproduction end to end: one INSERT into integrity_removals marked 'retention' and a DELETE
    of a data_export event printed `OK: no tampering found` ("1 batches expired by retention")."""
    users("alice")
    batch = [event("alice", event_type="data_export", metadata={"rows": 10 * i}) for i in range(5)]
    assert client.post("/api/v1/logs/batch", json=batch, headers=make_key("system")).status_code in (200, 201, 207)
    assert run("integrity", "checkpoint").exit_code == 0
    private = tmp_path / "data" / "integrity" / "signing.key"
    public = tmp_path / "data" / "integrity" / "signing.key.pub"
    private.unlink()  # the verifier's machine holds only the public key
    assert run("verify", "--public-key", str(public)).exit_code == 0
    assert not private.exists()

    victim = batch[2]
    conn.execute("DELETE FROM audit_events WHERE event_id = %s", (victim["event_id"],))
    conn.execute("INSERT INTO integrity_removals (lo, hi, reason, rows, removed_by) "
                 "VALUES (now() - interval '1 day', now() + interval '1 day', 'retention', 1, 'retention')")
    result = run("verify")
    assert result.exit_code == 1, result.output
    assert "TAMPERING DETECTED" in result.output and "0 batches expired by retention" in result.output
    assert "[rows_missing]" in result.output and "[removal_forged]" in result.output
    assert not private.exists()
