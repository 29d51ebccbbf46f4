"""Verification: recompute the chain, the checkpoints and every batch's root from the stored rows.

Hot rows are hashed in SQL (``sealing.leaf_sql``); archived ranges are read back from the Parquet
cold tier (``cold_reader``) and hashed in Python (``storage.integrity.chain``); lawful erasures and
removals are accounted for by their tombstones and removal records. This is the one integrity module
that reads the archive: the write side (``sealing.py``, ``erasure.py``, ``removals.py``) never does.

Why ~480 lines: verification is one walk (hot, cold, removals, checkpoints) over one snapshot, and
splitting the walk would spread the one transaction that makes its answer consistent. Hot slices are
read as columns (``verify_rows``: binary COPY, NumPy), on helper connections sharing that snapshot.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool

from storage.cold.errors import ArchiveCorrupt
from storage.integrity import chain, checkpoints
from storage.integrity.checkpoints import Checkpoint
from storage.timescale import archive, verify_rows, verify_seals
from storage.timescale.sealing import head, stored_checkpoints
from storage.timescale.verify_removals import lawful_removals


@dataclass(frozen=True)
class Problem:
    """One broken link: what is wrong, where, and what it means."""

    kind: str
    message: str
    chain_pos: int | None = None
    at: datetime | None = None

    def sort_key(self) -> tuple:
        # A bad archive file is the cause of the missing rows reported for its batches: name it first.
        return (self.chain_pos if self.chain_pos is not None else 2**62, self.kind not in _CAUSES,
                self.at or datetime.max.replace(tzinfo=UTC))


_CAUSES = frozenset({"archive_file", "archive_incomplete"})


@dataclass
class VerifyReport:
    batches: int = 0          # batches whose contents were recomputed
    chain_length: int = 0     # links checked
    events: int = 0           # rows hashed (hot and cold)
    erased: int = 0           # lawful erasures accounted for by tombstones
    expired_batches: int = 0  # batches removed (wholly or partly) by recorded retention
    unchecked_batches: int = 0  # batches with archived rows, when no cold-tier reader was given
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    suppressed: int = 0       # problems beyond the per-kind cap

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=Problem.sort_key) if self.problems else None


@dataclass
class _Batch:
    chain_pos: int
    batch_seq: int
    kind: str
    rows: int
    root: bytes
    lo: datetime
    hi: datetime
    leaves: list[bytes] = field(default_factory=list)
    tombstones: list[bytes] = field(default_factory=list)
    done: bool = False


_BATCHES = ("SELECT chain_pos, batch_seq, kind, rows, root, lo, hi, sealed_at, prev_hash, chain_hash "
            "FROM integrity_batches ORDER BY chain_pos")
_TOMBSTONES = "SELECT batch_seq, event_id, \"timestamp\", leaf, erasure_event_id FROM integrity_tombstones"
_ERASURE_RECORDS = ("SELECT event_id, metadata -> 'integrity' -> 'erased_leaves' FROM audit_events "
                    "WHERE event_type = 'event_erased' AND event_id = ANY(%s)")
# pg_catalog first, then the application's schema: no function or operator created elsewhere can shadow a
# built-in that the queries below (the leaf hash above all) call; temporary objects come last.
# (current_schema() is read before: once pinned, it would be pg_catalog.)
_SCHEMA = "SELECT pg_catalog.current_schema()"
_PIN_SEARCH_PATH = ("SELECT pg_catalog.set_config('search_path', pg_catalog.concat('pg_catalog, ', "
                    "pg_catalog.quote_ident(%s), ', pg_temp'), true)")
_SIGNED = "SELECT checkpoints FROM integrity_signed WHERE id = 1"
_CHUNKS = ("SELECT range_start, range_end FROM timescaledb_information.chunks "
           "WHERE hypertable_schema = %s AND hypertable_name = 'audit_events' ORDER BY range_start")
_EXTENT = 'SELECT min("timestamp"), max("timestamp") FROM audit_events'

MAX_PER_KIND = 50
ColdReader = Callable[[datetime, datetime], Iterable]  # (lo, hi) -> pyarrow tables of archived rows


class _Verifier:
    def __init__(self, report: VerifyReport, since: datetime | None, until: datetime | None) -> None:
        self.report = report
        self.since = since
        self.until = until
        self.per_kind: dict[str, int] = {}
        self.all_seqs: dict[int, _Batch] = {}
        self.scope: dict[int, _Batch] = {}
        self.legacy: list[_Batch] = []
        self.legacy_lo: list[datetime] = []
        self.cold = False  # whether archived rows can be read back
        self.removals: Sequence[tuple] = ()
        self.first_sealed: datetime | None = None
        self.arrays: tuple | None = None  # the scope's batches for add_rows, once the chain is read
        self.targets: list[_Batch] = []
        self.unlinked: set[int] = set()  # batch_seqs sealed but not (yet) linked: verify_seals reports them

    def problem(self, kind: str, message: str, chain_pos: int | None = None, at: datetime | None = None) -> None:
        count = self.per_kind.get(kind, 0)
        self.per_kind[kind] = count + 1
        if count >= MAX_PER_KIND:
            self.report.suppressed += 1
            return
        self.report.problems.append(Problem(kind, message, chain_pos, at))

    def first_pos(self, lo: datetime, hi: datetime) -> int | None:
        """The earliest batch with events in [lo, hi)."""
        return min((b.chain_pos for b in self.scope.values() if b.lo < hi and b.hi >= lo), default=None)

    def in_window(self, at: datetime) -> bool:
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)

    # chain ------------------------------------------------------------------------------------------
    def check_chain(self, rows: Iterable[tuple], head: tuple) -> list[tuple[int, bytes, int]]:
        """Recompute every link; returns (chain_pos, chain_hash, cumulative events) per link."""
        links: list[tuple[int, bytes, int]] = []
        prev_pos, prev_hash, events = 0, chain.ZERO_HASH, 0
        for pos, seq, kind, n, root, lo, hi, sealed_at, stored_prev, stored_hash in rows:
            root, stored_prev, stored_hash = bytes(root), bytes(stored_prev), bytes(stored_hash)
            if pos != prev_pos + 1:
                self.problem("batch_missing", f"chain positions {prev_pos + 1}..{pos - 1} are missing: their "
                             "integrity_batches rows were deleted (the events they sealed are unaccounted for)",
                             prev_pos + 1)
            elif stored_prev != prev_hash:
                self.problem("chain_link", f"batch #{pos} does not link to batch #{prev_pos}: its prev_hash was "
                             "changed, or the batch before it was replaced", pos)
            if chain.chain_link(stored_prev, pos, seq, kind, n, root, lo, hi, sealed_at) != stored_hash:
                self.problem("batch_altered", f"batch #{pos} (events {lo:%Y-%m-%d %H:%M:%S} .. {hi:%Y-%m-%d %H:%M:%S}):"
                             " its chain hash does not match its fields: the integrity_batches row was edited", pos)
            events += n
            if self.first_sealed is None:
                self.first_sealed = sealed_at
            links.append((pos, stored_hash, events))
            b = _Batch(pos, seq, kind, n, root, lo, hi)
            self.all_seqs[seq] = b
            if (self.since is None or hi >= self.since) and (self.until is None or lo < self.until):
                self.scope[seq] = b
                if kind == "legacy":
                    self.legacy.append(b)
            prev_pos, prev_hash = pos, stored_hash
        self.legacy.sort(key=lambda b: b.lo)
        self.legacy_lo = [b.lo for b in self.legacy]
        self.report.chain_length = len(links)
        head_pos, head_hash, head_events = head
        if (head_pos, bytes(head_hash)) != (prev_pos, prev_hash):
            if head_pos > prev_pos:
                self.problem("head_mismatch", f"the chain head says {head_pos} batches but the chain ends at "
                             f"#{prev_pos}: the newest batches were deleted", prev_pos + 1)
            else:
                self.problem("head_mismatch", f"the chain head (position {head_pos}) does not match the last "
                             f"batch #{prev_pos}: integrity_head or the newest batches were altered", head_pos)
        return links

    def check_checkpoints(self, stored: Sequence[Checkpoint], anchors: Sequence[Checkpoint],
                          links: list[tuple[int, bytes, int]], trusted: frozenset[bytes]) -> None:
        by_pos = {pos: (h, ev) for pos, h, ev in links}
        last = links[-1][0] if links else 0
        previous: Checkpoint | None = None
        for label, cp in [("checkpoint", c) for c in stored] + [("exported checkpoint", c) for c in anchors]:
            where = f"{label} at position {cp.chain_pos} signed {cp.created_at:%Y-%m-%d %H:%M:%S}"
            why = checkpoints.check(cp, trusted)
            if why:
                self.problem("checkpoint_invalid", f"{where}: {why}", cp.chain_pos)
                continue
            if label == "checkpoint":
                expected = previous.digest if previous else checkpoints.NO_PREVIOUS
                if cp.previous != expected:
                    self.problem("checkpoint_chain", f"{where} does not name the checkpoint before it: signed "
                                 "checkpoints were deleted or reordered", cp.chain_pos)
                previous = cp
            found = by_pos.get(cp.chain_pos)
            if cp.chain_pos > last:
                self.problem("truncated", f"{where} covers {cp.chain_pos} batches ({cp.events} events), but the "
                             f"chain ends at #{last}: the newest batches (and their events) were removed", last + 1)
            elif cp.chain_pos > 0 and (found is None or found[0] != cp.chain_hash):
                self.problem("rewritten", f"{where}: the chain at that position no longer has the signed hash: "
                             "history up to it was rewritten", cp.chain_pos)
            elif found is not None and found[1] != cp.events:
                self.problem("rewritten", f"{where} counts {cp.events} events, the chain {found[1]}", cp.chain_pos)
            self.report.checkpoints += 1
        stored_digests = {c.digest for c in stored}
        for cp in anchors:
            if cp.digest not in stored_digests:
                self.problem("checkpoint_missing", f"exported checkpoint at position {cp.chain_pos} signed "
                             f"{cp.created_at:%Y-%m-%d %H:%M:%S} is no longer in the database: checkpoints were "
                             "deleted", cp.chain_pos)

    # rows -------------------------------------------------------------------------------------------
    def add_row(self, seq: int | None, event_id, at: datetime, leaf: bytes) -> None:
        self.report.events += 1
        if seq is None:
            i = bisect.bisect_right(self.legacy_lo, at) - 1
            b = self.legacy[i] if i >= 0 and self.legacy[i].hi >= at else None
            if b is None:
                if self.in_window(at):
                    self.problem("unsealed_row", f"event {event_id} at {at.isoformat()} is in no sealed batch: "
                                 "it was inserted behind the writer's back (a forged row)", at=at)
                return
        else:
            b = self.scope.get(seq)
            if b is None:
                if seq in self.unlinked:  # sealed, waiting to be linked: verify_seals reported the seal
                    return
                known = self.all_seqs.get(seq)
                if known is None:
                    self.problem("unknown_batch", f"event {event_id} at {at.isoformat()} claims batch_seq {seq}, "
                                 "which is not in the chain, nor sealed and waiting to be linked: a forged row, or "
                                 "its batch was deleted", at=at)
                elif self.in_window(at):
                    self.problem("row_outside_batch", f"event {event_id} at {at.isoformat()} claims batch "
                                 f"#{known.chain_pos}, sealed for {known.lo.isoformat()} .. {known.hi.isoformat()}:"
                                 " its time or batch was changed", known.chain_pos, at)
                return
            if not (b.lo <= at <= b.hi):
                self.problem("row_outside_batch", f"event {event_id} at {at.isoformat()} lies outside its batch "
                             f"#{b.chain_pos} ({b.lo.isoformat()} .. {b.hi.isoformat()}): its time or batch was "
                             "changed", b.chain_pos, at)
        if not b.done:  # a row past its closed batch was reported above as outside it
            b.leaves.append(leaf)

    def add_rows(self, rows: verify_rows.Rows) -> None:
        """``add_row`` for a slice's rows at once: rows that belong where they claim are filed without a Python
        object each; the others go through ``add_row`` (only as many as can still be reported, for the
        forged rows of no batch: the rest are counted as suppressed, as ``problem`` would)."""
        if self.arrays is None:
            by_seq = sorted(self.scope.values(), key=lambda b: b.batch_seq)
            self.targets = by_seq + self.legacy
            us = verify_rows.pg_micros
            self.arrays = (np.array([b.batch_seq for b in by_seq], dtype=np.int64),
                           *(np.array([us(x) for x in xs], dtype=np.int64) for xs in (
                               [b.lo for b in by_seq], [b.hi for b in by_seq], [b.lo for b in self.legacy],
                               [b.hi for b in self.legacy])))
        s = verify_rows.classify(rows, *self.arrays)
        order = np.argsort(s.batch, kind="stable")
        batch, index = s.batch[order], s.fast[order]
        starts = np.flatnonzero(np.diff(batch)) + 1
        for part, t in zip(np.split(index, starts), np.split(batch, starts), strict=True):
            if len(part) and not self.targets[t[0]].done:
                self.targets[t[0]].leaves.extend(rows.leaves(part))
        for k in s.slow:
            self.add_row(*rows.row(k))
        at = rows.at[s.unsealed]
        inside = np.ones(len(at), dtype=bool)
        if self.since is not None:
            inside &= at >= verify_rows.pg_micros(self.since)
        if self.until is not None:
            inside &= at < verify_rows.pg_micros(self.until)
        forged = s.unsealed[inside]
        shown = forged[:max(0, MAX_PER_KIND - self.per_kind.get("unsealed_row", 0))]
        for k in shown:
            self.add_row(*rows.row(k))
        rest = len(forged) - len(shown)
        if rest:
            self.per_kind["unsealed_row"] = self.per_kind.get("unsealed_row", 0) + rest
            self.report.suppressed += rest
        self.report.events += len(s.fast) + len(s.unsealed) - len(shown)

    def finish(self, b: _Batch, removals: Sequence[tuple]) -> None:
        b.done = True
        self.report.batches += 1
        leaves = b.leaves + b.tombstones
        span = f"batch #{b.chain_pos} ({b.lo:%Y-%m-%d %H:%M:%S} .. {b.hi:%Y-%m-%d %H:%M:%S}, {b.rows} events)"
        if len(leaves) == b.rows and chain.merkle_root(leaves) == b.root:
            self.report.erased += len(b.tombstones)
            b.leaves = b.tombstones = []
            return
        overlapping = {r[3] for r in removals if r[1] <= b.hi and r[2] > b.lo}
        if len(leaves) < b.rows and ("retention" in overlapping or ("archive" in overlapping and not self.cold)):
            if "retention" in overlapping:
                self.report.expired_batches += 1
            else:
                self.report.unchecked_batches += 1
            b.leaves = b.tombstones = []
            return
        if len(leaves) < b.rows:
            self.problem("rows_missing", f"{span}: only {len(leaves)} of its events remain (lawful erasures "
                         f"included); {b.rows - len(leaves)} were deleted", b.chain_pos, b.lo)
        elif len(leaves) > b.rows:
            self.problem("rows_added", f"{span}: {len(leaves)} events claim this batch; "
                         f"{len(leaves) - b.rows} forged rows were inserted into it", b.chain_pos, b.lo)
        else:
            self.problem("content_changed", f"{span}: the events' contents differ from what was sealed: a field "
                         "was altered, or values or rows were swapped", b.chain_pos, b.lo)
        b.leaves = b.tombstones = []


def verify(pool: ConnectionPool, *, trusted_keys: Iterable[bytes], since: datetime | None = None,
           until: datetime | None = None, anchors: Sequence[Checkpoint] = (),
           progress: Callable[[int, int], None] | None = None, cold: ColdReader | None = None,
           checkpoint_every: timedelta | None = None, now: datetime | None = None,
           link_grace: timedelta = verify_seals.LINK_GRACE) -> VerifyReport:
    """Recompute the chain, the checkpoints, and every batch's root from the stored rows.

    Runs in one REPEATABLE READ snapshot, so concurrent writers neither disturb nor are blocked by it.
    ``since``/``until`` limit which batches' contents are recomputed (those overlapping the window);
    the chain and the checkpoints are always checked whole. ``progress(done, total)`` counts events.
    Only public keys are needed. ``checkpoint_every`` (the signer's interval): a chain sealed more than
    twice that long before ``now`` (default: the database's clock) must have a checkpoint. A batch sealed
    more than ``link_grace`` (or twice the checkpoint interval, if longer) before ``now`` must be linked.
    """
    report = VerifyReport()
    v = _Verifier(report, since, until)
    v.cold = cold is not None
    trusted = frozenset(trusted_keys)
    with pool.connection() as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        schema = conn.execute(_SCHEMA).fetchone()[0]
        conn.execute(_PIN_SEARCH_PATH, (schema,))
        batch_rows = conn.execute(_BATCHES).fetchall()
        links = v.check_chain(batch_rows, head(conn))
        now = now or conn.execute("SELECT pg_catalog.now()").fetchone()[0]
        grace = max(link_grace, 2 * checkpoint_every) if checkpoint_every else link_grace
        v.unlinked = verify_seals.check_seals(conn, (r[:8] for r in batch_rows), v.problem, report.notes,
                                              now=now, grace=grace)
        stored = stored_checkpoints(conn)
        v.check_checkpoints(stored, anchors, links, trusted)
        _check_checkpoints_kept(conn, v, stored, links, checkpoint_every, now)
        tombstones = conn.execute(_TOMBSTONES).fetchall()
        backing: dict = {}
        if tombstones:
            for eid, leaves in conn.execute(_ERASURE_RECORDS, ([t[4] for t in tombstones],)).fetchall():
                backing[eid] = set(leaves or [])
        for seq, event_id, at, leaf, erasure_id in tombstones:
            leaf = bytes(leaf)
            if leaf.hex() not in backing.get(erasure_id, ()):
                v.problem("tombstone_forged", f"the erasure tombstone of event {event_id} ({at.isoformat()}) is "
                          f"not listed by an event_erased record ({erasure_id}): a deletion disguised as erasure",
                          v.all_seqs[seq].chain_pos if seq in v.all_seqs else None, at)
            if seq in v.scope:
                v.scope[seq].tombstones.append(leaf)

        removals = lawful_removals(conn, [cp for cp in (*stored, *anchors) if checkpoints.check(cp, trusted) is None],
                                   v.problem)
        v.removals = removals
        slices = _slices(conn, v, removals, schema)
        total = sum(b.rows for b in v.scope.values())
        done = 0
        pending = sorted(v.scope.values(), key=lambda b: b.hi)
        next_open = 0
        with verify_rows.slice_reader(pool, conn, (_PIN_SEARCH_PATH, (schema,))) as read:
            hot = read([(lo, hi) for lo, hi, removal in slices if removal is None])
            for i, (lo, hi, removal) in enumerate(slices):
                if removal is not None:
                    done += _feed_cold(v, removal, lo, hi, cold)
                else:
                    rows = next(hot)
                    if isinstance(rows, verify_rows.Rows):
                        v.add_rows(rows)
                    else:  # not fixed-width records (a NULL where none belongs): filed row by row
                        for seq, event_id, at, leaf in rows:
                            v.add_row(seq, event_id, at, leaf)
                    done += len(rows)
                    rows = None
                # Every row before the next slice's start has been seen: close the batches that end there.
                bound = slices[i + 1][0] if i + 1 < len(slices) else None
                while next_open < len(pending) and bound is not None and pending[next_open].hi < bound:
                    v.finish(pending[next_open], removals)
                    next_open += 1
                if progress:
                    progress(done, total)
        for b in pending[next_open:]:
            v.finish(b, removals)
        conn.rollback()
    report.problems.sort(key=Problem.sort_key)
    return report


def _check_checkpoints_kept(conn: psycopg.Connection, v: _Verifier, stored: Sequence[Checkpoint],
                            links: list[tuple[int, bytes, int]], every: timedelta | None,
                            now: datetime | None) -> None:
    """Checkpoints are never deleted lawfully: all that were signed must be there, and a chain that should
    have been signed by now must have been."""
    signed = conn.execute(_SIGNED).fetchone()[0]
    if len(stored) != signed:
        v.problem("checkpoints_missing", f"{signed} checkpoints were signed but {len(stored)} are stored: signed "
                  "checkpoints were deleted (or the count of them edited); check with exported ones (--anchors)")
    if stored or not links:
        if stored and links and stored[-1].chain_pos < links[-1][0]:
            v.report.notes.append(f"{links[-1][0] - stored[-1].chain_pos} batches were sealed after the latest "
                                  "checkpoint; they are covered by the chain but not yet by a signature")
        return
    if every is not None and v.first_sealed is not None:
        now = now or conn.execute("SELECT pg_catalog.now()").fetchone()[0]
        if v.first_sealed < now - 2 * every:
            v.problem("checkpoints_missing", f"there is no signed checkpoint, yet batch #1 was sealed at "
                      f"{v.first_sealed:%Y-%m-%d %H:%M:%S}, more than twice the checkpoint interval ({every}) ago: "
                      "the checkpoints were deleted, or the signer never ran (then sign now with `auditwatch "
                      "integrity checkpoint`, knowing the chain up to now is vouched for by nothing)", 1)
            return
    v.report.notes.append("no signed checkpoint yet: removal of the newest batches would go unnoticed; "
                          "run `auditwatch integrity checkpoint` (the worker does it periodically)")


def _slices(conn: psycopg.Connection, v: _Verifier, removals: Sequence[tuple], schema: str) -> list[tuple]:
    """(lo, hi, archive removal or None) in time order, covering every chunk and archived range in scope."""
    lo = min([b.lo for b in v.scope.values()] + ([v.since] if v.since else []), default=None)
    hi = max([b.hi for b in v.scope.values()] + ([v.until] if v.until else []), default=None)
    extent = conn.execute(_EXTENT).fetchone()
    if extent[0] is not None:
        if v.since is None:
            lo = min(lo, extent[0]) if lo else extent[0]
        if v.until is None:
            hi = max(hi, extent[1]) if hi else extent[1]
    if lo is None:
        return []
    end = hi + timedelta(microseconds=1)
    out = []
    for start, stop in conn.execute(_CHUNKS, (schema,)).fetchall():
        if stop > lo and start < end:
            out.append((max(start, lo), min(stop, end), None))
    for r in removals:
        if r[3] == "archive" and r[2] > lo and r[1] < end:
            out.append((max(r[1], lo), min(r[2], end), r))
    out.sort(key=lambda s: (s[0], s[1]))
    return out


def cold_reader(pool: ConnectionPool, store) -> ColdReader:
    """A ``verify(cold=...)`` reader over the Parquet cold tier: each live catalogued file overlapping the
    range is checked against its catalogue row (present, SHA-256, row count) and then read back."""
    def read(lo: datetime, hi: datetime) -> Iterable:
        with pool.connection() as conn:
            found = archive.files(conn, start=lo, end=hi)
        for f in found:
            try:
                store.verify(f.path, rows=f.rows, sha256=f.sha256)
            except ArchiveCorrupt as exc:
                yield Problem("archive_file", f"{exc} (catalogue row {f.archive_id}, events "
                              f"{f.range_start.isoformat()} .. {f.range_end.isoformat()})", at=f.range_start)
                continue
            yield store.read(f.path)

    return read


def _feed_cold(v: _Verifier, removal: tuple, lo: datetime, hi: datetime, cold: ColdReader | None) -> int:
    """Hash the archived rows of one removed range (None: report the range as not checkable here)."""
    if cold is None:
        v.report.notes.append(f"events {lo.isoformat()} .. {hi.isoformat()} were archived (removal #{removal[0]}, "
                              f"{removal[4]} events) and no cold-tier reader was given: their batches cannot be "
                              "checked by this call")
        return 0
    n = 0
    for table in cold(lo, hi):
        if isinstance(table, Problem):
            v.problem(table.kind, table.message, v.first_pos(lo, hi), table.at)
            continue
        seqs = table.column("batch_seq").to_pylist()
        ids = table.column("event_id").to_pylist()
        times = table.column("timestamp").to_pylist()
        for seq, eid, at, leaf in zip(seqs, ids, times, chain.leaves_from_arrow(table), strict=True):
            at = at if isinstance(at, datetime) else datetime.fromtimestamp(at / 1e6, UTC)
            if lo <= at < hi:
                v.add_row(seq, eid, at, leaf)
                n += 1
    whole = (lo, hi) == (removal[1], removal[2])
    expired = any(r[3] == "retention" and r[1] < hi and r[2] > lo for r in v.removals)
    erased = [r for r in v.removals if r[3] == "erasure" and lo <= r[1] and r[2] <= hi]
    for r in erased:
        v.report.notes.append(f"{r[4]} archived event(s) of {r[1].isoformat()} .. {r[2].isoformat()} were erased "
                              f"from {r[5]} (removal #{r[0]}); their tombstones keep the batches verifiable")
    expected = removal[4] - sum(r[4] for r in erased)
    if whole and not expired and n != expected:
        v.problem("archive_incomplete", f"{expected} events of {lo.isoformat()} .. {hi.isoformat()} were archived "
                  f"(removal #{removal[0]}, chunk {removal[5]}{', less recorded erasures' if erased else ''}), but "
                  f"the catalogued live files hold {n}: an archive file or its log_archives row was removed, or a "
                  "file was replaced", v.first_pos(lo, hi), lo)
    return n
