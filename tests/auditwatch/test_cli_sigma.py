"""`auditwatch rules import-sigma` and `export-sigma`, run for real against the test database."""

from __future__ import annotations

from tests.alerts.test_sigma import COLLECTION, sigma


def test_cli_imports_a_directory_and_exports_our_rules(run, tmp_path, conn):
    into = tmp_path / "my-rules"
    result = run("rules", "import-sigma", str(COLLECTION), "--into", str(into))
    assert result.exit_code == 0, result.output
    assert len(list(into.glob("*.yml"))) == len(list(COLLECTION.glob("*.yml")))
    recorded = conn.execute("SELECT metadata FROM audit_events WHERE event_type = 'config_change' "
                            "AND metadata ->> 'change' = 'sigma_rules_imported'").fetchall()
    assert len(recorded) == 1 and len(recorded[0][0]["rules"]) == len(list(into.glob("*.yml")))
    assert f"{len(list(COLLECTION.glob('*.yml')))} imported, 0 refused" in result.output
    again = run("rules", "import-sigma", str(COLLECTION / "sudo_refused.yml"), "--into", str(into))
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.output
    bad = tmp_path / "bad.yml"
    bad.write_text(sigma(selection="{CommandLine: whoami}"))
    refused = run("rules", "import-sigma", str(bad), "--into", str(into))
    assert refused.exit_code == 1 and "refused probe" in refused.output and "CommandLine" in refused.output
    out = tmp_path / "sigma-out"
    exported = run("rules", "export-sigma", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    assert (out / "password_spraying.yml").is_file() and "not exported: silent_source" in exported.output
    stdout = run("rules", "export-sigma", "--rule", "failed_login_burst")
    assert stdout.exit_code == 0 and "name: failed_login_burst" in stdout.output
