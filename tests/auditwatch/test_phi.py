"""R11 end to end: PHI-tagged fields stored as tokens, their values only in the vault, revealed only by an admin,
every reveal audited; R9 keeps working beside it."""

from __future__ import annotations

import base64
import os

import pytest

from auditwatch.settings import SettingsError
from storage.timescale import phi_vault
from tests.auditwatch.conftest import event

PHI = {"phi_metadata_keys": ("diagnosis", "mrn"), "phi_resources": ("patients/*",),
       "phi_key": base64.b64encode(os.urandom(32)).decode()}


def test_tagged_fields_are_tokenised_before_storage_and_revealed_only_by_admins(app_with, make_key, users, services):
    app = app_with(**PHI)
    client = app.test_client()
    users("dr-who")
    system, admin, auditor = make_key("system"), make_key("admin", "privacy-officer"), make_key("auditor")
    sent = [event("dr-who", event_type="file_download", resource_id="patients/p-17",
                  metadata={"diagnosis": "J45.909", "mrn": 4471, "password": "hunter2", "ward": "3B"}),
            event("dr-who", event_type="file_download", resource_id="patients/p-17",
                  metadata={"diagnosis": "J45.909"})]
    assert client.post("/api/v1/logs/batch", json=sent, headers=system).get_json()["accepted"] == 2

    stored = [client.get(f"/api/v1/logs/{e['event_id']}", headers=admin).get_json() for e in sent]
    first, second = stored
    assert first["metadata"]["diagnosis"].startswith("phi_") and first["metadata"]["mrn"].startswith("phi_")
    assert first["metadata"]["diagnosis"] == second["metadata"]["diagnosis"]  # joins still work
    assert first["resource_id"] == second["resource_id"] and first["resource_id"].startswith("phi_")
    assert first["metadata"]["password"] == "[REDACTED]" and first["metadata"]["ward"] == "3B"  # R9 unchanged
    with services.pool.connection() as conn:
        clear = conn.execute("SELECT count(*) FROM audit_events WHERE metadata::text LIKE '%J45.909%' "
                             "OR resource_id = 'patients/p-17'").fetchone()[0]
    assert clear == 0
    assert phi_vault.count(services.pool) == 3  # the diagnosis, the MRN and the resource, once each

    token = first["metadata"]["diagnosis"]
    body = {"token": token, "reason": "treating physician asked, ticket PHI-7"}
    assert client.post("/api/v1/phi/reveal", json=body, headers=auditor).status_code == 403
    revealed = client.post("/api/v1/phi/reveal", json=body, headers=admin)
    assert revealed.status_code == 200 and revealed.get_json() == {"token": token, "value": "J45.909"}
    mrn = client.post("/api/v1/phi/reveal", json={**body, "token": first["metadata"]["mrn"]}, headers=admin)
    assert mrn.get_json()["value"] == 4471
    unknown = client.post("/api/v1/phi/reveal", json={**body, "token": "phi_" + "a" * 32}, headers=admin)
    assert unknown.status_code == 404
    with services.pool.connection() as conn:
        records = conn.execute("SELECT user_id, resource_id, metadata->>'reason', metadata->>'found' FROM "
                               "audit_events WHERE event_type = 'phi_revealed' ORDER BY timestamp").fetchall()
    assert records == [("apikey:privacy-officer", token, body["reason"], "true"),
                       ("apikey:privacy-officer", first["metadata"]["mrn"], body["reason"], "true"),
                       ("apikey:privacy-officer", "phi_" + "a" * 32, body["reason"], "false")]
    assert "J45.909" not in str(records)


def test_redact_mode_stores_no_value_and_keeps_no_vault(app_with, make_key, users, services):
    client = app_with(**{**PHI, "phi_mode": "redact"}).test_client()
    users("dr-who")
    sent = event("dr-who", event_type="file_download", resource_id="patients/p-17", metadata={"diagnosis": "J45"})
    assert client.post("/api/v1/logs", json=sent, headers=make_key("system")).status_code == 201
    got = client.get(f"/api/v1/logs/{sent['event_id']}", headers=make_key("admin")).get_json()
    assert got["metadata"]["diagnosis"] == "[REDACTED:phi]" and got["resource_id"] == "[REDACTED:phi]"
    assert phi_vault.count(services.pool) == 0


def test_phi_mode_must_be_known(settings):
    with pytest.raises(SettingsError, match="phi_mode"):
        settings.replace(phi_mode="hash")


def test_the_cli_reveals_a_token_and_audits_it(run, db_url):
    from ingest.phi import PhiKey
    from storage.timescale import db

    secret = base64.b64encode(os.urandom(32)).decode()
    key = PhiKey.from_base64(secret)
    token = key.token(b'"p-17"')
    pool = db.open_pool(db_url, min_size=1, max_size=2)
    try:
        phi_vault.store(pool, [(token, key.seal(token, b'"p-17"'))])
        run.env["AUDITWATCH_PHI_KEY"] = secret
        shown = run("phi", "reveal", token, "--reason", "subject access request DSAR-3")
        assert shown.exit_code == 0 and shown.output.strip() == '"p-17"'
        wrong = run("phi", "reveal", "p-17", "--reason", "x")
        assert wrong.exit_code == 2 and "is not a PHI token" in wrong.output
        run.env["AUDITWATCH_PHI_KEY"] = base64.b64encode(os.urandom(32)).decode()
        other_key = run("phi", "reveal", token, "--reason", "x")
        assert other_key.exit_code == 2 and "does not open with this PHI key" in other_key.output
        with pool.connection() as conn:
            reasons = [r[0] for r in conn.execute("SELECT metadata->>'reason' FROM audit_events "
                                                  "WHERE event_type = 'phi_revealed' ORDER BY timestamp")]
    finally:
        pool.close()
    assert reasons == ["subject access request DSAR-3", "x"]  # the failed decryption was still audited
