"""The integrity proof a report carries: ``verify`` over the period and the signed checkpoint covering its end."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from storage.cold.store import ColdStore
from storage.integrity import checkpoints
from storage.timescale import sealing, verify


@dataclass(frozen=True)
class Proof:
    """What ``auditwatch verify --since FROM --until TO`` found, and the checkpoint an auditor can check offline."""

    start: datetime
    end: datetime
    ok: bool
    chain_length: int
    batches: int
    events: int
    erased: int
    expired_batches: int
    checkpoints: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None  # the signed checkpoint covering the period's end, as exported

    @property
    def covered(self) -> bool:
        return self.checkpoint is not None

    @property
    def verdict(self) -> str:
        if not self.ok:
            return f"TAMPERING DETECTED: {len(self.problems)} problem(s)"
        if not self.covered:
            return "INTACT, but no signed checkpoint covers the period's end yet"
        return "INTACT: chain verified and the period's end is covered by a signed checkpoint"

    def to_json(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "ok": self.ok, "verdict": self.verdict, "chain_length": self.chain_length, "batches": self.batches,
                "events": self.events, "erased": self.erased, "expired_batches": self.expired_batches,
                "checkpoints": self.checkpoints, "problems": self.problems, "notes": self.notes,
                "checkpoint": self.checkpoint}


def covering(found: Iterable[checkpoints.Checkpoint], end: datetime,
             trusted: frozenset[bytes]) -> checkpoints.Checkpoint | None:
    """The first validly signed checkpoint made at or after ``end``: it seals everything stored by then."""
    for cp in sorted(found, key=lambda c: c.chain_pos):
        if cp.created_at >= end and checkpoints.check(cp, trusted) is None:
            return cp
    return None


def _exported(cp: checkpoints.Checkpoint) -> dict[str, Any]:
    return {"chain_pos": cp.chain_pos, "events": cp.events, "created_at": cp.created_at.isoformat(),
            "chain_hash": cp.chain_hash.hex(), "public_key": base64.b64encode(cp.public_key).decode(),
            "payload": cp.payload, "signature": base64.b64encode(cp.signature).decode()}


def prove(pool: ConnectionPool, start: datetime, end: datetime, *, trusted_keys: Iterable[bytes],
          archive: ColdStore | None, now: datetime) -> Proof:
    """Verify the chain (the period's batches recomputed, hot and cold) and find the covering checkpoint."""
    trusted = frozenset(trusted_keys)
    cold = verify.cold_reader(pool, archive) if archive is not None else None
    result = verify.verify(pool, trusted_keys=trusted, since=start, until=end, cold=cold, now=now)
    cp = covering(sealing.list_checkpoints(pool), end, trusted)
    problems = [f"[{p.kind}] {p.message}" for p in result.problems]
    return Proof(start=start, end=end, ok=result.ok, chain_length=result.chain_length, batches=result.batches, events=result.events,
                 erased=result.erased, expired_batches=result.expired_batches, checkpoints=result.checkpoints,
                 problems=problems, notes=list(result.notes), checkpoint=_exported(cp) if cp else None)
