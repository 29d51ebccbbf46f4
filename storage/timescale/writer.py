"""Durable, fast writes: binary COPY into a staging table, then one deduplicating insert.

R5 (an event_id + timestamp is never stored twice) is enforced by the primary key and
``ON CONFLICT DO NOTHING``: a retried request reports its events as duplicates instead
of failing, and one duplicate never fails the rest of a batch.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool

from storage import request_ids
from storage.errors import DatabaseUnavailable, WriteBacklogFull, WriteTimeout
from storage.events import COLUMNS, EventRecord
from storage.platform import is_platform_source
from storage.timescale import sealing

log = logging.getLogger(__name__)

_COLUMN_TYPES = [
    "uuid", "timestamptz", "text", "text", "text", "text", "inet",
    "text", "text", "text", "text", "jsonb", "timestamptz",
]
_STAGING = sql.Identifier("aw_staging_events")
_COLUMN_LIST = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
_CREATE_STAGING = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
).format(_STAGING)
_COPY_STAGING = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(_STAGING, _COLUMN_LIST)
_COPY_DIRECT = sql.SQL("COPY audit_events ({}) FROM STDIN (FORMAT BINARY)").format(_COLUMN_LIST)
_COPY_DIRECT_SEALED = sql.SQL("COPY audit_events ({}, batch_seq) FROM STDIN (FORMAT BINARY)").format(_COLUMN_LIST)
_SEALED_TYPES = [*_COLUMN_TYPES, "int8"]  # row_of's rows and the batch (the writer itself sends _SEALED_WIRE_TYPES)
_INSERT = sql.SQL(
    'INSERT INTO audit_events ({cols}) SELECT {cols} FROM {staging} '
    'ON CONFLICT DO NOTHING RETURNING event_id, "timestamp"'
).format(cols=_COLUMN_LIST, staging=_STAGING)

# A batch behind the rollups' invalidation threshold (migration 0025) is noted for the refresh, in the transaction
# that writes it, after its rows (so the transaction holds an id: a refresh that moves the threshold meanwhile waits
# for it to end before it reads, rollups._raise_threshold, and a statement after the move reads the new threshold).
# No lock: nothing a writer does waits for the refresh. No threshold yet (never refreshed): nothing to note, the
# first refresh starts from the oldest event.
_NOTE_BEHIND_ROLLUPS = """
    INSERT INTO rollup_invalidations (low, high) SELECT %(low)s, %(high)s FROM rollup_thresholds
     WHERE rollup = 'events_1m' AND %(low)s < threshold
"""
# Events older than this when written fall behind the scoring jobs' window and are recorded for them to score
# again (history scoring; the rollups have their exact threshold above).
LATE_AFTER = timedelta(minutes=30)
_NOTE_UNSCORED = "INSERT INTO score_invalidations (low, high) VALUES (%s, %s)"  # the scoring job's share

# Under a sustained load a burst of group commits may never end: its commits still link at least this often, so
# the chain stays seconds behind the seals however long the load lasts.
LINK_AT_LEAST_EVERY = 1.0

# Each sender's last-seen time (migration 0022) is moved forward at most this often per process, so a sender's
# true last event lies within this much after the stored one (``rule_inputs.last_seen`` reads that slice).
SEEN_EVERY = timedelta(seconds=10)
_SOURCE_SEEN = "SELECT source_seen(%s::text[], %s::timestamptz[])"
MAX_SENDERS = 100_000


class SourcesSeen:
    """The newest event time recorded per sender by this process: what is due to be recorded again.

    The platform's own records (``auditwatch``, ``auditwatch-…``: self-audit, erasure records, written one at
    a time by ``insert_rows_sealed``) are not tracked; ``rule_inputs.last_seen`` walks the index for them."""

    def __init__(self) -> None:
        self._recorded: dict[str, datetime] = {}

    def __len__(self) -> int:
        """Senders remembered (at most ``MAX_SENDERS`` + 1)."""
        return len(self._recorded)

    def due(self, records: Sequence[EventRecord]) -> dict[str, datetime]:
        """Senders whose newest event here is ``SEEN_EVERY`` past what was recorded (or never recorded)."""
        newest: dict[str, datetime] = {}
        for record in records:
            source = record.source
            if source is not None and ((known := newest.get(source)) is None or record.timestamp > known):
                newest[source] = record.timestamp
        recorded = self._recorded
        return {s: t for s, t in newest.items()
                if ((r := recorded.get(s)) is None or t >= r + SEEN_EVERY) and not is_platform_source(s)}

    def note(self, conn: psycopg.Connection, due: dict[str, datetime]) -> None:
        """Record ``due`` in the caller's transaction (``committed`` once it commits)."""
        if due:
            names = sorted(due)
            conn.execute(_SOURCE_SEEN, (names, [due[n] for n in names]))

    def committed(self, due: dict[str, datetime]) -> None:
        recorded = self._recorded
        if len(recorded) > MAX_SENDERS:  # senders named at will (syslog app names): memory stays bounded
            recorded.clear()  # each is recorded again at its next event, a little more often
        for source, at in due.items():
            if (r := recorded.get(source)) is None or at > r:
                recorded[source] = at


