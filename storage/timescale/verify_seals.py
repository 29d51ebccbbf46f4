"""Verification of batch seals against the chain's links (migration 0021: seal in the write, link after).

Each writer transaction seals its batch (integrity_seals); a linker copies the seal into the chain
(integrity_batches) and records where (linked_pos). Every link must have its seal, field for field; a seal
that says it was linked must still have its link; and a seal left unlinked beyond a grace period means the
linker never ran for it (or its link was removed together with the record of it). Within the grace period an
unlinked seal is ordinary (a commit the linker has not reached yet): noted, its rows left for a later run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

_SEALS = "SELECT batch_seq, kind, rows, root, lo, hi, sealed_at, linked_pos FROM integrity_seals"

# Writers link right after their commit; only a linker that failed (a crash, a lost connection) leaves a
# seal for the checkpoint job, which runs every few minutes.
LINK_GRACE = timedelta(minutes=15)

Report = Callable[..., None]  # the verifier's problem(kind, message, chain_pos=None, at=None)


@dataclass(frozen=True)
class Seal:
    batch_seq: int
    kind: str
    rows: int
    root: bytes
    lo: datetime
    hi: datetime
    sealed_at: datetime
    linked_pos: int | None

    def fields(self) -> tuple:
        return (self.kind, self.rows, self.root, self.lo, self.hi, self.sealed_at)


def check_seals(conn: psycopg.Connection, links: Iterable[tuple], problem: Report, notes: list[str], *,
                now: datetime, grace: timedelta) -> set[int]:
    """Hold every link ``(chain_pos, batch_seq, kind, rows, root, lo, hi, sealed_at)`` to its seal and every seal
    to its link; returns the batch_seqs sealed and waiting to be linked (their rows are in no batch verify can
    check: the seal is reported, not each row)."""
    seals = {r[0]: Seal(*r[:3], bytes(r[3]), *r[4:]) for r in conn.execute(_SEALS).fetchall()}
    linked: set[int] = set()
    for pos, seq, kind, rows, root, lo, hi, sealed_at in links:
        linked.add(seq)
        seal = seals.get(seq)
        where = f"batch #{pos} (batch_seq {seq}, {rows} events, {lo:%Y-%m-%d %H:%M:%S} .. {hi:%Y-%m-%d %H:%M:%S})"
        if seal is None:
            problem("seal_missing", f"{where} is in the chain but its seal was deleted (no integrity_seals row): "
                    "the record its writer made of it is gone", pos, lo)
        elif seal.fields() != (kind, rows, bytes(root), lo, hi, sealed_at):
            changed = [name for name, a, b in zip(("kind", "rows", "root", "lo", "hi", "sealed_at"), seal.fields(),
                                                  (kind, rows, bytes(root), lo, hi, sealed_at), strict=True) if a != b]
            problem("seal_altered", f"{where}: its seal differs from what was linked ({', '.join(changed)}): the "
                    "integrity_seals row or the link was edited", pos, lo)
        elif seal.linked_pos != pos:
            problem("seal_altered", f"{where}: its seal says it was linked at position {seal.linked_pos}: the "
                    "integrity_seals row was edited, or the chain was reordered", pos, lo)
    unlinked: set[int] = set()
    pending, pending_rows = 0, 0
    for seq, seal in sorted(seals.items()):
        if seq in linked:
            continue
        where = (f"batch_seq {seq} ({seal.rows} events, {seal.lo:%Y-%m-%d %H:%M:%S} .. {seal.hi:%Y-%m-%d %H:%M:%S}, "
                 f"sealed {seal.sealed_at:%Y-%m-%d %H:%M:%S})")
        if seal.linked_pos is not None:
            problem("link_missing", f"{where} was linked at chain position {seal.linked_pos}, which the chain no "
                    "longer holds: its link was deleted, or the chain rewound past it", seal.linked_pos)
            continue  # its rows claim a batch in no chain: reported with them as well
        unlinked.add(seq)
        if seal.sealed_at < now - grace:
            problem("batch_unlinked", f"{where} was sealed but never linked into the chain ({grace} allowed): no "
                    "checkpoint covers it, so its events could be removed unnoticed. Run `auditwatch integrity "
                    "checkpoint` (it links before it signs), then verify again", at=seal.lo)
        else:
            pending += 1
            pending_rows += seal.rows
    if pending:
        notes.append(f"{pending} batches ({pending_rows} events) are sealed but not linked into the chain yet (the "
                     "writer's linker or the checkpoint job links them); their events are checked once linked")
    return unlinked
