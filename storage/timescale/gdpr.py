"""Data subjects (GDPR Art. 15 and 17): the events about or by a person in the hot tier, and the erasure
requests' append-only steps (migration 0019).

A request moves requested → approved → executing → executed, each step a new row stored with its self-audit
record in one transaction, never an UPDATE. The approver must be another admin than the requester; the
database's UNIQUE (request_id, step) lets only one approval and one execution of a request commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.events import COLUMNS, EventRecord
from storage.timescale import self_audit
from storage.timescale.queries import record_of
from storage.timescale.self_audit import Auditor

STEPS = ("requested", "approved", "executing", "executed")


class ErasureRequestError(ValueError):
    """An erasure request step that cannot be taken as asked; the message says what to do instead."""


class RequestNotFound(ErasureRequestError, LookupError):
    """No erasure request has this id."""


class SameApprover(ErasureRequestError):
    """The four-eyes rule: the requester cannot approve their own request."""


class WrongStep(ErasureRequestError):
    """The request is not in a state that allows this step (approve twice, execute unapproved ...)."""


# -- a subject's events (hot tier) -------------------------------------------------------------------

# A metadata value anywhere in the tree that is exactly the subject (a JSON string equal to it): a mention
# of the person, e.g. {"patient": "p-17"} or {"target": {"user": "p-17"}}. Substrings of longer text are not.
_SUBJECT = sql.SQL(
    "SELECT {cols} FROM audit_events WHERE (user_id = %(s)s OR resource_id = %(s)s "
    "OR jsonb_path_exists(metadata, '$.** ? (@ == $s)', jsonb_build_object('s', %(s)s::text))) "
    "AND (%(lo)s::timestamptz IS NULL OR \"timestamp\" >= %(lo)s) "
    "AND (%(hi)s::timestamptz IS NULL OR \"timestamp\" < %(hi)s) "
    "ORDER BY \"timestamp\", event_id").format(cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS))


def subject_events(pool: ConnectionPool, subject: str, *, start: datetime | None = None,
                   end: datetime | None = None) -> list[EventRecord]:
    """Hot events whose user_id or resource_id is ``subject``, or whose metadata holds it as a value."""
    with pool.connection() as conn:
        rows = conn.execute(_SUBJECT, {"s": subject, "lo": start, "hi": end}).fetchall()
    return [record_of(r) for r in rows]


# -- erasure requests ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    seq: int
    request_id: uuid.UUID
    step: str
    subject: str
    lawful_basis: str
    actor: str
    at: datetime
    note: str | None
    certificate: dict[str, Any] | None


@dataclass(frozen=True)
class ErasureRequest:
    """A request and every step taken on it, oldest first; its state is the newest step."""

    steps: list[Step] = field(default_factory=list)

    @property
    def request_id(self) -> uuid.UUID:
        return self.steps[0].request_id

    @property
    def subject(self) -> str:
        return self.steps[0].subject

    @property
    def lawful_basis(self) -> str:
        return self.steps[0].lawful_basis

    @property
    def requested_by(self) -> str:
        return self.steps[0].actor

    @property
    def state(self) -> str:
        return self.steps[-1].step

    def by(self, step: str) -> Step | None:
        return next((s for s in self.steps if s.step == step), None)

    def to_json(self) -> dict[str, Any]:
        return {"request_id": str(self.request_id), "subject": self.subject, "lawful_basis": self.lawful_basis,
                "state": self.state, "requested_by": self.requested_by,
                "steps": [{"step": s.step, "actor": s.actor, "at": s.at.isoformat(), "note": s.note}
                          for s in self.steps]}


_NAMES = ("seq", "request_id", "step", "subject", "lawful_basis", "actor", "at", "note", "certificate")
_SELECT = sql.SQL("SELECT {} FROM gdpr_erasure_steps").format(sql.SQL(", ").join(map(sql.Identifier, _NAMES)))
_INSERT = ("INSERT INTO gdpr_erasure_steps (request_id, step, subject, lawful_basis, actor, at, note, certificate) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")


def _steps(conn: psycopg.Connection, request_id: uuid.UUID, *, lock: bool = False) -> list[Step]:
    if lock:  # serialise the steps of one request (a transaction-scoped lock on its id)
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 17))", (str(request_id),))
    with conn.cursor(row_factory=class_row(Step)) as cur:
        return cur.execute(_SELECT + sql.SQL(" WHERE request_id = %s ORDER BY seq"), (request_id,)).fetchall()


def get(pool: ConnectionPool, request_id: uuid.UUID) -> ErasureRequest:
    with pool.connection() as conn:
        steps = _steps(conn, request_id)
    if not steps:
        raise RequestNotFound(f"no erasure request {request_id}; `auditwatch gdpr list` shows them")
    return ErasureRequest(steps)


def list_requests(pool: ConnectionPool, *, subject: str | None = None, limit: int = 100) -> list[ErasureRequest]:
    """Requests, newest first, with their steps."""
    with pool.connection() as conn, conn.cursor(row_factory=class_row(Step)) as cur:
        rows = cur.execute(_SELECT + sql.SQL(
            " WHERE request_id IN (SELECT request_id FROM gdpr_erasure_steps WHERE step = 'requested' "
            "AND (%s::text IS NULL OR subject = %s) ORDER BY at DESC LIMIT %s) ORDER BY seq"),
            (subject, subject, limit)).fetchall()
    grouped: dict[uuid.UUID, list[Step]] = {}
    for s in rows:
        grouped.setdefault(s.request_id, []).append(s)
    return sorted((ErasureRequest(v) for v in grouped.values()), key=lambda r: r.steps[0].at, reverse=True)


def _add(conn: psycopg.Connection, first: Step | None, request_id: uuid.UUID, step: str, actor: str, at: datetime,
         note: str | None, record: EventRecord, *, subject: str | None = None, basis: str | None = None,
         certificate: dict[str, Any] | None = None) -> None:
    conn.execute(_INSERT, (request_id, step, subject or (first.subject if first else None),
                           basis or (first.lawful_basis if first else None), actor, at, note,
                           Jsonb(certificate) if certificate is not None else None))
    self_audit.store(conn, record)


def request(pool: ConnectionPool, subject: str, lawful_basis: str, auditor: Auditor, *,
            note: str | None = None) -> ErasureRequest:
    """Record a request to erase ``subject``'s events (who asks is the auditor's principal)."""
    request_id = uuid.uuid4()
    record = auditor("gdpr_erasure_requested", {"request_id": str(request_id), "subject": subject,
                                                "lawful_basis": lawful_basis, "note": note}, subject)
    with pool.connection() as conn, conn.transaction():
        _add(conn, None, request_id, "requested", record.user_id, record.timestamp, note, record, subject=subject,
             basis=lawful_basis)
    return get(pool, request_id)


def approve(pool: ConnectionPool, request_id: uuid.UUID, auditor: Auditor, *, note: str | None = None
            ) -> ErasureRequest:
    """The second pair of eyes: another admin than the requester approves; raises SameApprover otherwise."""
    with pool.connection() as conn, conn.transaction():
        steps = _steps(conn, request_id, lock=True)
        if not steps:
            raise RequestNotFound(f"no erasure request {request_id}; `auditwatch gdpr list` shows them")
        req = ErasureRequest(steps)
        if req.state != "requested":
            raise WrongStep(f"erasure request {request_id} is already {req.state}; only a requested erasure can be "
                            "approved")
        record = auditor("gdpr_erasure_approved", {"request_id": str(request_id), "subject": req.subject,
                                                   "requested_by": req.requested_by, "note": note}, req.subject)
        if record.user_id == req.requested_by:
            raise SameApprover(f"{record.user_id} requested erasure {request_id} and cannot approve it too (four "
                               "eyes): another admin must approve it with their own key or login")
        _add(conn, steps[0], request_id, "approved", record.user_id, record.timestamp, note, record)
    return get(pool, request_id)


def start(pool: ConnectionPool, request_id: uuid.UUID, auditor: Auditor) -> ErasureRequest:
    """Mark an approved request as executing (or resume one that was interrupted), audited."""
    with pool.connection() as conn, conn.transaction():
        steps = _steps(conn, request_id, lock=True)
        if not steps:
            raise RequestNotFound(f"no erasure request {request_id}; `auditwatch gdpr list` shows them")
        req = ErasureRequest(steps)
        if req.state == "requested":
            raise WrongStep(f"erasure request {request_id} is not approved yet: a second admin must approve it "
                            f"(`auditwatch gdpr approve {request_id}`) before it runs")
        if req.state == "executed":
            raise WrongStep(f"erasure request {request_id} was executed already; its certificate is at "
                            f"`auditwatch gdpr certificate {request_id}`")
        resumed = req.state == "executing"
        record = auditor("gdpr_erasure_started", {"request_id": str(request_id), "subject": req.subject,
                                                  "resumed": resumed}, req.subject)
        if resumed:
            self_audit.store(conn, record)
        else:
            _add(conn, steps[0], request_id, "executing", record.user_id, record.timestamp, None, record)
    return get(pool, request_id)


def finish(pool: ConnectionPool, request_id: uuid.UUID, certificate: dict[str, Any], record: EventRecord
           ) -> ErasureRequest:
    """Store the signed certificate as the 'executed' step, with its ``gdpr_erasure_executed`` record."""
    try:
        with pool.connection() as conn, conn.transaction():
            steps = _steps(conn, request_id, lock=True)
            if not steps or ErasureRequest(steps).state != "executing":
                raise WrongStep(f"erasure request {request_id} is not executing; start it first")
            _add(conn, steps[0], request_id, "executed", record.user_id, record.timestamp, None, record,
                 certificate=certificate)
    except pg_errors.UniqueViolation:
        raise WrongStep(f"erasure request {request_id} was executed by another run meanwhile") from None
    return get(pool, request_id)


def erasure_records(pool: ConnectionPool, request_id: uuid.UUID) -> list[EventRecord]:
    """The ``event_erased`` records a request's execution stored (one per erased event), oldest first."""
    query = sql.SQL("SELECT {cols} FROM audit_events WHERE event_type = 'event_erased' AND metadata @> %s "
                    "ORDER BY \"timestamp\", event_id").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS))
    with pool.connection() as conn:
        rows = conn.execute(query, (Jsonb({"gdpr_request": str(request_id)}),)).fetchall()
    return [record_of(r) for r in rows]


def reserved_types(pool: ConnectionPool, names: Sequence[str]) -> set[str]:
    """Which of ``names`` are the platform's own (reserved) event types."""
    with pool.connection() as conn:
        rows = conn.execute("SELECT event_type FROM event_types WHERE reserved AND event_type = ANY(%s)",
                            (list(names),)).fetchall()
    return {r[0] for r in rows}
