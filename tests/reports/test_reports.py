"""Each report rendered from the seeded store; its PDF read back (pdftotext) against direct queries."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from reports import engine, registry
from reports.errors import BadScope, ReportError
from reports.model import Params
from tests.reports.conftest import END, SPRAY_FP, SPRAY_IP, START

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def generate(seeded, name: str, out: Path, scope: str | None = None, **options) -> engine.Generated:
    params = registry.get(name).params(START, END, scope, options or None)
    return engine.generate(seeded.source(), params, out, generated_by="tests:auditor", now=NOW,
                           trusted_keys=seeded.trusted, archive=seeded.store)


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def figure(text: str, label: str) -> str:
    """The value printed right of ``label`` in the PDF's figures table."""
    found = re.search(re.escape(label) + r"\s+(\S+)", text)
    assert found, f"{label!r} is not in the PDF text"
    return found.group(1)


def direct(seeded, where: str, params: tuple = ()) -> int:
    """Count in both tiers with the same SQL condition: PostgreSQL over the hot table, Polars SQL over the
    Parquet files (not through the data API the reports use)."""
    with seeded.pool.connection() as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # EXTRACT(HOUR ...) in UTC, as Polars reads the Parquet times
        hot = conn.execute(f"SELECT count(*) FROM audit_events WHERE {where}",  # noqa: S608
                           params or None).fetchone()[0]
    files = sorted(Path(seeded.store.root).rglob("*.parquet"))
    cold = 0
    if files:
        ctx = pl.SQLContext(events=pl.scan_parquet(files))
        cold_where = where
        for value in params:
            cold_where = cold_where.replace("%s", f"'{value}'", 1)
        cold = ctx.execute(f"SELECT count(*) AS n FROM events WHERE {cold_where}", eager=True)["n"][0]  # noqa: S608
    return hot + cold


PERIOD = "\"timestamp\" >= '2024-05-01 00:00:00+00' AND \"timestamp\" < '2024-05-08 00:00:00+00'"


def test_the_seed_puts_part_of_the_period_in_the_cold_tier(seeded):
    files = list(Path(seeded.store.root).rglob("*.parquet"))
    assert files
    assert direct(seeded, PERIOD) == sum(1 for e in seeded.events if START <= e.timestamp < END)


def test_access_review(seeded, tmp_path):
    g = generate(seeded, "access-review", tmp_path)
    text = pdf_text(g.pdf)
    with seeded.pool.connection() as conn:
        active = conn.execute("SELECT count(*) FROM api_keys WHERE created_at < %s AND "
                              "(revoked_at IS NULL OR revoked_at >= %s)", (END, END)).fetchone()[0]
    assert figure(text, "API keys active at period end") == str(active) == "2"
    revoked = direct(seeded, PERIOD + " AND event_type = 'permission_change' AND "
                     "CAST(metadata AS VARCHAR) LIKE '%\"revoked\"%'")
    assert figure(text, "Revocations in period") == str(revoked) == "1"
    assert figure(text, "Active keys unused for 90 days") == "1"
    unused = pl.read_csv(tmp_path / "unused_keys.csv")
    assert unused["name"].to_list() == ["admin-old"]
    # dave only appears as the target of failed sign-ins; erin was disabled before the period; keys are not accounts
    dormant = pl.read_csv(tmp_path / "dormant_accounts.csv")
    assert dormant["user_id"].to_list() == ["dave"]
    assert "late-key" not in pl.read_csv(tmp_path / "keys.csv")["name"].to_list()  # created after the period


def test_privileged_activity(seeded, tmp_path):
    g = generate(seeded, "privileged-activity", tmp_path)
    text = pdf_text(g.pdf)
    for label, kind in (("Permission changes", "permission_change"), ("Configuration changes", "config_change")):
        assert figure(text, label) == str(direct(seeded, PERIOD + f" AND event_type = '{kind}'")) == "2"
    night = direct(seeded, PERIOD + " AND event_type IN ('permission_change', 'config_change') AND "
                   "(EXTRACT(HOUR FROM \"timestamp\") < 7 OR EXTRACT(HOUR FROM \"timestamp\") >= 19)")
    assert figure(text, "Outside 07:00-19:00 UTC") == str(night) == "2"
    changes = pl.read_csv(tmp_path / "changes.csv")
    assert changes.filter(pl.col("out_of_hours"))["timestamp"].to_list() == [
        "2024-05-03T03:12:00.000000Z", "2024-05-05T02:00:00.000000Z"]
    assert figure(text, "Alerts raised in period") == "1"
    alerts = pl.read_csv(tmp_path / "alerts.csv")
    assert alerts["acknowledged_by"].to_list() == ["carol"] and alerts["minutes_to_response"].to_list() == [18]


