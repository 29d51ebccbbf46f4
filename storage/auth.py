"""API keys, roles and the permission matrix shared by every HTTP surface."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

KEY_PREFIX = "aw"


class Permission(enum.StrEnum):
    INGEST = "ingest"
    BACKFILL = "backfill"
    VIEW = "view"
    EXPORT = "export"
    DELETE = "delete"
    CONFIGURE_RETENTION = "configure_retention"
    MANAGE_KEYS = "manage_keys"
    MANAGE_CATALOG = "manage_catalog"
    LEGAL_HOLD = "legal_hold"  # place, list and release legal holds (auditors and admins)
    TRIAGE_ANOMALIES = "triage_anomalies"  # mark anomalies false/true positives (feedback honoured by scoring)
    MANAGE_INGEST = "manage_ingest"  # dead letters of the bus: list and replay
    RESPOND_TO_ALERTS = "respond_to_alerts"  # acknowledge alerts, create and end silences
    MANAGE_ALERT_RULES = "manage_alert_rules"
    DATA_SUBJECTS = "data_subjects"  # GDPR access exports and the erasure workflow (admins)
    PHI_REVEAL = "phi_reveal"  # reveal a tokenised PHI value (admins; every reveal audited)


class Role(enum.StrEnum):
    VIEWER = "viewer"
    AUDITOR = "auditor"
    ADMIN = "admin"
    SYSTEM = "system"


# The seed's RBAC matrix: view / export / delete / configure retention / manage keys,
# plus ingest for the machines that send events and catalogue management for admins.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.AUDITOR: frozenset({Permission.VIEW, Permission.EXPORT, Permission.LEGAL_HOLD, Permission.TRIAGE_ANOMALIES}),
    Role.ADMIN: frozenset(
        {
            Permission.VIEW,
            Permission.EXPORT,
            Permission.DELETE,
            Permission.CONFIGURE_RETENTION,
            Permission.MANAGE_KEYS,
            Permission.MANAGE_CATALOG,
            Permission.INGEST,
            Permission.LEGAL_HOLD,
            Permission.TRIAGE_ANOMALIES,
            Permission.MANAGE_INGEST,
            Permission.RESPOND_TO_ALERTS,
            Permission.MANAGE_ALERT_RULES,
            Permission.DATA_SUBJECTS,
            Permission.PHI_REVEAL,
        }
    ),
    Role.SYSTEM: frozenset({Permission.INGEST, Permission.BACKFILL}),
}


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: uuid.UUID
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def principal(self) -> str:
        """The user_id under which this key's own actions are audited."""
        return f"apikey:{self.name}"

    def can(self, permission: Permission) -> bool:
        return self.revoked_at is None and permission in ROLE_PERMISSIONS[self.role]


def new_secret(key_id: uuid.UUID) -> tuple[str, str]:
    """A fresh key string for clients and the hash we keep of its secret part."""
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}_{key_id.hex}_{secret}", hash_secret(secret)


def hash_secret(secret: str) -> str:
    # The secret is 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[uuid.UUID, str] | None:
    """The key id and secret of a well-formed key string, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 32:
        return None
    try:
        return uuid.UUID(hex=parts[1]), parts[2]
    except ValueError:
        return None


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