def _dumps(obj) -> bytes:
    return orjson.dumps(obj)


set_json_dumps(_dumps)
# orjson reads JSON numbers beyond 64 bits as floats instead of failing, as the writer expects.
set_json_loads(orjson.loads)


@functools.lru_cache(maxsize=65536)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address object the binary inet dumper needs, from validated text (parsed in C)."""
    try:
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except OSError:
        return ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))


def row_of(record: EventRecord) -> tuple:
    return (
        record.event_id,
        record.timestamp,
        record.event_type,
        record.user_id,
        str(record.outcome),
        record.source,
        _ip(record.source_ip) if record.source_ip else None,
        record.source_country,
        record.source_asn,
        record.user_agent,
        record.resource_id,
        record.metadata,
        record.received_at,
    )


# The fast path's COPY sends uuid, inet and jsonb already in their binary wire forms (uuid: its 16 bytes; inet:
# family, bits, is_cidr, length, address; jsonb: version 1, then the JSON text), through psycopg's pass-through
# bytes dumper: a binary COPY carries no types, the server reads each field with its column's own receive function.
# They are the bytes psycopg's uuid, inet and jsonb dumpers send, without an ipaddress object per address or a
# second JSON encoding of the metadata (prepare_batch needs it too).
_SEALED_WIRE_TYPES = [
    "bytea", "timestamptz", "text", "text", "text", "text", "bytea",
    "text", "text", "text", "text", "bytea", "timestamptz", "int8",
]
# set_types picks each column's dumper by type oid, and bytea's is the DB-API Binary wrapper's, in Python; bytes'
# own binary dumper (psycopg's C one when installed) sends the same bytes, registered on the writing cursor only.
_PASS_THROUGH = psycopg.adapters.get_dumper(bytes, PyFormat.BINARY)
_INET4 = bytes((2, 32, 0, 4))  # PGSQL_AF_INET, a host's 32 bits, not a cidr, 4 bytes
_INET6 = bytes((3, 128, 0, 16))  # PGSQL_AF_INET6


def _inet_wire(text: str) -> bytes:
    """inet's binary form of validated address text (IPv6 text always holds a colon, IPv4 text never)."""
    if ":" in text:
        return _INET6 + socket.inet_pton(socket.AF_INET6, text)
    return _INET4 + socket.inet_pton(socket.AF_INET, text)


def _sealed_wire_rows(records: Sequence[EventRecord], ids: Sequence[bytes], metadata_json: Sequence[bytes],
                      batch: int) -> list[tuple]:
    """``row_of`` and the batch, in ``_SEALED_WIRE_TYPES``."""
    return [
        (event_id, r.timestamp, r.event_type, r.user_id, str(r.outcome), r.source,
         _inet_wire(r.source_ip) if r.source_ip else None, r.source_country, r.source_asn, r.user_agent,
         r.resource_id, b"\x01" + metadata, r.received_at, batch)
        for r, event_id, metadata in zip(records, ids, metadata_json, strict=True)
    ]


def _note_behind_rollups(target: psycopg.Connection | psycopg.Cursor, oldest: datetime, newest: datetime) -> None:
    """Note [oldest, newest] for the rollup refresh if it lies behind the threshold, in the caller's transaction
    (every write of events does, so the refresh recomputes only what was written behind it)."""
    target.execute(_NOTE_BEHIND_ROLLUPS, {"low": oldest, "high": newest})