def test_auth_failures(seeded, tmp_path):
    g = generate(seeded, "auth-failures", tmp_path)
    text = pdf_text(g.pdf)
    failed = direct(seeded, PERIOD + " AND event_type = 'user_login' AND outcome = 'failure'")
    assert figure(text, "Failed authentications") == str(failed) == "42"
    assert figure(text, "Authentication attempts") == str(direct(seeded, PERIOD + " AND event_type = 'user_login'"))
    assert figure(text, "Lockouts") == "1"
    sources = pl.read_csv(tmp_path / "top_sources.csv")
    assert sources.row(0, named=True)["source_ip"] == SPRAY_IP
    assert sources.row(0, named=True)["failures"] == direct(
        seeded, PERIOD + " AND outcome = 'failure' AND source_ip = %s", (SPRAY_IP,)) == 31
    attacks = pl.read_csv(tmp_path / "attacks.csv")
    assert attacks.select("detector", "entity_value", "alert_state").rows() == [
        ("password_spraying", SPRAY_IP, "resolved")]


def test_log_integrity(seeded, tmp_path):
    g = generate(seeded, "log-integrity", tmp_path)
    text = pdf_text(g.pdf)
    assert g.proof.ok and g.proof.covered
    assert "INTACT: chain verified and the period's end is covered by a signed checkpoint" in text
    with seeded.pool.connection() as conn:
        hot = conn.execute(f"SELECT count(*) FROM audit_events WHERE {PERIOD}").fetchone()[0]  # noqa: S608
    total = direct(seeded, PERIOD)
    assert figure(text, "Events stored for the period") == str(total)
    assert figure(text, "of which in the hot tier") == str(hot)
    assert figure(text, "of which in the cold tier") == str(total - hot) != "0"
    gaps = pl.read_csv(tmp_path / "gaps.csv").filter(pl.col("source") == "hr-app")
    assert gaps.select("last_before_gap", "hours").rows() == [("2024-05-05T00:30:00.000000Z", 14.0)]
    # The proof names the checkpoint signed after the period, with its public key.
    proof = json.loads((tmp_path / "proof.json").read_text())
    assert proof["checkpoint"]["created_at"] >= END.isoformat()
    assert proof["checkpoint"]["public_key"] in text.replace("\n", "")


def test_sensitive_access(seeded, tmp_path):
    g = generate(seeded, "sensitive-access", tmp_path)
    text = pdf_text(g.pdf)
    with seeded.pool.connection() as conn:
        rows = conn.execute("SELECT sum((metadata->>'rows')::int) FROM audit_events WHERE event_type = 'data_export' "
                            "AND metadata->>'dataset' = 'employees'").fetchone()[0] or 0
    cold_rows = (pl.scan_parquet(sorted(Path(seeded.store.root).rglob("*.parquet")))  # 2024-05-03's is archived
                 .filter(pl.col("event_type") == "data_export")
                 .select(pl.col("metadata").str.json_path_match("$.dataset").alias("dataset"),
                         pl.col("metadata").str.json_path_match("$.rows").cast(pl.Int64).alias("rows"))
                 .filter(pl.col("dataset") == "employees").collect()["rows"].sum())
    assert figure(text, "Rows exported") == f"{rows + cold_rows:,}" == "2,000"
    by_user = pl.read_csv(tmp_path / "by_user.csv")
    assert by_user.select("user_id", "exports", "queries").rows() == [("bob", 2, 0), ("alice", 0, 3)]
    assert "general_ledger" not in (tmp_path / "accesses.csv").read_text()


