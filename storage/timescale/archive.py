"""Hot → cold: export whole chunks to day-partitioned Parquet, catalogue them, then drop the chunk.

Every step is durable before the next starts, so a crash anywhere leaves the chunk, or a verified
archive file, and never neither:

1. ``pending``: a catalogue row claims the file's path (committed);
2. the file is written to ``path.tmp``, fsynced and renamed into place, then read back;
3. ``verified``: its row count, time range and SHA-256 are recorded (committed);
4. ``complete``: in ONE transaction the chunk is locked, re-counted against its files (a late
   backfill into it aborts the drop), checked against legal holds, dropped, the files marked
   complete and an ``events_archived`` audit record stored.

A rerun repairs what a crash left: pending rows become ``failed`` and their files are removed;
verified files whose chunk still exists are re-checked and reused.

Rollups keep the aggregates of archived days: before a drop the chunk's range is materialised in
the rollups, and the drop records no invalidation, so series over old ranges stay correct.

(Over 400 lines on purpose: the crash-safety argument above spans the catalogue rows, the file
steps and the repair, and reads best in one file.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

from storage.cold.errors import ArchiveCorrupt
from storage.cold.layout import DEFAULT_LAYOUT, Layout
from storage.cold.schema import Column, arrow_schema, record_batch
from storage.cold.store import ColdStore, Hook, _no_hook
from storage.errors import StorageError
from storage.timescale import legal_hold, removals, rollups, watermarks
from storage.timescale.db import advisory_lock, pool_edition
from storage.timescale.self_audit import Auditor

log = logging.getLogger(__name__)

ARCHIVE_LOCK = 0x4152_4348_4956_45  # 'ARCHIVE': one archiver or retention run at a time
DAY = timedelta(days=1)
LIVE = ("verified", "complete")


class ArchiveBusy(StorageError):
    """Another archive or retention run holds the lock."""


@dataclass(frozen=True)
class Chunk:
    name: str  # schema-qualified
    schema: str
    table: str
    range_start: datetime
    range_end: datetime


@dataclass(frozen=True)
class ArchiveFile:
    archive_id: int
    path: str
    day: date
    range_start: datetime
    range_end: datetime
    chunk_name: str | None
    state: str
    rows: int | None
    bytes: int | None
    sha256: str | None
    min_time: datetime | None
    max_time: datetime | None
    event_types: list[str]
    columns: list[str]
    created_at: datetime
    verified_at: datetime | None
    completed_at: datetime | None
    deleted_at: datetime | None
    supersedes: int | None
    superseded_by: int | None
    note: str | None


@dataclass
class ArchiveResult:
    archived: list[str] = field(default_factory=list)  # chunks dropped after archiving
    files: list[ArchiveFile] = field(default_factory=list)  # files completed by this run
    held: list[str] = field(default_factory=list)  # chunks kept hot by a legal hold
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (chunk, why)
    repaired: int = 0  # catalogue rows a crash left behind, cleaned up

    @property
    def rows(self) -> int:
        return sum(f.rows or 0 for f in self.files)


_FILE_COLUMNS = sql.SQL(
    "archive_id, path, day, range_start, range_end, chunk_name, state, rows, bytes, sha256, min_time, max_time, "
    "event_types, columns, created_at, verified_at, completed_at, deleted_at, supersedes, superseded_by, note")


# -- the table and its chunks ---------------------------------------------------------------------

def table_columns(conn: psycopg.Connection) -> list[Column]:
    """audit_events' columns as they are now (new ones, such as an integrity sequence, come along)."""
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'audit_events'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()
    return [Column(name, pg_type) for name, pg_type in rows]


def _select_list(columns: Sequence[Column]) -> sql.Composable:
    """Each column in its Parquet encoding (see storage.cold.schema), converted by PostgreSQL itself."""
    parts = []
    for c in columns:
        ident = sql.Identifier(c.name)
        if c.as_epoch_micros:
            parts.append(sql.SQL("(extract(epoch FROM {}) * 1000000)::bigint").format(ident))
        elif c.pg_type == "inet":
            parts.append(sql.SQL("host({})").format(ident))
        elif c.pg_type in ("text", "bigint", "integer", "smallint", "boolean", "double precision", "real", "bytea"):
            parts.append(ident)
        else:  # uuid, jsonb and anything new: PostgreSQL's own text output
            parts.append(sql.SQL("{}::text").format(ident))
    return sql.SQL(", ").join(parts)


