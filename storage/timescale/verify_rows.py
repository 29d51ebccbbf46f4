"""The hot rows verify hashes, read as columns: one binary COPY per slice parsed by NumPy in one step.

Each row is ``(batch_seq IS NULL, coalesce(batch_seq, 0), "timestamp", event_id, leaf)``: five
fixed-width fields, so the COPY stream is an array of 87-byte records that NumPy views without a
Python object per row. The leaf is computed by the server (``sealing.leaf_sql``, built-ins only,
under verify's pinned search_path), exactly as the per-row reader did: in its cheaper UTF-8 form when
the database is UTF8 (client_encoding pinned to UTF8 for the transaction), else in the portable form.
A stream that is not made of such records (a column's NULL, say, after someone altered the table) is
reported as ``None`` so that verify falls back to reading that slice row by row.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.timescale.db import drain_copy_out
from storage.timescale.sealing import UTF8_SESSION_CHECK, UTF8_SESSION_PIN, leaf_sql

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # timestamptz's binary form: int8 microseconds since then
_US = timedelta(microseconds=1)
_HEADER = b"PGCOPY\n\xff\r\n\x00"
_RECORD = np.dtype([("fields", ">i2"),
                    ("l_unsealed", ">i4"), ("unsealed", "u1"),
                    ("l_seq", ">i4"), ("seq", ">i8"),
                    ("l_at", ">i4"), ("at", ">i8"),
                    ("l_eid", ">i4"), ("event_id", "V16"),
                    ("l_leaf", ">i4"), ("leaf", "V32")])
_WIDTHS = {"fields": 5, "l_unsealed": 1, "l_seq": 8, "l_at": 8, "l_eid": 16, "l_leaf": 32}
_COPY = sql.SQL('COPY (SELECT batch_seq IS NULL, coalesce(batch_seq, 0::pg_catalog.int8), "timestamp", event_id, {leaf} '
                'FROM audit_events WHERE "timestamp" >= %s AND "timestamp" < %s) TO STDOUT (FORMAT BINARY)')


def pg_micros(at: datetime) -> int:
    """``at`` as timestamptz's binary form (microseconds since 2000-01-01 UTC)."""
    return (at - PG_EPOCH) // _US


@dataclass(frozen=True)
class Rows:
    """One slice's rows as columns (``at`` in ``pg_micros``; ``seq`` is 0 where ``unsealed``)."""

    unsealed: np.ndarray  # bool
    seq: np.ndarray       # int64
    at: np.ndarray        # int64
    event_id: np.ndarray  # V16
    leaf: np.ndarray      # V32

    def __len__(self) -> int:
        return len(self.at)

    def row(self, i: int) -> tuple[int | None, uuid.UUID, datetime, bytes]:
        """Row ``i`` as the per-row reader gave it: (batch_seq or None, event_id, timestamp, leaf)."""
        at = PG_EPOCH + timedelta(microseconds=int(self.at[i]))
        seq = None if self.unsealed[i] else int(self.seq[i])
        return seq, uuid.UUID(bytes=self.event_id[i].tobytes()), at, self.leaf[i].tobytes()

    def leaves(self, index: np.ndarray) -> list[bytes]:
        """The leaves of the rows at ``index``, as bytes."""
        data = self.leaf[index].tobytes()
        return [data[k:k + 32] for k in range(0, len(data), 32)]


_SLICE = sql.SQL('SELECT batch_seq, event_id, "timestamp", {leaf} FROM audit_events '
                 'WHERE "timestamp" >= %s AND "timestamp" < %s')
_EXPORT = "SELECT pg_catalog.pg_export_snapshot()"
_BEGIN = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
HELPERS = 1  # extra connections hashing slices beside the main one (the server hashes; it has the cores)


def pin_utf8(conn: psycopg.Connection) -> bool:
    """Pin client_encoding to UTF8 for ``conn``'s transaction; True if the leaf's UTF-8 form may then be used
    there (a database in another encoding keeps the portable form)."""
    conn.execute(UTF8_SESSION_PIN)
    return bool(conn.execute(UTF8_SESSION_CHECK).fetchone()[0])


def read_slice(conn: psycopg.Connection, lo: datetime, hi: datetime, *, utf8: bool = False) -> Rows | list[tuple]:
    """The rows with ``lo <= timestamp < hi``: columns, or, when the records are not all fixed-width,
    ``(batch_seq, event_id, timestamp, leaf)`` tuples from the per-row reader. ``utf8``: what ``pin_utf8``
    said of ``conn``'s transaction."""
    leaf = leaf_sql(utf8_session=utf8)
    with conn.cursor() as cur, cur.copy(_COPY.format(leaf=leaf), (lo, hi)):
        # psycopg starts the COPY; the records are drained past its per-row read (as copy_frame does)
        data = drain_copy_out(conn)
    rows = parse(data)
    if rows is not None:
        return rows
    with conn.cursor(name="aw_verify_slice") as cur:
        cur.itersize = 20_000
        cur.execute(_SLICE.format(leaf=leaf), (lo, hi))
        return [(seq, event_id, at, bytes(leaf)) for seq, event_id, at, leaf in cur]


