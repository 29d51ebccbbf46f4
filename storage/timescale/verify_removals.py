"""Verification of removal records: which recorded removals may excuse rows missing from the hot table.

A removal counts only if it is a link of the removal chain that recomputes, agrees with every signed
checkpoint's removal head, and is matched by its sealed self-audit record (``events_archived`` or
``events_expired``, ``event_erased``, written in the same transaction and naming the link); a retention
or erasure removal counts only over ranges archived before it (both touch cold files, never hot rows). Anything else is
reported, and excuses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import psycopg

from storage.integrity import chain
from storage.integrity.checkpoints import Checkpoint
from storage.timescale.removals import REASONS
from storage.timescale.sealing import Removal, removal_head, stored_removals

_RECORDS = ("SELECT event_id, event_type, resource_id, metadata -> 'integrity' FROM audit_events "
            "WHERE event_id = ANY(%s)")

Report = Callable[..., None]  # the verifier's problem(kind, message, chain_pos=None, at=None)


def _where(r: Removal) -> str:
    return f"removal record #{r.id} ({r.reason}, events {r.lo.isoformat()} .. {r.hi.isoformat()}, {r.rows} rows)"


def _chained(rows: Sequence[Removal], head: tuple[int, bytes], signed: Sequence[Checkpoint],
             problem: Report) -> list[Removal]:
    """The records whose links recompute; reports gaps, edits, hand-made rows and cut-off heads."""
    good: list[Removal] = []
    links: dict[int, bytes] = {}
    prev_pos, prev_hash = 0, chain.ZERO_HASH
    for r in rows:
        if r.chain_pos is None:
            problem("removal_forged", f"{_where(r)} is not in the removal chain: it was inserted by hand, not "
                    "by archiving or retention, and excuses no missing rows", at=r.lo)
            continue
        intact = True
        if r.chain_pos != prev_pos + 1:
            problem("removal_missing", f"removal chain positions {prev_pos + 1}..{r.chain_pos - 1} are missing: "
                    "removal records were deleted", at=r.lo)
        elif r.prev_hash != prev_hash:
            problem("removal_altered", f"{_where(r)} does not link to the record before it", at=r.lo)
            intact = False
        if r.chain_hash != chain.removal_link(r.prev_hash or b"", r.chain_pos, r.lo, r.hi, r.reason, r.rows,
                                              r.archive_ref, r.removed_by, r.removed_at, r.audit_event_id,
                                              r.audit_event_at):
            problem("removal_altered", f"{_where(r)}: its chain hash does not match its fields: the record was "
                    "edited", at=r.lo)
            intact = False
        if intact:
            good.append(r)
        links[r.chain_pos] = r.chain_hash or b""
        prev_pos, prev_hash = r.chain_pos, r.chain_hash or b""
    if head != (prev_pos, prev_hash):
        if head[0] > prev_pos:
            problem("removal_truncated", f"the removal chain's head says {head[0]} records but the chain ends at "
                    f"#{prev_pos}: the newest removal records were deleted")
        else:
            problem("removal_altered", f"the removal chain's head (position {head[0]}) does not match its last "
                    f"record #{prev_pos}")
    for cp in signed:
        if cp.removals is None:
            continue
        pos, digest = cp.removals
        if pos > prev_pos:
            problem("removal_truncated", f"the checkpoint signed {cp.created_at:%Y-%m-%d %H:%M:%S} covers {pos} "
                    f"removal records, but the removal chain ends at #{prev_pos}: removal records were deleted")
        elif pos and links.get(pos) != digest:
            problem("removal_altered", f"the checkpoint signed {cp.created_at:%Y-%m-%d %H:%M:%S}: the removal "
                    f"chain at position {pos} no longer has the signed hash: removal records were rewritten")
    return good


def _matches(r: Removal, found: tuple | None, archived: Sequence[Removal]) -> bool:
    """Whether the record's sealed self-audit record backs it (or lies in a range archived since)."""
    if found is None:
        return r.audit_event_at is not None and any(a.lo <= r.audit_event_at < a.hi for a in archived)
    _, event_type, resource_id, integrity = found
    if event_type != REASONS[r.reason]:
        return False
    integrity = integrity if isinstance(integrity, dict) else {}
    # One link per removal record; an erasure of archived rows names one per file it rewrote.
    links = [integrity["removal"]] if isinstance(integrity.get("removal"), dict) else []
    links += [link for link in integrity.get("removals") or [] if isinstance(link, dict)]
    if not links:  # recorded before migration 0011: matched there by type and archive reference
        return r.reason != "erasure" and resource_id == r.archive_ref
    return any(_names(link, r) for link in links)


def _names(link: dict, r: Removal) -> bool:
    try:
        return (link.get("chain_pos"), link.get("reason"), link.get("rows")) == (r.chain_pos, r.reason, r.rows) and \
            datetime.fromisoformat(link["lo"]) == r.lo and datetime.fromisoformat(link["hi"]) == r.hi
    except (KeyError, TypeError, ValueError):
        return False


def _covered(lo: datetime, hi: datetime, ranges: Sequence[tuple[datetime, datetime]]) -> bool:
    at = lo
    for a, b in sorted(ranges):
        if a > at:
            return False
        at = max(at, b)
        if at >= hi:
            return True
    return at >= hi


def lawful_removals(conn: psycopg.Connection, signed: Sequence[Checkpoint], problem: Report) -> list[tuple]:
    """The removals verify may trust, as (id, lo, hi, reason, rows, archive_ref) in time order."""
    good = _chained(stored_removals(conn), removal_head(conn), signed, problem)
    ids = [r.audit_event_id for r in good if r.audit_event_id is not None]
    found = {row[0]: row for row in conn.execute(_RECORDS, (ids,)).fetchall()} if ids else {}
    archived = [r for r in good if r.reason == "archive"]
    matched = []
    for r in good:
        if _matches(r, found.get(r.audit_event_id), archived):
            matched.append(r)
        else:
            problem("removal_unmatched", f"{_where(r)} has no sealed {REASONS[r.reason]} record naming it (the "
                    "archiver and retention write one in the same transaction): a forged removal, which excuses "
                    "no missing rows", at=r.lo)
    lawful = []
    for r in matched:
        if r.reason != "archive" and not _covered(r.lo, r.hi, [(a.lo, a.hi) for a in matched if a.reason == "archive"
                                                                 and a.chain_pos < r.chain_pos]):
            problem("removal_unarchived", f"{_where(r)} covers events that were never archived: {r.reason} of "
                    "archived rows touches archive files only, so it excuses no rows missing from the hot table",
                    at=r.lo)
            continue
        lawful.append(r)
    return sorted(((r.id, r.lo, r.hi, r.reason, r.rows, r.archive_ref) for r in lawful), key=lambda t: t[1])
