"""The audit event as stored: one immutable record per event."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


# Column order of audit_events as written by the writer and read by queries.
COLUMNS: tuple[str, ...] = (
    "event_id",
    "timestamp",
    "event_type",
    "user_id",
    "outcome",
    "source",
    "source_ip",
    "source_country",
    "source_asn",
    "user_agent",
    "resource_id",
    "metadata",
    "received_at",
)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An audit event after validation, redaction and enrichment."""

    event_id: uuid.UUID
    timestamp: datetime
    event_type: str
    user_id: str
    received_at: datetime
    outcome: Outcome = Outcome.UNKNOWN
    source: str | None = None
    source_ip: str | None = None
    source_country: str | None = None
    source_asn: str | None = None
    user_agent: str | None = None
    resource_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[uuid.UUID, datetime]:
        """The identity that R5 deduplicates on."""
        return (self.event_id, self.timestamp)

    def to_json(self) -> dict[str, Any]:
        """The API representation (the same field names clients send)."""
        return {
            "event_id": str(self.event_id),
            "timestamp": self.timestamp.isoformat(),
            "event_type": self.event_type,
            "user_id": self.user_id,
            "outcome": str(self.outcome),
            "source": self.source,
            "source_ip": self.source_ip,
            "source_country": self.source_country,
            "source_asn": self.source_asn,
            "user_agent": self.user_agent,
            "resource_id": self.resource_id,
            "metadata": self.metadata,
            "received_at": self.received_at.isoformat(),
        }