def _order_by(columns: Sequence[Column], layout: Layout) -> sql.Composable:
    """The layout's order; text compared by bytes (COLLATE "C"), as Parquet and Polars compare strings."""
    types = {c.name: c.pg_type for c in columns}
    keys = []
    for name in layout.order:
        if name not in types:
            continue
        key = sql.Identifier(name)
        keys.append(sql.SQL('{} COLLATE "C"').format(key) if types[name] == "text" else key)
    return sql.SQL(", ").join(keys)


def old_chunks(conn: psycopg.Connection, older_than: datetime) -> list[Chunk]:
    """Chunks of audit_events that end at or before ``older_than``, oldest first."""
    rows = conn.execute(
        "SELECT c.chunk_schema, c.chunk_name, c.range_start, c.range_end "
        "FROM show_chunks('audit_events', older_than => %s) AS s(chunk) "
        "JOIN timescaledb_information.chunks c ON format('%%I.%%I', c.chunk_schema, c.chunk_name)::regclass = s.chunk "
        "WHERE c.hypertable_name = 'audit_events' ORDER BY c.range_start", (older_than,)).fetchall()
    return [Chunk(f"{s}.{t}", s, t, lo, hi) for s, t, lo, hi in rows]


def _chunk_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def day_slices(chunk: Chunk) -> list[tuple[date, datetime, datetime]]:
    """The chunk cut at UTC midnights: one archive file per (day, chunk) slice."""
    slices = []
    low = chunk.range_start.astimezone(UTC)
    end = chunk.range_end.astimezone(UTC)
    while low < end:
        midnight = datetime(low.year, low.month, low.day, tzinfo=UTC) + DAY
        high = min(midnight, end)
        slices.append((low.date(), low, high))
        low = high
    return slices


_KEY_HASH = sql.SQL("hashtextextended(event_id::text || '@' || (extract(epoch FROM \"timestamp\"))::text, 0)")
_STATS = sql.SQL(
    'SELECT count(*), coalesce(sum({h}), 0), min("timestamp"), max("timestamp"), '
    'coalesce(array_agg(DISTINCT event_type ORDER BY event_type), \'{{}}\') '
    'FROM audit_events WHERE "timestamp" >= %s AND "timestamp" < %s').format(h=_KEY_HASH)
_FINGERPRINT = sql.SQL('SELECT count(*), coalesce(sum({h}), 0) FROM audit_events '
                       'WHERE "timestamp" >= %s AND "timestamp" < %s').format(h=_KEY_HASH)


# -- the catalogue --------------------------------------------------------------------------------

def files(conn: psycopg.Connection, *, states: Sequence[str] = LIVE, start: datetime | None = None,
          end: datetime | None = None, chunk_name: str | None = None) -> list[ArchiveFile]:
    """Catalogue rows in ``states`` whose rows may fall in [start, end), oldest first."""
    with conn.cursor(row_factory=class_row(ArchiveFile)) as cur:
        return cur.execute(sql.SQL(
            "SELECT {} FROM log_archives WHERE state = ANY(%(states)s) "
            "AND (%(start)s::timestamptz IS NULL OR range_end > %(start)s) "
            "AND (%(end)s::timestamptz IS NULL OR range_start < %(end)s) "
            "AND (%(chunk)s::text IS NULL OR chunk_name = %(chunk)s) "
            "ORDER BY range_start, archive_id").format(_FILE_COLUMNS),
            {"states": list(states), "start": start, "end": end, "chunk": chunk_name}).fetchall()


def list_files(pool: ConnectionPool, **kwargs: Any) -> list[ArchiveFile]:
    with pool.connection() as conn:
        return files(conn, **kwargs)


def claim(conn: psycopg.Connection, day: date, low: datetime, high: datetime, chunk_name: str | None,
          columns: Sequence[Column], supersedes: int | None = None) -> tuple[int, str]:
    """Commit a pending row for a new file; returns its id and path."""
    with conn.transaction():
        archive_id = conn.execute(
            "INSERT INTO log_archives (path, day, range_start, range_end, chunk_name, columns, supersedes) "
            "VALUES ('pending:' || gen_random_uuid(), %s, %s, %s, %s, %s, %s) RETURNING archive_id",
            (day, low, high, chunk_name, [c.name for c in columns], supersedes)).fetchone()[0]
        path = f"year={day:%Y}/month={day:%m}/day={day:%d}/events-{low:%Y%m%dT%H%M%S}-{archive_id}.parquet"
        conn.execute("UPDATE log_archives SET path = %s WHERE archive_id = %s", (path, archive_id))
    return archive_id, path


