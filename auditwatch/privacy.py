"""Wiring for data subjects and PHI, shared by the API and the CLI: keys from settings, the erasure run that
ends in a signed certificate, the audited access export and the audited PHI reveal."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from psycopg_pool import ConnectionPool

from auditwatch import integrity
from auditwatch.settings import Settings
from ingest.phi import PhiKey, PhiRule, PhiTags, is_token
from reports.library import gdpr_access, gdpr_certificate
from storage import subjects
from storage.cold.store import ColdStore
from storage.errors import SigningKeyError
from storage.events import EventRecord
from storage.timescale import gdpr, phi_vault, self_audit
from storage.timescale.self_audit import Auditor


def phi_key_path(settings: Settings) -> Path:
    if settings.phi_key_file:
        return Path(settings.phi_key_file).expanduser()
    return settings.resolved_data_dir() / "phi" / "phi.key"


def phi_key(settings: Settings) -> PhiKey:
    """The configured PHI key, or the project-local one (created 0600 on first use)."""
    if settings.phi_key:
        return PhiKey.from_base64(settings.phi_key)
    return PhiKey.load_or_create(phi_key_path(settings))


def phi_rule(settings: Settings, pool: ConnectionPool) -> PhiRule | None:
    """R11 as configured, or None when no PHI tag is set (the ingest path then does nothing more)."""
    tags = PhiTags.of(settings.phi_event_types, settings.phi_resources, settings.phi_metadata_keys)
    if not tags:
        return None
    if settings.phi_mode == "redact":
        return PhiRule(tags, mode="redact")
    return PhiRule(tags, mode="tokenise", key=phi_key(settings), vault=lambda entries: phi_vault.store(pool, entries))


class UnknownToken(LookupError):
    """No vault entry has this token."""


def reveal(pool: ConnectionPool, key: PhiKey, token: str, auditor: Auditor, *, reason: str) -> Any:
    """The value behind ``token``; the ``phi_revealed`` record (found or not) commits with the vault read."""
    if not is_token(token):
        raise UnknownToken(f"{token!r} is not a PHI token (phi_ and 32 letters a-p)")
    sealed = phi_vault.reveal(pool, token, lambda found: auditor("phi_revealed", {"token": token, "reason": reason,
                                                                                  "found": found}, token))
    if sealed is None:
        raise UnknownToken(f"no PHI value is stored under {token}")
    return orjson.loads(key.open(token, sealed))


def trusted_keys(settings: Settings) -> frozenset[bytes]:
    """The public keys checkpoints are checked with (never the private key: an API process may not hold it);
    none known means the proof says the period is not covered by a checkpoint yet."""
    try:
        return integrity.verification_keys(settings)
    except SigningKeyError:
        return frozenset()


def access_export(pool: ConnectionPool, store: ColdStore | None, settings: Settings, subject: str, auditor: Auditor,
                  *, requested_by: str, now: datetime, start: datetime | None = None, end: datetime | None = None
                  ) -> gdpr_access.AccessExport:
    """Build the export and store its ``gdpr_access_exported`` record before anything is handed out."""
    export = gdpr_access.build(pool, store, subject, requested_by=requested_by, now=now,
                               trusted_keys=trusted_keys(settings), start=start, end=end)
    record = auditor("gdpr_access_exported", {
        "subject": subject, "export_id": export.document["export_id"], "events": export.counts["events"],
        "by_event_type": [[k, v] for k, v in export.counts["by_event_type"].items()],
        "from": export.document["period"]["from"], "to": export.document["period"]["to"]}, subject)
    with pool.connection() as conn, conn.transaction():
        self_audit.store(conn, record)  # stored before anything is handed out
    return export


@dataclass(frozen=True)
class Execution:
    request: gdpr.ErasureRequest
    signed: dict[str, Any]
    outcome: subjects.Outcome


def execute(pool: ConnectionPool, store: ColdStore | None, settings: Settings, request_id: uuid.UUID,
            auditor: Auditor, *, clock: Callable[[], datetime]) -> Execution:
    """Run an approved request: erase across both tiers (legal holds respected), then sign the certificate and
    store it as the 'executed' step with its record. Interrupted runs resume where they stopped."""
    req = gdpr.start(pool, request_id, auditor)

    def record(erased: list[EventRecord]) -> EventRecord:
        return auditor("event_erased", {
            "reason": f"GDPR erasure request {request_id}: {req.lawful_basis}", **subjects.request_marker(request_id),
            "erased": [{"timestamp": e.timestamp.isoformat(), "event_type": e.event_type} for e in erased]},
            str(erased[0].event_id))

    outcome = subjects.erase(pool, store, req, record, retain_types=settings.gdpr_retain_event_types)
    executed_at = clock()
    probe = auditor("gdpr_erasure_executed", {}, req.subject)
    certificate = gdpr_certificate.build(req, gdpr.erasure_records(pool, request_id), outcome.kept,
                                         executed_by=probe.user_id, executed_at=executed_at)
    signed = gdpr_certificate.sign(certificate, integrity.signing_key(settings))
    done = auditor("gdpr_erasure_executed", {
        "request_id": str(request_id), "subject": req.subject, "erased": certificate["erased"]["count"],
        "kept": certificate["kept"]["count"], "kept_by_reason": list(certificate["kept"]["by_reason"].items()),
        "signature": signed["signature"]["signature"]}, req.subject)
    return Execution(gdpr.finish(pool, request_id, signed, done), signed, outcome)
