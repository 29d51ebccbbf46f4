"""GDPR (issue 17): a subject's events across both tiers, the four-eyes erasure with its signed certificate, and
the access export, through the functions the API and the CLI share, over HTTP, and from the command line."""

from __future__ import annotations

import json
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from auditwatch import integrity, privacy
from reports.library import gdpr_certificate
from storage import subjects
from storage.cold.store import ColdStore
from storage.events import EventRecord
from storage.integrity import checkpoints
from storage.timescale import archive, gdpr, legal_hold, sealing, self_audit, verify
from storage.timescale.writer import EventWriter
from tests.auditwatch.test_least_privilege import as_app_role  # noqa: F401  (a fixture)
from tests.storage.cold_data import NOW, OLD_DAYS, audit, event

SUBJECT = "p-17"


def auditor(principal: str) -> self_audit.Auditor:
    return self_audit.auditor(principal, lambda: datetime.now(UTC))


@pytest.fixture
def world(pool, tmp_path):
    """Events of p-17 (and others) in both tiers: ids by name, the cold store."""
    rng = random.Random(11)
    old = NOW - timedelta(days=OLD_DAYS[0])
    recent = NOW - timedelta(hours=2)
    named = {
        "cold_user": event(old + timedelta(hours=1), rng=rng, user_id=SUBJECT, event_type="file_download"),
        "cold_meta": event(old + timedelta(hours=2), rng=rng, user_id="bob", event_type="data_export",
                           metadata={"patient": SUBJECT}),
        "cold_other": event(old + timedelta(hours=3), rng=rng, user_id="bob", resource_id="doc-1",
                            metadata={"note": f"about {SUBJECT} maybe"}),  # a substring, not a mention
        "hot_user": event(recent, rng=rng, user_id=SUBJECT, event_type="user_login", metadata={}),
        "hot_resource": event(recent + timedelta(minutes=1), rng=rng, user_id="carol", resource_id=SUBJECT,
                              event_type="data_export", metadata={}),
        "hot_nested": event(recent + timedelta(minutes=2), rng=rng, user_id="carol", resource_id="doc-1",
                            event_type="config_change",
                            metadata={"x": {"list": ["a", SUBJECT]}}),
        "hot_near": event(recent + timedelta(minutes=3), rng=rng, user_id=SUBJECT + "0", resource_id=None,
                          metadata={}),
        "hot_platform": event(recent + timedelta(minutes=4), rng=rng, user_id="apikey:dpo", resource_id=SUBJECT,
                              event_type="query_executed", metadata={}),
        "hot_retained": event(recent + timedelta(minutes=5), rng=rng, user_id=SUBJECT, event_type="auth_failure",
                              metadata={}),
        "hot_held": event(recent + timedelta(minutes=6), rng=rng, user_id=SUBJECT, event_type="user_login",
                          metadata={"case_id": "CASE-9"}),
    }
    filler = [event(NOW - timedelta(days=d, hours=i), rng=rng, user_id="alice", resource_id=None, metadata={})
              for d in OLD_DAYS for i in range(3)]
    EventWriter(pool).write([*named.values(), *filler])
    store = ColdStore(tmp_path / "archive")
    assert archive.run(pool, store, now=NOW, hot_days=90, audit=audit()).rows == 3 + len(filler)
    legal_hold.place(pool, reason="litigation L-3", created_by="apikey:counsel", case_id="CASE-9", audit=audit())
    return {k: e.event_id for k, e in named.items()}, store


def test_a_subjects_events_are_found_in_both_tiers_by_user_resource_and_metadata(pool, world):
    ids, store = world
    found = subjects.find(pool, store, SUBJECT)
    by_id = {f.event.event_id: f for f in found}
    expected = {k for k in ids if k not in ("cold_other", "hot_near")}
    assert set(by_id) == {ids[k] for k in expected}
    assert by_id[ids["cold_user"]].tier == "cold" and by_id[ids["cold_meta"]].tier == "cold"
    assert by_id[ids["cold_meta"]].matched == ("metadata",)
    assert by_id[ids["hot_resource"]].matched == ("resource_id",)
    assert by_id[ids["hot_nested"]].matched == ("metadata",)
    assert by_id[ids["hot_user"]].tier == "hot"
    # A time window narrows both tiers.
    only_old = subjects.find(pool, store, SUBJECT, end=NOW - timedelta(days=50))
    assert {f.event.event_id for f in only_old} == {ids["cold_user"], ids["cold_meta"]}


