"""A data subject's events across both tiers, and the erasure of them (GDPR Art. 15 and 17).

An event is about or by a person when its ``user_id`` or ``resource_id`` is the subject's id, or when its
metadata holds that id as a whole value anywhere in the tree (``{"patient": "p-17"}``): the ways an event
names a person in this schema. A longer text that merely contains the id does not count, so a short id
(``al``) does not sweep in unrelated events.

Erasure goes event by event through ``storage.timescale.erasure`` (each event with its own sealed
``event_erased`` record, hot and archived, legal holds respected). What is kept says why: a legal hold, the
platform's own audit records (the audit trail is a legal obligation), or a retention obligation on the type.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
from psycopg_pool import ConnectionPool

from storage import tiers
from storage.cold.store import ColdStore
from storage.errors import ErasureHeld
from storage.events import EventRecord
from storage.timescale import archive, erasure, gdpr


@dataclass(frozen=True)
class Found:
    event: EventRecord
    tier: str  # "hot" or "cold"
    matched: tuple[str, ...]  # user_id, resource_id, metadata: how the event names the subject


def _mentions(value: Any, subject: str) -> bool:
    if isinstance(value, dict):
        return any(_mentions(v, subject) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, subject) for v in value)
    return isinstance(value, str) and value == subject


def _how(event: EventRecord, subject: str) -> tuple[str, ...]:
    return tuple(name for name, hit in (("user_id", event.user_id == subject),
                                        ("resource_id", event.resource_id == subject),
                                        ("metadata", _mentions(event.metadata, subject))) if hit)


def _cold(pool: ConnectionPool, store: ColdStore, subject: str, start: datetime | None,
          end: datetime | None) -> list[EventRecord]:
    needle = orjson.dumps(subject).decode()  # the id as a JSON string: what a mention's text must contain
    where = ((pl.col("user_id") == subject) | (pl.col("resource_id") == subject)
             | pl.col("metadata").str.contains(needle, literal=True))
    if start is not None:
        where &= pl.col("timestamp") >= start.astimezone(UTC)
    if end is not None:
        where &= pl.col("timestamp") < end.astimezone(UTC)
    found = []
    for f in archive.list_files(pool, states=("complete",), start=start, end=end):
        for row in store.scan([f.path]).filter(where).collect().iter_rows(named=True):
            event = tiers.record_of(row)
            if _how(event, subject):  # the substring test is only a prefilter for metadata
                found.append(event)
    return found


def find(pool: ConnectionPool, store: ColdStore | None, subject: str, *, start: datetime | None = None,
         end: datetime | None = None) -> list[Found]:
    """Every stored event about or by ``subject`` in [start, end), both tiers, oldest first."""
    hot = [Found(e, tiers.HOT, _how(e, subject)) for e in gdpr.subject_events(pool, subject, start=start, end=end)]
    cold = [Found(e, tiers.COLD, _how(e, subject)) for e in _cold(pool, store, subject, start, end)] \
        if store is not None else []
    seen = {f.event.event_id for f in hot}
    merged = hot + [f for f in cold if f.event.event_id not in seen]
    return sorted(merged, key=lambda f: (f.event.timestamp, str(f.event.event_id)))


# -- erasure ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kept:
    event: EventRecord
    tier: str
    reason: str  # legal_hold | audit_trail | retention_obligation
    detail: str


@dataclass
class Outcome:
    erased: list[Found] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)


# (erased events of one event id) -> its event_erased record, not yet stored
RecordBuilder = Callable[[list[EventRecord]], EventRecord]


def erase(pool: ConnectionPool, store: ColdStore | None, req: gdpr.ErasureRequest, record: RecordBuilder, *,
          retain_types: Iterable[str] = ()) -> Outcome:
    """Erase the request's subject's events, each with its own ``event_erased`` record (built by ``record``,
    whose metadata must carry ``gdpr_request``); returns what was erased now and what was kept, and why.

    Raises ArchiveBusy when an archive or retention run holds the cold tier: run it again afterwards (the
    events already erased stay erased, and the certificate lists them from their records).
    """
    found = find(pool, store, req.subject)
    platform = gdpr.reserved_types(pool, sorted({f.event.event_type for f in found}))
    retained = set(retain_types)
    out = Outcome()
    for f in found:
        kind = f.event.event_type
        if kind in platform:
            out.kept.append(Kept(f.event, f.tier, "audit_trail", f"{kind} is the platform's own audit record of an "
                                 "action; the audit trail is kept as a legal obligation (GDPR Art. 17(3)(b))"))
            continue
        if kind in retained:
            out.kept.append(Kept(f.event, f.tier, "retention_obligation", f"events of type {kind} are kept for "
                                 "their retention period (setting gdpr_retain_event_types), GDPR Art. 17(3)(b)"))
            continue
        try:
            done = erasure.erase_event(pool, f.event.event_id, record, store=store)
        except ErasureHeld as exc:
            out.kept.append(Kept(f.event, f.tier, "legal_hold", str(exc)))
            continue
        if done:
            out.erased.append(f)
    return out


def request_marker(request_id: uuid.UUID) -> dict[str, str]:
    """The metadata every ``event_erased`` record of a request carries, by which the certificate finds them."""
    return {"gdpr_request": str(request_id)}