def _note_rows(target: psycopg.Connection | psycopg.Cursor, rows: Sequence[tuple]) -> None:
    if rows:
        times = [row[1] for row in rows]  # row_of's order: the timestamp second
        _note_behind_rollups(target, min(times), max(times))


def copy_rows(cursor: psycopg.Cursor, statement: sql.Composable, rows, types: list[str] = _COLUMN_TYPES) -> None:
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


class EventWriter:
    """Writes events in one transaction and says, per event, whether it was new."""

    def __init__(self, pool: ConnectionPool, *, late_after: timedelta = LATE_AFTER, sealed: bool = True) -> None:
        self._pool = pool
        self._late_after = late_after
        self._sealed = sealed  # tamper evidence (storage/timescale/sealing.py); off only to measure it
        self._prepared: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        self._defer_link: Callable[[], bool] = _never
        self._unlinked = False  # a commit skipped its link (``defer_links_while``); ``link`` catches up
        self._linked_at = time.monotonic()
        self._seen = SourcesSeen()

    @property
    def pool(self) -> ConnectionPool:
        """The pool it writes through (the bus writer reads the catalogue through it too)."""
        return self._pool

    def defer_links_while(self, busy: Callable[[], bool]) -> None:
        """Skip the chain link after a commit while ``busy()`` (a group committer's backlog is not empty).

        Linking takes two round trips after each commit; the next commit's link takes every batch committed
        before it, so under load one link serves a burst of commits, and the burst's last commit (nothing
        queued behind it) links them all; a burst that never ends still links every ``LINK_AT_LEAST_EVERY``
        seconds. Events are durable and sealed at commit either way; only their place in the chain waits
        (``verify`` allows minutes).
        """
        self._defer_link = busy

    def link(self) -> None:
        """Link now what a deferred commit left unlinked, if anything."""
        if self._sealed and self._unlinked:
            self._unlinked = False
            self._linked_at = time.monotonic()
            try:
                with self._pool.connection() as conn:
                    _link(conn)
            except BaseException:
                self._unlinked = True
                raise

    def _after_commit(self, conn: psycopg.Connection) -> None:
        if not self._sealed:
            return
        if self._defer_link() and time.monotonic() - self._linked_at < LINK_AT_LEAST_EVERY:
            self._unlinked = True
            return
        self._unlinked = False
        self._linked_at = time.monotonic()
        _link(conn)

    def _note(self, conn: psycopg.Connection, records: Sequence[EventRecord]) -> None:
        """Mark the batch's range for what has counted past it, in the same transaction: the rollups (behind
        their threshold) and the scoring jobs (older than ``late_after``: backfills, never ordinary traffic)."""
        oldest = min(r.timestamp for r in records)
        newest = max(r.timestamp for r in records)
        _note_behind_rollups(conn, oldest, newest)
        if oldest < datetime.now(UTC) - self._late_after:
            conn.execute(_NOTE_UNSCORED, (oldest, newest))

    def write(self, records: Sequence[EventRecord]) -> list[bool]:
        """Store ``records``; True where the event was inserted, False where it was a duplicate.

        Duplicates are rare (client retries), so the first attempt COPYs straight into the
        hypertable; only when the primary key refuses a row does the batch go the slower way,
        through the staging table and ``ON CONFLICT DO NOTHING``. Sealed (the default), either way
        hashes the new rows as stored and seals their batch in the same transaction (no lock shared
        with other writers), then links it into the integrity chain after the commit.
        """
        if not records:
            return []
        ids = [r.event_id.bytes for r in records]
        due = self._seen.due(records)
        with self._pool.connection() as conn:
            if len(set(zip(ids, [r.timestamp for r in records], strict=True))) == len(records):  # R5 keys, hashed in C
                try:
                    with conn.cursor() as cur:
                        if self._sealed:
                            cur.adapters.register_dumper(bytes, _PASS_THROUGH)
                            metadata = [orjson.dumps(r.metadata) for r in records]
                            batch, leaves = sealing.prepare_batch(cur, records, [m.decode() for m in metadata])
                            copy_rows(cur, _COPY_DIRECT_SEALED, _sealed_wire_rows(records, ids, metadata, batch),
                                      _SEALED_WIRE_TYPES)
                            sealing.seal_prepared(cur, batch, records, leaves)
                        else:
                            copy_rows(cur, _COPY_DIRECT, [row_of(r) for r in records])
                    self._note(conn, records)
                    self._seen.note(conn, due)
                    conn.commit()
                    self._seen.committed(due)
                    self._after_commit(conn)
                    return [True] * len(records)
                except psycopg.errors.UniqueViolation:
                    conn.rollback()
            inserted = self._write_staged(conn, [row_of(r) for r in records], records, due)
            self._seen.committed(due)
            self._after_commit(conn)
        # Claim each inserted key once: a key repeated within the batch is new only the first time.
        result = []
        for record in records:
            key = record.key
            if key in inserted:
                inserted.discard(key)
                result.append(True)
            else:
                result.append(False)
        return result

    def _write_staged(self, conn: psycopg.Connection, rows: list[tuple], records: Sequence[EventRecord],
                      due: dict[str, datetime]) -> set:
        if conn not in self._prepared:
            conn.execute(_CREATE_STAGING)
            conn.commit()
            self._prepared.add(conn)
        with conn.cursor() as cur:
            copy_rows(cur, _COPY_STAGING, rows)
            if self._sealed:
                inserted = sealing.insert_sealed(cur, _STAGING, link_now=False)
            else:
                cur.execute(_INSERT)
                inserted = {(row[0], row[1]) for row in cur.fetchall()}
        self._note(conn, records)
        self._seen.note(conn, due)
        conn.commit()
        return inserted


