"""The one self-audit builder: every record of the platform's own actions is redacted like an ingested event."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest import redact as ingest_redact
from storage.events import Outcome
from storage.redaction import REDACTED, REDACTED_CARD, Redactor
from storage.timescale import self_audit

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
CARD = "4111 1111 1111 1111"


def test_a_record_is_stamped_attributed_and_redacted_by_default():
    record = self_audit.record("legal_hold", "cli:counsel", now=NOW, resource_id="7", source="auditwatch-cli",
                               metadata={"reason": f"card {CARD} in the complaint", "api_key": "k-1", "case_id": "LIT-7"})
    assert (record.timestamp, record.received_at, record.user_id) == (NOW, NOW, "cli:counsel")
    assert (record.event_type, record.resource_id, record.source, record.outcome) == (
        "legal_hold", "7", "auditwatch-cli", Outcome.SUCCESS)
    assert record.metadata == {"reason": f"card {REDACTED_CARD} in the complaint", "api_key": REDACTED,
                               "case_id": "LIT-7"}


def test_configured_keys_apply_and_no_metadata_is_an_empty_dict():
    redact = Redactor(("ticket",)).redact
    record = self_audit.record("config_change", "apikey:ops", now=NOW, metadata={"ticket_ref": "T-1"}, redact=redact,
                               source_ip="10.0.0.1", user_agent="curl/8")
    assert record.metadata == {"ticket_ref": REDACTED}
    assert (record.source, record.source_ip, record.user_agent) == ("auditwatch", "10.0.0.1", "curl/8")
    assert self_audit.record("query_executed", "apikey:ops", now=NOW).metadata == {}


def test_storage_jobs_auditors_build_through_the_same_redaction():
    audit = self_audit.auditor("worker", lambda: NOW)
    record = audit("events_expired", {"note": CARD, "rows_removed": 3}, "2024/05/01.parquet")
    assert record.metadata == {"note": REDACTED_CARD, "rows_removed": 3}
    assert (record.user_id, record.timestamp, record.resource_id) == ("worker", NOW, "2024/05/01.parquet")
    assert audit("events_expired", {}, None).event_id != record.event_id


def test_ingest_redacts_with_the_same_rules():
    assert ingest_redact.Redactor is Redactor
