"""Who is calling: the request's key, address and agent, as every API action is audited with them."""

from __future__ import annotations

from typing import Any

from flask import request

from auditwatch.services import Services
from ingest.http import current_key
from ingest.pipeline import remote_ip
from storage.timescale.self_audit import Auditor


def origin() -> dict[str, str | None]:
    """The caller's address and user agent, as recorded on its audit events."""
    return {"source_ip": remote_ip(request.remote_addr), "user_agent": request.user_agent.string or None}


def audit(services: Services, event_type: str, **fields: Any) -> None:
    """Record the calling key's action (reads, exports, key and config changes)."""
    services.audit(event_type, current_key().principal, **origin(), **fields)


def auditor(services: Services) -> Auditor:
    """The builder of the calling key's audit records, for storage functions that store the record in the
    same transaction as the change it records (keys, users, event types, settings, holds, silences)."""
    principal = current_key().principal
    where = origin()

    def build(event_type: str, metadata: dict[str, Any], resource_id: str | None):
        return services.audit_record(event_type, principal, metadata=metadata, resource_id=resource_id, **where)

    return build
