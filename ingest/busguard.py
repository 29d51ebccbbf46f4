"""The bus writer's own checks: a message is re-validated as if it had just arrived.

Anyone who can publish to the work-queue subject could otherwise write any row: a reserved type, a
platform principal, an unredacted secret, a chosen ``received_at``. So the writer re-runs the
ingest checks on each message (field validation, R3 and the reserved types, R9 redaction), insists on
the sender that the publishing node recorded, and stamps ``received_at`` with the time JetStream
stored the message (set by the server, never by the publisher).

The sender itself cannot be proven from a message; restrict who may publish to the subject with NATS
accounts or credentials, so that only API and syslog nodes can.

A message a node signed (``ingest.bussign``) had its field checks and R9 run on that node, and they are not run
again (``check_signed``). What guards the platform's own records is run on every message, signed or not: R3 and
the reserved types, the platform's principals and source, the sender record, and no time in the future. So a
stolen signing key can store an unredacted or oddly formatted value, but never an event that passes for the
platform's own (an erasure, an API key's creation, an operator's action), which ``verify`` relies on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from ingest.catalogue import EventTypes
from ingest.errors import EventRejected
from ingest.fastpath import BatchValidator
from ingest.redact import Redactor
from ingest.validate import _OUTCOMES, INGEST_KEY, LIMITS, ValidationPolicy
from storage.events import EventRecord
from storage.platform import is_platform_principal, is_platform_source

_CLIENT_FIELDS = ("event_id", "timestamp", "event_type", "user_id", "outcome", "source", "source_ip", "user_agent",
                  "resource_id")
# Redaction may lengthen what a node validated ("token=x" becomes "token=[REDACTED]"): allow for it.
BUS_POLICY = ValidationPolicy(max_metadata_bytes=64 * 1024, text_limit_scale=2)


@dataclass(slots=True)
class MessageChecks:
    """The checks of one message's events: its ``received_at`` (when JetStream stored it, in UTC), the validator
    its events share, and the event types already found ingestible in it."""

    received_at: datetime
    validate: BatchValidator
    types: set[str]
    latest: datetime  # R2: no event time past this (the future stays closed)


class BusGuard:
    """Re-validates decoded bus records before the writer stores them."""

    def __init__(self, pool: ConnectionPool, *, redactor: Redactor | None = None,
                 policy: ValidationPolicy = BUS_POLICY, catalog_ttl: float = 10.0) -> None:
        self._types = EventTypes(pool, catalog_ttl)
        self._redactor = redactor or Redactor()
        self._policy = policy

    def message_checks(self, stored_at: datetime) -> MessageChecks:
        """What the events of one message share (their ``received_at``, what repeats across them decided once):
        pass it to ``check_encoded`` for each."""
        at = stored_at.astimezone(UTC)
        return MessageChecks(at, BatchValidator(now=at, policy=self._policy, backfill=True), set(),
                             at + self._policy.clock_skew)

    def check_signed(self, obj: dict[str, Any], stored_at: datetime, checks: MessageChecks) -> EventRecord:
        """The record to store from one encoded in a message whose node's signature verified: as the node built
        it, with ``received_at`` from ``checks``. The field checks and R9 ran on the node and are not repeated;
        R3 and the reserved types, the platform's principals and source, the sender record and R2's future
        are. Anything these do not pass at a glance (or a value of the wrong kind) goes through
        ``check_encoded``, which refuses it with the same error as any unsigned message."""
        get = obj.get
        event_type, user_id, source, metadata = get("event_type"), get("user_id"), get("source"), get("metadata")
        stamp = metadata.get(INGEST_KEY) if type(metadata) is dict else None
        if (type(event_type) is not str or type(user_id) is not str or is_platform_principal(user_id)
                or (source is not None and (type(source) is not str or is_platform_source(source)))
                or type(stamp) is not dict or len(stamp) != 1 or type(stamp.get("sender")) is not str):
            return self.check_encoded(obj, stored_at, checks)
        try:
            timestamp = datetime.fromisoformat(obj["timestamp"])
            late = timestamp > checks.latest
            record = EventRecord(  # positional, in EventRecord's field order: keywords cost ~0.8 µs
                uuid.UUID(obj["event_id"]), timestamp, event_type, user_id, checks.received_at,
                _OUTCOMES[get("outcome") or "unknown"], source, get("source_ip"), get("source_country"),
                get("source_asn"), get("user_agent"), get("resource_id"), metadata)
        except (KeyError, TypeError, ValueError):  # a naive time, a bad id or outcome: the full checks say why
            return self.check_encoded(obj, stored_at, checks)
        if late:
            return self.check_encoded(obj, stored_at, checks)
        if event_type not in checks.types:  # R3 and the reserved types, once per type and message
            self._types.check(event_type)
            checks.types.add(event_type)
        return record

    def check_encoded(self, obj: dict[str, Any], stored_at: datetime,
                      checks: MessageChecks | None = None) -> EventRecord:
        """The record to store from one as it was encoded (``ingest.bus.parse``), or EventRejected (a ValueError)
        saying why it is refused. Validated from its JSON form at once, as ingest validates a client's, without
        building a record only to write it back out first (about a third of the writer's CPU per event).
        ``checks``: ``message_checks(stored_at)``, shared by the events of one message (its time is then the one
        ``received_at`` is stamped with)."""
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise EventRejected("wrong_type", "`metadata` must be a JSON object", "metadata")
        metadata = dict(metadata)
        stamp = metadata.pop(INGEST_KEY, None)
        sender = stamp.get("sender") if isinstance(stamp, dict) and len(stamp) == 1 else None
        if not isinstance(sender, str) or not sender or len(sender) > LIMITS["user_id"]:
            raise EventRejected("missing_sender", f"a bus message must carry `metadata.{INGEST_KEY}.sender`, the "
                                "principal that sent it to the publishing node", "metadata")
        if checks is None:
            checks = self.message_checks(stored_at)
        client = {name: value for name in _CLIENT_FIELDS if (value := obj.get(name)) is not None}
        client["metadata"] = metadata
        # History is allowed (a node accepts backfill from system keys); the future is not.
        event = checks.validate(client)
        if event.event_type not in checks.types:  # R3 and the reserved types, once per type and message
            self._types.check(event.event_type)
            checks.types.add(event.event_type)
        country, asn = obj.get("source_country"), obj.get("source_asn")
        for name, value in (("source_country", country), ("source_asn", asn)):
            if value is not None and (type(value) is not str or len(value) > 256):
                raise EventRejected("wrong_type", f"`{name}` must be a short string", name)
        redact_text = self._redactor.redact_text
        # Positional, in EventRecord's field order (as ``IngestPipeline._records``): keywords cost ~0.8 µs.
        return EventRecord(
            event.event_id, event.timestamp, event.event_type, event.user_id, checks.received_at, event.outcome,
            redact_text(event.source), event.source_ip, country, asn, redact_text(event.user_agent),
            redact_text(event.resource_id), {**self._redactor.redact_object(event.metadata), INGEST_KEY: {"sender": sender}},
        )