def mark_verified(conn: psycopg.Connection, archive_id: int, *, rows: int, size: int, sha256: str,
                  min_time: datetime | None, max_time: datetime | None, event_types: Sequence[str],
                  fingerprint: int | None) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE log_archives SET state = 'verified', rows = %s, bytes = %s, sha256 = %s, min_time = %s, "
            "max_time = %s, event_types = %s, fingerprint = %s, verified_at = now() "
            "WHERE archive_id = %s AND state = 'pending'",
            (rows, size, sha256, min_time, max_time, list(event_types), fingerprint, archive_id))


def mark_failed(conn: psycopg.Connection, archive_ids: Sequence[int], note: str) -> None:
    with conn.transaction():
        conn.execute("UPDATE log_archives SET state = 'failed', note = %s WHERE archive_id = ANY(%s) "
                     "AND state IN ('pending', 'verified')", (note, list(archive_ids)))


def repair(conn: psycopg.Connection, store: ColdStore) -> int:
    """Clean up what an interrupted run left: abandoned attempts and files retention already let go."""
    repaired = 0
    for f in files(conn, states=("pending",)):
        store.remove(f.path)
        mark_failed(conn, [f.archive_id], "interrupted before the file was verified; removed")
        repaired += 1
    for f in files(conn, states=("failed", "superseded", "expired")):
        if store.remove(f.path):
            repaired += 1
    for f in files(conn, states=("verified",)):
        if f.supersedes is not None:
            # A retention rewrite interrupted before its commit: the file it replaces is still live.
            store.remove(f.path)
            mark_failed(conn, [f.archive_id], "rewrite interrupted before its commit; removed")
            repaired += 1
        elif f.chunk_name and not _chunk_exists(conn, f.chunk_name):
            # The chunk went outside the archiver (a manual drop_chunks): the file is the only copy.
            store.verify(f.path, rows=f.rows or 0, sha256=f.sha256 or "")
            with conn.transaction():
                conn.execute("UPDATE log_archives SET state = 'complete', completed_at = now(), "
                             "note = 'its chunk was dropped outside the archiver' WHERE archive_id = %s",
                             (f.archive_id,))
            repaired += 1
    return repaired


# -- one chunk ------------------------------------------------------------------------------------

def _export_slices(pool: ConnectionPool, catalogue: psycopg.Connection, store: ColdStore, chunk: Chunk,
                   columns: Sequence[Column], hook: Hook, batch_rows: int, layout: Layout) -> list[int]:
    """Write and verify one file per non-empty day slice of the chunk, from one consistent snapshot.

    PostgreSQL sorts each day into the layout's order, so Python holds one row group at a time.
    """
    schema = arrow_schema(columns, {"chunk": chunk.name})
    select = sql.SQL('SELECT {} FROM audit_events WHERE "timestamp" >= %s AND "timestamp" < %s '
                     'ORDER BY {}').format(_select_list(columns), _order_by(columns, layout))
    written: list[int] = []
    with pool.connection() as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            with conn.transaction():
                for day, low, high in day_slices(chunk):
                    rows, fingerprint, min_time, max_time, types = conn.execute(_STATS, (low, high)).fetchone()
                    if rows == 0:
                        continue
                    archive_id, path = claim(catalogue, day, low, high, chunk.name, columns)
                    hook("claimed")

                    def batches(low=low, high=high, name=f"aw_archive_{archive_id}") -> Iterator:
                        with conn.cursor(name=name) as cur:
                            cur.execute(select, (low, high))
                            while block := cur.fetchmany(batch_rows):
                                yield record_batch(columns, schema, block)

                    done = store.write(path, schema, batches(), hook=hook, layout=layout)
                    if done.rows != rows:
                        raise ArchiveCorrupt(f"exported {done.rows} rows of {chunk.name} for {day}, expected {rows}")
                    store.verify(path, rows=rows, sha256=done.sha256)
                    mark_verified(catalogue, archive_id, rows=rows, size=done.bytes, sha256=done.sha256,
                                  min_time=min_time, max_time=max_time, event_types=types, fingerprint=fingerprint)
                    hook("verified")
                    written.append(archive_id)
        finally:
            conn.isolation_level = None
    return written


