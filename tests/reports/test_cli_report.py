"""`auditwatch report list|show|run` end to end on the seeded store: files written, row stored, run audited."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest
from click.testing import CliRunner

from auditwatch.cli.main import main
from reports import engine
from storage.integrity import checkpoints
from storage.timescale import reports as stored_reports


@pytest.fixture
def run(db_url, seeded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("AUDITWATCH_"):
            monkeypatch.delenv(name)
    env = {"AUDITWATCH_DATABASE_URL": db_url, "AUDITWATCH_DATA_DIR": str(tmp_path / "data"),
           "AUDITWATCH_ARCHIVE_URL": str(seeded.store.root),
           "AUDITWATCH_INTEGRITY_TRUSTED_KEYS": base64.b64encode(checkpoints.public_bytes(seeded.key)).decode()}

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def test_run_writes_the_report_stores_its_hash_and_audits_the_run(run, seeded, tmp_path):
    listed = run("report", "list")
    assert listed.exit_code == 0 and "access-review" in listed.output and "PCI DSS 10.2.2" in listed.output

    out = tmp_path / "out"
    result = run("report", "run", "access-review", "--from", "2024-05-01", "--to", "2024-05-08", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "INTACT" in result.output and "API keys active at period end: 2" in result.output
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    assert {"report.html", "appendix.xlsx", "keys.csv", "params.json", "proof.json", "SHA256SUMS"} <= {
        p.name for p in out.iterdir()}
    subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=out, check=True)

    [row] = stored_reports.history(seeded.pool, name="access-review")
    files = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert row.files == files and row.sha256 == engine.manifest_hash(files)
    assert row.parameters == json.loads((out / "params.json").read_text())
    assert row.generated_by.startswith("cli:") and row.location == str(out)
    with seeded.pool.connection() as conn:
        audited = conn.execute("SELECT user_id, source, metadata FROM audit_events WHERE event_type = "
                               "'report_generated' AND resource_id = %s", (str(row.report_id),)).fetchall()
    assert len(audited) == 1
    user, source, metadata = audited[0]
    assert (user, source) == (row.generated_by, "auditwatch-cli")
    assert metadata["sha256"] == row.sha256 and metadata["report"] == "access-review"

    shown = run("report", "show", "access-review")
    assert shown.exit_code == 0 and str(row.report_id) in shown.output and "option idle_days = 90" in shown.output

    again = run("report", "run", "--params", str(out / "params.json"), "--out", str(tmp_path / "again"))
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "figures.json").read_text() == (out / "figures.json").read_text()
    assert len(stored_reports.history(seeded.pool, name="access-review")) == 2


def test_bad_calls_say_what_to_do(run, tmp_path):
    out = str(tmp_path / "o")
    nope = run("report", "run", "nope", "--from", "2024-05-01", "--to", "2024-05-08", "--out", out)
    assert nope.exit_code == 2 and "report list" in nope.output
    scope = run("report", "run", "access-review", "--from", "2024-05-01", "--to", "2024-05-08", "--scope", "x",
                "--out", out)
    assert scope.exit_code == 2 and "--scope user:alice" in scope.output
    missing = run("report", "run", "access-review", "--out", out)
    assert missing.exit_code == 2 and "--from and --to" in missing.output
    incident = run("report", "run", "incident-timeline", "--from", "2024-05-01", "--to", "2024-05-08",
                   "--scope", "alert:nope", "--out", out)
    assert incident.exit_code == 2 and "no alert has fingerprint" in incident.output