@contextmanager
def slice_reader(pool: ConnectionPool, conn: psycopg.Connection, pin: tuple[str, Sequence]):
    """``read(slices)``: each hot slice's rows (``read_slice``), in order, read through ``conn`` and up to
    ``HELPERS`` more pooled connections that share its snapshot (``pg_export_snapshot``) and its pinned
    search_path (``pin``: statement and parameters), so the server hashes slices on several cores while
    verify files the rows of the one before. A helper the pool cannot lend at once is done without.
    Each connection's transaction also gets client_encoding UTF8 (``pin_utf8``)."""
    with ExitStack() as stack:
        conns = [conn]
        utf8 = {id(conn): pin_utf8(conn)}
        if HELPERS and (pool.max_size or 0) > 1:
            snapshot = conn.execute(_EXPORT).fetchone()[0]
            for _ in range(HELPERS):
                try:
                    helper = stack.enter_context(pool.connection(timeout=0.5))
                except PoolTimeout:
                    break
                stack.callback(helper.rollback)
                helper.execute(_BEGIN)
                helper.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                helper.execute(*pin)
                utf8[id(helper)] = pin_utf8(helper)
                conns.append(helper)
        free = deque(conns)
        workers = stack.enter_context(ThreadPoolExecutor(len(conns), thread_name_prefix="aw-verify"))

        def one(lo: datetime, hi: datetime) -> Rows | list[tuple]:
            c = free.popleft()  # as many workers as connections: one is always free
            try:
                return read_slice(c, lo, hi, utf8=utf8[id(c)])
            finally:
                free.append(c)

        def read(slices: Sequence[tuple[datetime, datetime]]) -> Iterator[Rows | list[tuple]]:
            ahead: deque = deque()
            todo = iter(slices)
            for lo, hi in todo:
                ahead.append(workers.submit(one, lo, hi))
                if len(ahead) >= len(conns):
                    break
            while ahead:
                result = ahead.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    ahead.append(workers.submit(one, *nxt))
                yield result

        yield read


def parse(data: bytes) -> Rows | None:
    """Rows from a binary COPY stream of the five columns above, or None if any record is not fixed-width."""
    if not data.startswith(_HEADER) or len(data) < 21:
        return None
    extension = int.from_bytes(data[15:19], "big")
    start = 19 + extension
    body = len(data) - start - 2  # the trailer: int16 -1
    if body < 0 or body % _RECORD.itemsize or data[-2:] != b"\xff\xff":
        return None
    records = np.frombuffer(data, dtype=_RECORD, offset=start, count=body // _RECORD.itemsize)
    for name, width in _WIDTHS.items():
        if (records[name] != width).any():
            return None
    return Rows(unsealed=records["unsealed"].astype(bool), seq=records["seq"].astype(np.int64),
                at=records["at"].astype(np.int64), event_id=records["event_id"], leaf=records["leaf"])


@dataclass(frozen=True)
class Sorted:
    """Where rows go, per ``classify``: ``fast`` rows belong to ``batch`` (an index into the scope's
    batches, then the legacy batches after them); ``slow`` rows need the per-row checks and messages;
    ``unsealed`` rows are in no batch at all (sealed by nothing, with no batch_seq)."""

    fast: np.ndarray
    batch: np.ndarray
    slow: np.ndarray
    unsealed: np.ndarray


def classify(rows: Rows, seqs: np.ndarray, lo: np.ndarray, hi: np.ndarray, legacy_lo: np.ndarray,
             legacy_hi: np.ndarray) -> Sorted:
    """Sort rows as ``_Verifier.add_row`` would, all at once. ``seqs`` (ascending) with ``lo``/``hi`` are the
    scope's batches; ``legacy_lo`` (ascending) and ``legacy_hi`` the legacy batches rows without a
    batch_seq fall into by time. A row with a batch_seq is fast when its batch is in scope and the row
    lies within it; anything else with a batch_seq is slow (add_row words the problem)."""
    sealed = ~rows.unsealed
    batch = np.full(len(rows), -1, dtype=np.int64)
    if len(seqs):
        i = np.minimum(np.searchsorted(seqs, rows.seq), len(seqs) - 1)
        inside = sealed & (seqs[i] == rows.seq) & (lo[i] <= rows.at) & (rows.at <= hi[i])
        batch[inside] = i[inside]
    if len(legacy_lo):
        j = np.searchsorted(legacy_lo, rows.at, side="right") - 1
        hit = rows.unsealed & (j >= 0) & (legacy_hi[np.maximum(j, 0)] >= rows.at)
        batch[hit] = len(seqs) + j[hit]
    fast = np.flatnonzero(batch >= 0)
    return Sorted(fast=fast, batch=batch[fast], slow=np.flatnonzero(sealed & (batch < 0)),
                  unsealed=np.flatnonzero(rows.unsealed & (batch < 0)))