def _drop(pool: ConnectionPool, chunk: Chunk, archived: Sequence[ArchiveFile], *, audit: Auditor,
          native: bool, hook: Hook) -> str | None:
    """Drop the chunk and complete its files in one transaction; returns why not, or None when done."""
    expected_rows = sum(f.rows or 0 for f in archived)
    with pool.connection() as conn, conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(chunk.schema, chunk.table)))
        conn.execute("LOCK TABLE legal_holds IN SHARE MODE")  # no hold may appear until we commit
        fingerprints = dict(conn.execute(
            "SELECT archive_id, fingerprint FROM log_archives WHERE archive_id = ANY(%s)",
            ([f.archive_id for f in archived],)).fetchall())
        rows, fingerprint = conn.execute(_FINGERPRINT, (chunk.range_start, chunk.range_end)).fetchone()
        if rows != expected_rows or fingerprint != sum(fingerprints.values()):
            return f"the chunk changed since it was exported ({rows} rows now, {expected_rows} archived)"
        holds = legal_hold.active(conn)
        if holds and _held(conn, chunk, holds):
            return "held"
        if not native:
            stale = conn.execute(
                "SELECT count(*) FROM rollup_invalidations WHERE low < %s AND high >= %s",
                (chunk.range_end, chunk.range_start)).fetchone()[0]
            mark = watermarks.read(conn, "rollup", "events_1h")
            if stale or (rows and (mark is None or mark < chunk.range_end)):
                return "the rollups have not yet materialised this range; run `auditwatch storage refresh`"
        dropped = conn.execute("SELECT drop_chunks('audit_events', older_than => %s, newer_than => %s)",
                               (chunk.range_end, chunk.range_start)).fetchall()
        names = {r[0] for r in dropped}
        if names != {chunk.name}:
            raise StorageError(f"drop_chunks over {chunk.name}'s range dropped {sorted(names)}; rolled back")
        conn.execute("UPDATE log_archives SET state = 'complete', completed_at = now() "
                     "WHERE archive_id = ANY(%s) AND state = 'verified'", ([f.archive_id for f in archived],))
        # A sender last seen before the range's end has nothing left to point at here (the absence rule walks
        # the hot table); without this, the table would keep a row for every sender ever named.
        conn.execute("DELETE FROM source_last_seen WHERE last_seen < %s", (chunk.range_end,))
        # Tamper evidence: the range left the hot table lawfully; verify reads it back from the files.
        # Its sealed events_archived record is stored with it, naming the removal's link.
        removals.record_removal(conn, chunk.range_start, chunk.range_end, reason="archive", rows=rows,
                                 removed_by="archiver", archive_ref=chunk.name, record=audit("events_archived", {
                                     "chunk": chunk.name, "range_start": chunk.range_start.isoformat(),
                                     "range_end": chunk.range_end.isoformat(), "rows": rows,
                                     "files": [{"archive_id": f.archive_id, "path": f.path, "rows": f.rows,
                                                "sha256": f.sha256} for f in archived]}, chunk.name))
        hook("drop_uncommitted")
    return None


def _held(conn: psycopg.Connection, chunk: Chunk, holds: Sequence[legal_hold.LegalHold]) -> bool:
    where, params = legal_hold.predicate(holds)
    statement = sql.SQL('SELECT EXISTS (SELECT 1 FROM audit_events WHERE "timestamp" >= %s AND "timestamp" < %s '
                        'AND {})').format(where)
    return conn.execute(statement, [chunk.range_start, chunk.range_end, *params]).fetchone()[0]


def _materialise_rollups(pool: ConnectionPool, chunks: Sequence[Chunk], *, now: datetime, native: bool) -> None:
    """Make sure the rollups hold these ranges before their raw rows leave the hypertable."""
    if not chunks:
        return
    if native:
        with pool.connection() as conn:
            conn.autocommit = True
            try:
                for chunk in chunks:
                    for minutes, hours in rollups.PAIRS:
                        for view in (minutes, hours):
                            conn.execute("CALL refresh_continuous_aggregate(%s, %s::timestamptz, %s::timestamptz)",
                                         (view, chunk.range_start, chunk.range_end))
            finally:
                conn.autocommit = False
        return
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany("INSERT INTO rollup_invalidations (low, high) VALUES (%s, %s)",
                        [(c.range_start, c.range_end - timedelta(microseconds=1)) for c in chunks])
    rollups.refresh(pool, now=now, span=DAY)


# -- the run --------------------------------------------------------------------------------------

def eligible(pool: ConnectionPool, *, now: datetime, hot_days: int) -> list[Chunk]:
    """Chunks past hot retention: what a run would archive (held ones included)."""
    with pool.connection() as conn:
        return old_chunks(conn, now - timedelta(days=hot_days))


