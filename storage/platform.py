"""The names the platform writes its own records under, which no ingested event may claim.

The platform's audit records (``storage.timescale.self_audit``) carry ``source`` ``auditwatch`` (or
``auditwatch-<part>``, e.g. ``auditwatch-cli``) and a principal as ``user_id``: an API key's
``apikey:<name>`` (``storage.auth.ApiKey.principal``) or an operator's ``cli:<login>``. An ingested
event that claimed one of them could pass for the platform's own record; ingest refuses it.
The event types only the platform writes are flagged ``reserved`` in the ``event_types`` catalogue.
(The retention worker audits as the bare ``worker``, but only ``events_expired``, a reserved type: the
bare name stays open, as a Unix account of that name must not lose its sshd lines.)
"""

from __future__ import annotations

PLATFORM_SOURCE = "auditwatch"
PRINCIPAL_PREFIXES: tuple[str, ...] = ("apikey:", "cli:")


def is_platform_source(source: str | None) -> bool:
    """True for ``auditwatch`` and ``auditwatch-*``, in any case and with surrounding blanks."""
    if source is None:
        return False
    norm = source.strip().lower()
    return norm == PLATFORM_SOURCE or norm.startswith(PLATFORM_SOURCE + "-")


def is_platform_principal(user_id: str) -> bool:
    """True for a user_id the platform audits its own actors under (keys, operators)."""
    return user_id.strip().lower().startswith(PRINCIPAL_PREFIXES)