def _never() -> bool:
    return False


def _link(conn: psycopg.Connection) -> None:
    """Link the committed batch into the chain; the events are stored whatever happens here."""
    try:
        sealing.link_committed(conn)
    except psycopg.Error as exc:
        if not conn.closed:
            conn.rollback()
        log.warning("a sealed batch is stored but not linked into the integrity chain yet (%s): the next write "
                    "or the checkpoint job links it", exc)


def insert_rows(cursor: psycopg.Cursor, rows: Sequence[tuple]) -> None:
    """COPY rows into the hypertable within the caller's transaction (unsealed: verify flags them)."""
    copy_rows(cursor, _COPY_DIRECT, rows)
    _note_rows(cursor, rows)


def insert_rows_sealed(conn: psycopg.Connection, rows: Sequence[tuple]) -> None:
    """Insert rows as one sealed batch within the caller's transaction (for rare writes such as erasure)."""
    conn.execute(_CREATE_STAGING)
    with conn.cursor() as cur:
        copy_rows(cur, _COPY_STAGING, rows)
        sealing.insert_sealed(cur, _STAGING)
        _note_rows(cur, rows)


def copy_direct(pool: ConnectionPool, rows: Sequence[tuple]) -> None:
    """Raw binary COPY into the hypertable, no dedup: the ingest ceiling the benchmark compares against (noted
    behind the rollups' threshold like every write, one statement per call)."""
    with pool.connection() as conn, conn.cursor() as cur:
        copy_rows(cur, _COPY_DIRECT, rows)
        _note_rows(cur, rows)


class _Pending:
    __slots__ = ("records", "future", "request_id")

    def __init__(self, records: Sequence[EventRecord]) -> None:
        self.records = records
        self.future: Future[list[bool]] = Future()
        self.request_id = request_ids.current()  # the submitting API request's, for the commit's log line