@contextmanager
def exclusive(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """An autocommit connection holding the archive lock: one archive or retention run at a time."""
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            with advisory_lock(conn, ARCHIVE_LOCK, wait=False) as taken:
                if not taken:
                    raise ArchiveBusy("another archive or retention run is in progress; try again when it ends")
                yield conn
        finally:
            conn.autocommit = False


def run(pool: ConnectionPool, store: ColdStore, *, now: datetime, hot_days: int, audit: Auditor,
        hook: Hook = _no_hook, progress: Callable[[Chunk, str], None] | None = None,
        batch_rows: int = 50_000, layout: Layout = DEFAULT_LAYOUT) -> ArchiveResult:
    """Archive every chunk older than ``hot_days`` that no legal hold keeps; safe to rerun after a crash."""
    result = ArchiveResult()
    native = pool_edition(pool) == "timescale"
    with exclusive(pool) as catalogue:
        result.repaired = repair(catalogue, store)
        columns = table_columns(catalogue)
        chunks = old_chunks(catalogue, now - timedelta(days=hot_days))
        holds = legal_hold.active(catalogue)
        todo = []
        for chunk in chunks:
            if holds and _held(catalogue, chunk, holds):
                result.held.append(chunk.name)
                if progress:
                    progress(chunk, "held")
            else:
                todo.append(chunk)
        _materialise_rollups(pool, todo, now=now, native=native)
        for chunk in todo:
            outcome = _archive_chunk(pool, catalogue, store, chunk, columns, audit=audit, native=native,
                                     hook=hook, batch_rows=batch_rows, layout=layout, result=result)
            if progress:
                progress(chunk, outcome)
    return result


def _archive_chunk(pool, catalogue, store, chunk, columns, *, audit, native, hook, batch_rows, layout,
                   result) -> str:
    previous = files(catalogue, states=("verified",), chunk_name=chunk.name)
    try:
        for f in previous:
            store.verify(f.path, rows=f.rows or 0, sha256=f.sha256 or "")
    except ArchiveCorrupt as exc:
        log.warning("re-exporting %s: %s", chunk.name, exc)
        for f in previous:
            store.remove(f.path)
        mark_failed(catalogue, [f.archive_id for f in previous], f"re-exported: {exc}")
        previous = []
    for attempt in range(2):
        if not previous or attempt:
            _export_slices(pool, catalogue, store, chunk, columns, hook, batch_rows, layout)
        ready = files(catalogue, states=("verified",), chunk_name=chunk.name)
        hook("before_drop")
        why = _drop(pool, chunk, ready, audit=audit, native=native, hook=hook)
        if why is None:
            hook("dropped")
            result.archived.append(chunk.name)
            result.files.extend(files(catalogue, states=("complete",), chunk_name=chunk.name))
            log.info("archived %s: %d files, %d rows", chunk.name, len(ready), sum(f.rows or 0 for f in ready))
            return "archived"
        if why == "held":
            result.held.append(chunk.name)
            return "held"
        if why.startswith("the chunk changed") and attempt == 0:
            # A backfill landed in the chunk after the export: throw the files away and export again.
            for f in ready:
                store.remove(f.path)
            mark_failed(catalogue, [f.archive_id for f in ready], why)
            previous = []
            continue
        result.skipped.append((chunk.name, why))
        log.warning("not archiving %s: %s", chunk.name, why)
        return "skipped"
    return "skipped"


# -- status ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArchiveSummary:
    files_by_state: dict[str, int]
    live_files: int
    live_rows: int
    live_bytes: int
    oldest_day: date | None
    newest_day: date | None
    last_completed_at: datetime | None
    active_holds: int


def summary(pool: ConnectionPool) -> ArchiveSummary:
    """What the cold tier holds, for `auditwatch archive status` and GET /api/v1/archive."""
    with pool.connection() as conn:
        by_state = dict(conn.execute("SELECT state, count(*) FROM log_archives GROUP BY state").fetchall())
        files_, rows, size, oldest, newest, last = conn.execute(
            "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(bytes), 0), min(day), max(day), "
            "max(completed_at) FROM log_archives WHERE state IN ('verified', 'complete')").fetchone()
        holds = conn.execute("SELECT count(*) FROM legal_holds WHERE released_at IS NULL").fetchone()[0]
    return ArchiveSummary(by_state, files_, int(rows), int(size), oldest, newest, last, holds)