def test_erasure_needs_two_distinct_admins_and_yields_a_certificate_that_verifies(pool, world, settings, tmp_path):
    ids, store = world
    settings = settings.replace(gdpr_retain_event_types=("auth_failure",))
    key = integrity.signing_key(settings)
    sealing.write_checkpoint(pool, key, now=datetime.now(UTC))

    req = gdpr.request(pool, SUBJECT, "GDPR Art. 17(1)(a); ticket DPO-42", auditor("apikey:dpo-a"))
    assert req.state == "requested" and req.requested_by == "apikey:dpo-a"
    with pytest.raises(gdpr.WrongStep, match="not approved yet"):
        privacy.execute(pool, store, settings, req.request_id, auditor("apikey:dpo-a"), clock=lambda: NOW)
    with pytest.raises(gdpr.SameApprover, match="cannot approve it too"):
        gdpr.approve(pool, req.request_id, auditor("apikey:dpo-a"))
    assert gdpr.get(pool, req.request_id).state == "requested"
    approved = gdpr.approve(pool, req.request_id, auditor("apikey:dpo-b"), note="checked the ticket")
    assert approved.state == "approved" and approved.by("approved").actor == "apikey:dpo-b"
    with pytest.raises(gdpr.WrongStep, match="already approved"):
        gdpr.approve(pool, req.request_id, auditor("apikey:dpo-c"))

    done = privacy.execute(pool, store, settings, req.request_id, auditor("apikey:dpo-b"),
                           clock=lambda: datetime.now(UTC))
    assert done.request.state == "executed"
    erased_names = {"cold_user", "cold_meta", "hot_user", "hot_resource", "hot_nested"}
    cert = done.signed["certificate"]
    assert {e["event_id"] for e in cert["erased"]["events"]} == {str(ids[k]) for k in erased_names}
    assert cert["erased"]["count"] == 5 and len(cert["erased"]["leaves"]) == 5
    mine = {str(v) for v in ids.values()}
    kept = {e["event_id"]: e["reason"] for e in cert["kept"]["events"] if e["event_id"] in mine}
    # The request's own records name the subject too: kept, as the audit trail of the erasure itself.
    assert {(e["event_type"], e["reason"]) for e in cert["kept"]["events"] if e["event_id"] not in mine} == {
        ("gdpr_erasure_requested", "audit_trail"), ("gdpr_erasure_approved", "audit_trail"),
        ("gdpr_erasure_started", "audit_trail")}
    assert kept == {str(ids["hot_platform"]): "audit_trail", str(ids["hot_retained"]): "retention_obligation",
                    str(ids["hot_held"]): "legal_hold"}
    held = next(e for e in cert["kept"]["events"] if e["reason"] == "legal_hold")
    assert "litigation L-3" in held["detail"]
    assert [s["actor"] for s in cert["request"]["steps"]] == ["apikey:dpo-a", "apikey:dpo-b"]

    # Gone from both tiers; what was kept is still there; the chain (hot and cold) still verifies.
    left = {f.event.event_id for f in subjects.find(pool, store, SUBJECT)}
    assert not {ids[k] for k in erased_names} & left
    assert {ids["hot_platform"], ids["hot_retained"], ids["hot_held"]} <= left
    report = verify.verify(pool, trusted_keys=[checkpoints.public_bytes(key)], cold=verify.cold_reader(pool, store))
    assert report.ok, report.problems
    assert report.erased == 5

    # The certificate verifies with the public key file alone, and any change breaks it.
    public = checkpoints.load_public(checkpoints.public_path(integrity.key_path(settings)))
    assert gdpr_certificate.verify(done.signed, public) == cert
    tampered = json.loads(json.dumps(done.signed))
    tampered["certificate"]["kept"]["events"].pop()
    with pytest.raises(gdpr_certificate.CertificateInvalid, match="does not verify"):
        gdpr_certificate.verify(tampered, public)
    with pytest.raises(gdpr_certificate.CertificateInvalid):
        gdpr_certificate.verify(done.signed, [checkpoints.public_bytes(checkpoints.generate())])
    stored = gdpr.get(pool, req.request_id).by("executed").certificate
    assert stored == done.signed

    # Every step audited once; one event_erased record per erased event, each marked with the request.
    with pool.connection() as conn:
        counts = dict(conn.execute("SELECT event_type, count(*) FROM audit_events WHERE event_type LIKE 'gdpr_%' "
                                   "GROUP BY 1").fetchall())
        assert counts == {"gdpr_erasure_requested": 1, "gdpr_erasure_approved": 1, "gdpr_erasure_started": 1,
                          "gdpr_erasure_executed": 1}
    assert len(gdpr.erasure_records(pool, req.request_id)) == 5
    with pytest.raises(gdpr.WrongStep, match="executed already"):
        privacy.execute(pool, store, settings, req.request_id, auditor("apikey:dpo-b"), clock=lambda: NOW)

    files = gdpr_certificate.write(done.signed, tmp_path / "cert")
    assert set(files) == {"certificate.json", "certificate.html", "certificate.pdf"}
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "cert" / "certificate.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    # Compared without whitespace: a table cell may wrap a value at its hyphen ("apikey:dpo-" / "b"), depending on
    # the widths of the ids and times beside it (seen once in a helper's run).
    squeezed = "".join(text.split())
    for needle in ("Erasure certificate", SUBJECT, "litigation L-3", "apikey:dpo-b"):
        assert "".join(needle.split()) in squeezed, needle


