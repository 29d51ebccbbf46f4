"""`auditwatch generate` and `auditwatch eval`: generated data, and files scored exactly as a user makes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from analytics import labels as L
from analytics.events import read_ndjson

ROOT = Path(__file__).resolve().parents[2]
A_CLASSES = {"brute_force_fast", "brute_force_slow", "password_spraying", "credential_stuffing", "exfiltration",
             "night_privilege_escalation", "new_country_login", "insider_chain", "password_spraying_slow"}


def test_eval_of_generator_a_small_meets_the_targets_in_a_subprocess(tmp_path):
    """``auditwatch eval --generator a`` end to end on a small tuning set (the full size is the default)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AUDITWATCH_CONFIG", None)
    report = tmp_path / "eval.json"
    done = subprocess.run([sys.executable, "-m", "auditwatch.cli", "eval", "--generator", "a", "--users", "200",
                           "--days", "8", "--attack-days", "2", "--seed", "11", "--json", str(report), "--strict"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    # --strict exits 1: exfiltration inside the month-end close (generator A's hard variant) is still missed at this
    # size (about 10 people in finance: a thin peer group for the cohort-relative export sizes).
    assert done.returncode == 1, done.stdout + done.stderr
    (figures,) = orjson.loads(report.read_bytes())["evaluations"]
    assert figures["generator"] == "a" and {c["scenario"] for c in figures["classes"]} == A_CLASSES
    assert all(c["recall"] >= 0.95 for c in figures["classes"] if c["scenario"] != "exfiltration")
    assert figures["false_incidents_per_day_per_1000_users"] <= 1.0 and figures["passed"] == {
        "recall": False, "false_incidents_per_day_per_1000_users": True}
    assert set(figures["detectors"]) and all("precision" in d for d in figures["detectors"].values())
    assert "recall" in done.stdout and "generator a" in done.stderr
    # The miss is named, in the report and in the JSON: which incident, whose, when.
    assert figures["missed_incidents"] and all(m.startswith("exfiltration ") for m in figures["missed_incidents"])
    assert "missed incidents:\n  exfiltration " in done.stdout


def test_generate_analyze_then_eval_the_files_as_a_user_would(run, tmp_path):
    events, labels, found = tmp_path / "events.ndjson", tmp_path / "labels.json", tmp_path / "anomalies.jsonl"
    result = run("generate", "--generator", "b", "--users", "120", "--days", "8", "--seed", "3", "--out", str(events),
                 "--labels", str(labels))
    assert result.exit_code == 0, result.output
    written = L.read(labels)
    assert written.generator == "b" and written.users == 120 and len(written.incidents) == 27
    frame = read_ndjson(events)
    assert {e for i in written.incidents for e in i.event_ids} <= set(frame["event_id"])
    until = written.scored_from.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"--baseline-until {until}" in result.output

    result = run("analyze", str(events), "--out", str(found), "--baseline-until", until)
    assert result.exit_code == 0, result.output
    result = run("eval", "--labels", str(labels), "--anomalies", str(found), "--json", str(tmp_path / "f.json"))
    assert result.exit_code == 0, result.output
    (from_file,) = orjson.loads((tmp_path / "f.json").read_bytes())["evaluations"]
    assert "insider_chain" in result.output and "per day per 1,000 users" in result.output

    # analyzing here (--events) and generating here give the very same figures as the files
    result = run("eval", "--labels", str(labels), "--events", str(events), "--json", str(tmp_path / "e.json"))
    assert result.exit_code == 0, result.output
    (analyzed_here,) = orjson.loads((tmp_path / "e.json").read_bytes())["evaluations"]
    result = run("eval", "--generator", "b", "--users", "120", "--days", "8", "--seed", "3", "--json",
                 str(tmp_path / "g.json"))
    assert result.exit_code == 0, result.output
    (generated,) = orjson.loads((tmp_path / "g.json").read_bytes())["evaluations"]
    for key in ("classes", "detectors", "cohorts", "false_incidents", "anomaly_windows"):
        assert from_file[key] == analyzed_here[key] == generated[key], key

    strict = run("eval", "--labels", str(labels), "--anomalies", str(found), "--strict")
    assert strict.exit_code == (0 if all(from_file["passed"].values()) else 1)


def test_eval_no_attacks_counts_only_false_incidents(run, tmp_path):
    result = run("eval", "--generator", "b", "--users", "100", "--days", "6", "--no-attacks", "--json",
                 str(tmp_path / "q.json"))
    assert result.exit_code == 0, result.output
    (quiet,) = orjson.loads((tmp_path / "q.json").read_bytes())["evaluations"]
    assert all(c["incidents"] == 0 for c in quiet["classes"]) and quiet["passed"]["recall"]
    assert quiet["params"]["attacks"] is False and quiet["days"] == 3.0


def test_eval_says_what_to_give(run, tmp_path):
    result = run("eval", "--labels", str(ROOT / "pyproject.toml"))
    assert result.exit_code == 2 and "give --labels and --anomalies" in result.output
    bad = tmp_path / "labels.json"
    bad.write_text('{"incidents": []}')
    (tmp_path / "a.jsonl").write_text("")
    result = run("eval", "--labels", str(bad), "--anomalies", str(tmp_path / "a.jsonl"))
    assert result.exit_code == 1 and "lacks scored_from, end or users" in result.output
    result = run("eval", "--labels", str(bad), "--anomalies", str(tmp_path / "a.jsonl"), "--users", "50")
    assert result.exit_code == 2 and "files come with their own labels" in result.output


def test_eval_of_an_addresses_only_file_locates_it_as_analyze_does(run, tmp_path):
    events, labels, bare = tmp_path / "events.ndjson", tmp_path / "labels.json", tmp_path / "bare.ndjson"
    result = run("generate", "--generator", "b", "--users", "80", "--days", "6", "--seed", "4", "--out", str(events),
                 "--labels", str(labels))
    assert result.exit_code == 0, result.output
    with open(events, "rb") as source, open(bare, "wb") as out:
        for line in source:
            event = orjson.loads(line)
            event.pop("source_country", None)
            event.pop("source_asn", None)
            out.write(orjson.dumps(event) + b"\n")
    located = run("eval", "--labels", str(labels), "--events", str(bare))
    assert located.exit_code == 0, located.output
    assert "source_country and source_asn (none in the file) filled from source_ip as ingest does" in located.output
    blind = run("eval", "--labels", str(labels), "--events", str(bare), "--no-geo")
    assert blind.exit_code == 0, blind.output
    assert "filled from source_ip" not in blind.output and "has a country" in blind.output