def test_incident_timeline_for_an_alert(seeded, tmp_path):
    g = generate(seeded, "incident-timeline", tmp_path, scope=f"alert:{SPRAY_FP}")
    text = pdf_text(g.pdf)
    events = direct(seeded, PERIOD + " AND source_ip = %s", (SPRAY_IP,))
    assert figure(text, "Events by the entity") == str(events) == "31"
    assert figure(text, "Hours from first anomaly to resolution") == "4.00"
    timeline = pl.read_csv(tmp_path / "timeline.csv")
    assert timeline["at"].to_list() == sorted(timeline["at"].to_list())
    kinds = timeline["kind"].to_list()
    assert kinds.index("anomaly") < kinds.index("alert") and timeline.height == events + 1 + 2
    with pytest.raises(BadScope, match="no alert has fingerprint"):
        generate(seeded, "incident-timeline", tmp_path / "x", scope="alert:nope")
    with pytest.raises(BadScope, match="takes a scope of kind"):
        registry.get("incident-timeline").params(START, END, None)


def test_rerun_from_the_embedded_parameters_gives_the_same_numbers(seeded, tmp_path):
    first = generate(seeded, "auth-failures", tmp_path / "a", scope="user:bob", top=5)
    engine.store(seeded.pool, first)  # generating is audited in between: the numbers must not move
    params = Params.from_json(json.loads((tmp_path / "a" / "params.json").read_text()))
    assert params == first.params
    again = engine.generate(seeded.source(), params, tmp_path / "b", generated_by="someone else",
                            now=NOW + timedelta(days=3), trusted_keys=seeded.trusted, archive=seeded.store)
    assert again.figures == first.figures
    for name in [f for f in first.files if f.endswith(".csv")] + ["figures.json", "params.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first.figures["Failed authentications"] == direct(
        seeded, PERIOD + " AND event_type = 'user_login' AND outcome = 'failure' AND user_id = 'bob'")


def test_the_pdf_embeds_its_parameters_and_proof(seeded, tmp_path):
    g = generate(seeded, "privileged-activity", tmp_path)
    listed = subprocess.run(["pdfdetach", "-list", str(g.pdf)], check=True, capture_output=True, text=True).stdout
    assert {"params.json", "figures.json", "proof.json"} <= set(re.findall(r"\d+: (\S+)", listed))
    subprocess.run(["pdfdetach", "-savefile", "params.json", "-o", str(tmp_path / "out.json"), str(g.pdf)],
                   check=True)
    assert Params.from_json(json.loads((tmp_path / "out.json").read_text())) == g.params
    sums = dict(line.split("  ")[::-1] for line in (tmp_path / "SHA256SUMS").read_text().splitlines())
    assert sums == g.files and g.sha256 == engine.manifest_hash(g.files)


@pytest.mark.parametrize("name", [d.name for d in registry.all_reports()])
def test_every_page_keeps_its_text_inside_the_paper(seeded, tmp_path, name):
    """The layout check behind looking at the pages: no word of any page runs past the paper's edge."""
    scope = f"alert:{SPRAY_FP}" if name == "incident-timeline" else None
    g = generate(seeded, name, tmp_path, scope=scope)
    box = subprocess.run(["pdftotext", "-bbox", str(g.pdf), "-"], check=True, capture_output=True, text=True).stdout
    pages = re.findall(r'<page width="([\d.]+)" height="([\d.]+)">', box)
    assert pages and all(abs(float(w) - 595.3) < 1 for w, _ in pages)  # A4
    width = float(pages[0][0])
    right = [float(x) for x in re.findall(r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)"', box)]
    assert right and max(right) <= width - 20, f"text runs to x={max(right)} of {width}"
    png = subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(g.pdf), str(tmp_path / "p")],
                         check=True)
    assert png.returncode == 0 and list(tmp_path.glob("p-*.png"))


def test_options_and_periods_are_checked():
    with pytest.raises(ReportError, match="no option"):
        registry.get("access-review").params(START, END, None, {"idle": 3})
    with pytest.raises(ReportError, match="before --to"):
        registry.get("access-review").params(END, START)
    with pytest.raises(ReportError, match="no report named"):
        registry.get("nope")
