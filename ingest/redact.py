"""The pipeline's redact stage: R9's rules, which live in ``storage.redaction``, then R11 (PHI tags, ``ingest.phi``).

They live in storage because the platform's own audit records (``storage.timescale.self_audit``) are
redacted by the same rules, and storage never imports ingest.
"""

from __future__ import annotations

from ingest.phi import PHI_REDACTED, PhiRule, PhiTags
from storage.redaction import DEFAULT_SENSITIVE_KEYS, REDACTED, REDACTED_CARD, Redactor, luhn_ok

__all__ = ["DEFAULT_SENSITIVE_KEYS", "PHI_REDACTED", "REDACTED", "REDACTED_CARD", "PhiRule", "PhiTags", "Redactor",
           "luhn_ok"]