class GroupCommitter:
    """Groups concurrent writes into shared transactions (group commit).

    Request threads ``submit`` and wait on the returned future, which completes only after
    the transaction holding their events has committed. While one group commits, the next
    accumulates, so under load each commit carries many requests.

    The backlog is bounded (``max_queued_events``): when the database is slow or down, a submission
    beyond it is refused at once with ``WriteBacklogFull`` (503, retry) instead of growing memory
    without end. A waiter that gives up (``write``'s timeout) cancels its submission if no
    transaction has taken it yet, so events whose sender was told "not stored" are not written later.
    """

    def __init__(self, writer: EventWriter, *, max_group_events: int = 5000, threads: int = 2,
                 max_queued_events: int = 100_000) -> None:
        self._writer = writer
        self._max = max_group_events
        self._max_queued = max_queued_events
        self._cond = threading.Condition()
        self._backlog: deque[_Pending] = deque()
        self._queued_events = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"group-commit-{i}", daemon=True) for i in range(threads)
        ]
        self._closed = False
        self._in_flight = 0  # groups taken and not yet committed
        writer.defer_links_while(self._busy)
        self._stats_lock = threading.Lock()
        self.commits = 0  # transactions committed
        self.requests = 0  # submissions they carried; requests / commits is the grouping factor
        self.refused = 0  # submissions refused because the backlog was full
        self.cancelled = 0  # submissions withdrawn by a waiter that timed out before a transaction took them
        for thread in self._threads:
            thread.start()

    @property
    def queued_events(self) -> int:
        return self._queued_events

    def submit(self, records: Sequence[EventRecord]) -> Future[list[bool]]:
        return self._enqueue(records).future

    def _enqueue(self, records: Sequence[EventRecord]) -> _Pending:
        pending = _Pending(records)
        with self._cond:  # no submission may slip in behind close()
            if self._closed:
                raise RuntimeError("the group committer is closed")
            if self._queued_events and self._queued_events + len(records) > self._max_queued:
                self.refused += 1
                raise WriteBacklogFull(
                    f"{self._queued_events:,} events already wait to be committed (the database is slow or down); "
                    "nothing was stored for this request, retry shortly")
            self._backlog.append(pending)
            self._queued_events += len(records)
            self._cond.notify()
        return pending

    def write(self, records: Sequence[EventRecord], timeout: float = 30.0) -> list[bool]:
        pending = self._enqueue(records)
        try:
            return pending.future.result(timeout)
        except FutureTimeout:
            if self._withdraw(pending):
                raise WriteTimeout(f"the events were not committed within {timeout:g} s and were withdrawn; "
                                   "nothing was stored for this request, retry shortly") from None
        # A transaction holds them already: its outcome is the answer, however long the database takes.
        return pending.future.result()

    def _withdraw(self, pending: _Pending) -> bool:
        with self._cond:
            if not pending.future.cancel():
                return False
            try:
                self._backlog.remove(pending)
            except ValueError:
                return True
            self._queued_events -= len(pending.records)
            self.cancelled += 1
            return True

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def _take(self) -> list[_Pending] | None:
        """The next group, each of its futures marked running (no longer cancellable); None once closed
        and drained."""
        with self._cond:
            while not self._backlog:
                if self._closed:
                    return None
                self._cond.wait()
            group: list[_Pending] = []
            size = 0
            while self._backlog and (not group or size < self._max):
                item = self._backlog.popleft()
                self._queued_events -= len(item.records)
                if item.future.set_running_or_notify_cancel():
                    group.append(item)
                    size += len(item.records)
            self._in_flight += 1
            return group

    def _busy(self) -> bool:
        """More to commit behind the caller's write: a queued request, or another group being committed."""
        return bool(self._backlog) or self._in_flight > 1

    def _run(self) -> None:
        while (group := self._take()) is not None:
            try:
                if group:
                    self._commit(group)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    last = not self._backlog and not self._in_flight
            if last:  # the end of a burst whose commits deferred their links
                self._link()

    def _link(self) -> None:
        try:
            self._writer.link()
        except Exception as exc:  # noqa: BLE001 - the events are stored; the next commit or checkpoint links
            log.warning("committed batches are not linked into the integrity chain yet (%s): the next write or "
                        "the checkpoint job links them", exc)

    def _commit(self, group: list[_Pending]) -> None:
        records = [r for p in group for r in p.records]
        try:
            statuses = self._writer.write(records)
        except Exception as exc:  # noqa: BLE001 - every waiter must hear about any failure
            if len(group) > 1 and not isinstance(exc, DatabaseUnavailable):
                # One bad request must not fail the others: retry each on its own.
                log.warning("group commit of %d requests failed (%s); retrying one by one", len(group), exc)
                for pending in group:
                    self._commit([pending])
                return
            for pending in group:
                pending.future.set_exception(exc)
            return
        with self._stats_lock:
            self.commits += 1
            self.requests += len(group)
        ids = request_ids.distinct(p.request_id for p in group)  # API requests: INFO; syslog, self-audit: DEBUG
        log.log(logging.INFO if ids else logging.DEBUG, "stored %d events (%d new) for %d requests", len(records),
                sum(statuses), len(group), extra={"request_ids": ids})
        start = 0
        for pending in group:
            end = start + len(pending.records)
            pending.future.set_result(statuses[start:end])
            start = end