def test_the_steps_table_is_append_only(pool, db_url):
    req = gdpr.request(pool, SUBJECT, "Art. 17", auditor("apikey:dpo-a"))
    with psycopg.connect(db_url, autocommit=True) as conn:  # the owner, even
        for statement in ("UPDATE gdpr_erasure_steps SET subject = 'x'", "DELETE FROM gdpr_erasure_steps",
                          "TRUNCATE gdpr_erasure_steps", "DELETE FROM phi_vault"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    assert gdpr.get(pool, req.request_id).subject == SUBJECT


def test_the_access_export_lists_the_subjects_events_with_a_cover_letter(pool, world, settings, tmp_path):
    from reports.library import gdpr_access

    ids, store = world
    export = privacy.access_export(pool, store, settings, SUBJECT, auditor("apikey:dpo-a"),
                                   requested_by="apikey:dpo-a", now=datetime.now(UTC))
    doc = export.document
    assert doc["counts"]["events"] == 8
    assert doc["counts"]["by_tier"] == {"cold": 2, "hot": 6}
    assert doc["counts"]["by_event_type"]["user_login"] == 2
    assert {e["event_id"] for e in doc["events"]} == {str(ids[k]) for k in ids if k not in ("cold_other",
                                                                                           "hot_near")}
    assert doc["integrity"]["ok"] is True
    with pool.connection() as conn:
        record = conn.execute("SELECT user_id, resource_id, metadata FROM audit_events "
                              "WHERE event_type = 'gdpr_access_exported'").fetchall()
    assert len(record) == 1 and record[0][:2] == ("apikey:dpo-a", SUBJECT)
    assert record[0][2]["events"] == 8 and record[0][2]["export_id"] == doc["export_id"]

    files = gdpr_access.write(export, tmp_path / "dsar")
    assert json.loads((tmp_path / "dsar" / "export.json").read_text())["counts"] == doc["counts"]
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "dsar" / "cover.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "Data subject access export" in text and SUBJECT in text and "apikey:dpo-a" in text
    assert "file_download" in text and files["export.json"] in text
    assert "INTACT" in text


# -- over HTTP -------------------------------------------------------------------------------------

def _write(pool, *events: EventRecord) -> None:
    EventWriter(pool).write(list(events))


def test_the_api_runs_the_workflow_and_refuses_the_same_admin(client, services, make_key, settings):
    rng = random.Random(3)
    now = datetime.now(UTC)
    mine = [event(now - timedelta(minutes=i), rng=rng, user_id=SUBJECT, event_type="user_login", metadata={})
            for i in range(3)]
    _write(services.pool, *mine)
    a, b, auditor_key = make_key("admin", "dpo-a"), make_key("admin", "dpo-b"), make_key("auditor")

    assert client.post("/api/v1/gdpr/access", json={"subject": SUBJECT}, headers=auditor_key).status_code == 403
    exported = client.post("/api/v1/gdpr/access", json={"subject": SUBJECT}, headers=a)
    assert exported.status_code == 200, exported.get_json()
    assert exported.get_json()["counts"]["events"] == 3

    made = client.post("/api/v1/gdpr/erasures", json={"subject": SUBJECT, "lawful_basis": "Art. 17(1)(b)"},
                       headers=a)
    assert made.status_code == 201
    rid = made.get_json()["request_id"]
    same = client.post(f"/api/v1/gdpr/erasures/{rid}/approve", headers=a)
    assert same.status_code == 409 and same.get_json()["code"] == "same_approver"
    assert "another admin must approve" in same.get_json()["message"]
    early = client.post(f"/api/v1/gdpr/erasures/{rid}/execute", headers=b)
    assert early.status_code == 409 and early.get_json()["code"] == "wrong_state"
    assert client.get(f"/api/v1/gdpr/erasures/{rid}/certificate", headers=a).status_code == 409
    ok = client.post(f"/api/v1/gdpr/erasures/{rid}/approve", json={"note": "ok"}, headers=b)
    assert ok.status_code == 200 and ok.get_json()["state"] == "approved"
    run = client.post(f"/api/v1/gdpr/erasures/{rid}/execute", headers=a)
    assert run.status_code == 200, run.get_json()
    signed = run.get_json()["certificate"]
    assert signed["certificate"]["erased"]["count"] == 3
    assert client.get(f"/api/v1/gdpr/erasures/{rid}/certificate", headers=b).get_json() == signed
    public = checkpoints.load_public(checkpoints.public_path(integrity.key_path(settings)))
    assert gdpr_certificate.verify(signed, public)["request"]["request_id"] == rid
    listed = client.get("/api/v1/gdpr/erasures", query_string={"subject": SUBJECT}, headers=a).get_json()
    assert [r["state"] for r in listed["requests"]] == ["executed"]
    assert client.get(f"/api/v1/gdpr/erasures/{rid}", headers=b).get_json()["state"] == "executed"
    missing = client.get("/api/v1/gdpr/erasures/00000000-0000-0000-0000-000000000000", headers=a)
    assert missing.status_code == 404
    with services.pool.connection() as conn:
        actors = conn.execute("SELECT event_type, user_id FROM audit_events WHERE event_type LIKE 'gdpr_%' "
                              "ORDER BY timestamp").fetchall()
    assert actors == [("gdpr_access_exported", "apikey:dpo-a"), ("gdpr_erasure_requested", "apikey:dpo-a"),
                      ("gdpr_erasure_approved", "apikey:dpo-b"), ("gdpr_erasure_started", "apikey:dpo-a"),
                      ("gdpr_erasure_executed", "apikey:dpo-a")]


# -- from the command line -------------------------------------------------------------------------

def test_the_cli_exports_erases_and_verifies_the_certificate(run, db_url, tmp_path, monkeypatch):
    from auditwatch.cli import context
    from storage.timescale import db

    pool = db.open_pool(db_url, min_size=1, max_size=2)
    try:
        rng = random.Random(4)
        now = datetime.now(UTC)
        _write(pool, *[event(now - timedelta(minutes=i), rng=rng, user_id=SUBJECT, event_type="file_download",
                             metadata={}) for i in range(2)])
    finally:
        pool.close()
    out = tmp_path / "dsar"
    result = run("gdpr", "access", SUBJECT, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "2 event(s) of p-17" in result.output and "file_download: 2" in result.output
    assert {p.name for p in out.iterdir()} == {"export.json", "cover.html", "cover.pdf", "SHA256SUMS"}

    monkeypatch.setattr(context, "whoami", lambda: "alice")
    made = run("gdpr", "request", SUBJECT, "--basis", "Art. 17(1)(a)")
    assert made.exit_code == 0, made.output
    rid = made.output.split()[0]
    refused = run("gdpr", "approve", rid)
    assert refused.exit_code == 2 and "cli:alice requested erasure" in refused.output
    monkeypatch.setattr(context, "whoami", lambda: "bob")
    assert run("gdpr", "approve", rid).exit_code == 0
    done = run("gdpr", "execute", rid, "--out", str(tmp_path / "cert"))
    assert done.exit_code == 0, done.output
    assert "erased 2 event(s)" in done.output and "audit_trail" in done.output
    pub = Path(run.env["AUDITWATCH_DATA_DIR"]) / "integrity" / "signing.key.pub"
    cert = tmp_path / "cert" / "certificate.json"
    good = run("gdpr", "verify-certificate", str(cert), "--public-key", str(pub))
    assert good.exit_code == 0 and good.output.startswith("VALID: erasure of p-17"), good.output
    signed = json.loads(cert.read_text())
    signed["certificate"]["erased"]["count"] = 1
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(signed))
    bad = run("gdpr", "verify-certificate", str(forged), "--public-key", str(pub))
    assert bad.exit_code == 1 and "INVALID" in bad.output
    listed = run("gdpr", "list", "--subject", SUBJECT)
    assert "executed" in listed.output and "by cli:alice" in listed.output and "by cli:bob" in listed.output
    again = run("gdpr", "certificate", rid, "--out", str(tmp_path / "again"))
    assert again.exit_code == 0
    assert json.loads((tmp_path / "again" / "certificate.json").read_text()) == json.loads(cert.read_text())


def test_an_interrupted_erasure_resumes_and_its_certificate_lists_every_erased_event(pool, world, settings,
                                                                                      monkeypatch):
    from storage.timescale import erasure
    from storage.timescale.archive import ArchiveBusy

    ids, store = world
    req = gdpr.request(pool, SUBJECT, "Art. 17(1)(d)", auditor("apikey:dpo-a"))
    gdpr.approve(pool, req.request_id, auditor("apikey:dpo-b"))
    real, calls = erasure.erase_event, []

    def flaky(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise ArchiveBusy("another archive or retention run is in progress; try again when it ends")
        return real(*args, **kwargs)

    monkeypatch.setattr(erasure, "erase_event", flaky)
    with pytest.raises(ArchiveBusy):
        privacy.execute(pool, store, settings, req.request_id, auditor("apikey:dpo-b"), clock=lambda: NOW)
    assert gdpr.get(pool, req.request_id).state == "executing"
    assert len(gdpr.erasure_records(pool, req.request_id)) == 2
    monkeypatch.setattr(erasure, "erase_event", real)
    done = privacy.execute(pool, store, settings, req.request_id, auditor("apikey:dpo-b"), clock=lambda: NOW)
    erased = {e["event_id"] for e in done.signed["certificate"]["erased"]["events"]}
    assert erased == {str(ids[k]) for k in ("cold_user", "cold_meta", "hot_user", "hot_resource", "hot_nested",
                                            "hot_retained")}  # no retention obligation configured here
    assert [s.step for s in done.request.steps] == ["requested", "approved", "executing", "executed"]
    with pool.connection() as conn:
        started = conn.execute("SELECT metadata->>'resumed' FROM audit_events WHERE event_type = "
                               "'gdpr_erasure_started' ORDER BY timestamp").fetchall()
    assert started == [("false",), ("true",)]


def test_the_workflow_and_the_vault_need_no_owner_rights(as_app_role):  # noqa: F811 (the imported fixture)
    """As the least-privilege app role: steps and vault rows are inserted, never changed; the erasure runs."""
    from ingest.phi import PhiKey
    from storage.auth import Role
    from storage.timescale import catalog, phi_vault

    client, services = as_app_role
    headers = []
    for name in ("dpo-a", "dpo-b"):
        _, secret = catalog.create_key(services.pool, name, Role.ADMIN, "tests")
        headers.append({"Authorization": f"Bearer {secret}"})
    _write(services.pool, event(datetime.now(UTC), rng=random.Random(9), user_id=SUBJECT, event_type="user_login",
                                metadata={}))
    rid = client.post("/api/v1/gdpr/erasures", json={"subject": SUBJECT, "lawful_basis": "Art. 17"},
                      headers=headers[0]).get_json()["request_id"]
    assert client.post(f"/api/v1/gdpr/erasures/{rid}/approve", headers=headers[1]).status_code == 200
    done = client.post(f"/api/v1/gdpr/erasures/{rid}/execute", headers=headers[1])
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["certificate"]["certificate"]["erased"]["count"] == 1

    key = PhiKey(bytes(32))
    token = key.token(b'"x"')
    phi_vault.store(services.pool, [(token, key.seal(token, b'"x"'))])
    assert phi_vault.count(services.pool) == 1
    with services.pool.connection() as conn:
        for statement in ("UPDATE gdpr_erasure_steps SET actor = 'mallory'", "DELETE FROM phi_vault"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
