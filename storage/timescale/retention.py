"""Retention: hot for ``hot_days`` (then archived), cold for ``cold_years`` per event type (then deleted).

The policy lives in the ``retention`` setting (``PUT /api/v1/retention``). Cold expiry works on
whole UTC days: on a day file whose event types expire at different times, the expired rows are
removed by rewriting the file without them (a new catalogue row that supersedes the old one), so
types with longer retention survive. Rows a legal hold matches are never removed. Each deletion
or rewrite is audited (``events_expired``) in the transaction that changes the catalogue; the old
file is removed from storage only after that commit (a rerun removes any a crash left behind).

Rollups are not pruned by cold expiry: they hold counts, not events, and keep long-range trends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg
from psycopg_pool import ConnectionPool

from storage.cold.errors import ArchiveCorrupt
from storage.cold.layout import DEFAULT_LAYOUT
from storage.cold.schema import Column
from storage.cold.store import ColdStore, Hook, _no_hook
from storage.timescale import archive, legal_hold, removals, self_audit
from storage.timescale.archive import ArchiveBusy, ArchiveFile, ArchiveResult
from storage.timescale.self_audit import Auditor

log = logging.getLogger(__name__)

SETTING = "retention"
DEFAULT_HOT_DAYS = 90
DEFAULT_COLD_YEARS = 7


@dataclass(frozen=True)
class RetentionPolicy:
    hot_days: int = DEFAULT_HOT_DAYS
    cold_years: int = DEFAULT_COLD_YEARS
    cold_years_by_type: Mapping[str, int] = field(default_factory=dict)

    def years_for(self, event_type: str) -> int:
        return self.cold_years_by_type.get(event_type, self.cold_years)

    def cutoff(self, event_type: str, now: datetime) -> datetime:
        """Rows of this type before this UTC midnight have outlived their cold retention."""
        return _midnight(_years_before(now, self.years_for(event_type)))


def _years_before(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February in a year that has none
        return moment.replace(year=moment.year - years, day=28)


def _midnight(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def policy_of(value: Mapping[str, Any] | None) -> RetentionPolicy:
    value = value or {}
    return RetentionPolicy(hot_days=int(value.get("hot_days", DEFAULT_HOT_DAYS)),
                           cold_years=int(value.get("cold_years", DEFAULT_COLD_YEARS)),
                           cold_years_by_type={str(k): int(v) for k, v in
                                               (value.get("cold_years_by_type") or {}).items()})


def load_policy(conn: psycopg.Connection) -> RetentionPolicy:
    row = conn.execute("SELECT value FROM settings WHERE key = %s", (SETTING,)).fetchone()
    return policy_of(row[0] if row else None)


# -- planning -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileAction:
    file: ArchiveFile
    action: str  # 'delete' | 'rewrite' | 'held' (expired rows all kept by holds) | 'corrupt'
    expired_by_type: dict[str, int]  # rows that will go, per event type
    held_rows: int  # expired rows a legal hold keeps
    kept_rows: int  # rows the file keeps (not expired, or held)
    hold_ids: tuple[int, ...] = ()
    problem: str | None = None

    @property
    def expired_rows(self) -> int:
        return sum(self.expired_by_type.values())


@dataclass
class RetentionPlan:
    now: datetime
    policy: RetentionPolicy
    actions: list[FileAction]

    @property
    def rows(self) -> int:
        return sum(a.expired_rows for a in self.actions if a.action in ("delete", "rewrite"))


def _candidates(files: list[ArchiveFile], policy: RetentionPolicy, now: datetime) -> list[ArchiveFile]:
    """Files holding at least one event type whose cutoff is past the file's start (catalogue only)."""
    return [f for f in files if any(f.range_start < policy.cutoff(t, now) for t in f.event_types)]


def _expired_expr(types: list[str], policy: RetentionPolicy, now: datetime) -> pl.Expr:
    terms = [(pl.col("event_type") == t) & (pl.col("timestamp") < policy.cutoff(t, now)) for t in types]
    return pl.any_horizontal(terms) if terms else pl.lit(False)


def _assess(store: ColdStore, f: ArchiveFile, policy: RetentionPolicy, now: datetime,
            holds: list[legal_hold.LegalHold]) -> tuple[FileAction, pl.DataFrame | None]:
    try:
        store.verify(f.path, rows=f.rows or 0, sha256=f.sha256 or "")
    except ArchiveCorrupt as exc:
        return FileAction(f, "corrupt", {}, 0, f.rows or 0, problem=str(exc)), None
    frame = pl.from_arrow(store.read(f.path))
    expired = _expired_expr(f.event_types, policy, now)
    held = legal_hold.holds_expr(holds)
    marked = frame.with_columns(_expired=expired, _held=held)
    going = marked.filter(pl.col("_expired") & ~pl.col("_held"))
    by_type = dict(going.group_by("event_type").len().iter_rows())
    held_rows = marked.filter(pl.col("_expired") & pl.col("_held")).height
    kept = frame.height - going.height
    hold_ids = tuple(h.hold_id for h in holds)
    if going.height == 0:
        return FileAction(f, "held", {}, held_rows, kept, hold_ids), None
    action = "delete" if kept == 0 else "rewrite"
    remaining = marked.filter(~(pl.col("_expired") & ~pl.col("_held"))).drop("_expired", "_held")
    return FileAction(f, action, by_type, held_rows, kept, hold_ids), remaining


def plan(pool: ConnectionPool, store: ColdStore, *, now: datetime,
         policy: RetentionPolicy | None = None) -> RetentionPlan:
    """What a retention run would delete now (the dry run): nothing is changed."""
    with pool.connection() as conn:
        policy = policy or load_policy(conn)
        candidates = _candidates(archive.files(conn, states=("complete",)), policy, now)
        holds = legal_hold.active(conn)
    actions = [a for a, _ in (_assess(store, f, policy, now, holds) for f in candidates)]
    return RetentionPlan(now, policy, actions)


# -- applying -------------------------------------------------------------------------------------

@dataclass
class RetentionResult:
    deleted: list[FileAction] = field(default_factory=list)
    rewritten: list[tuple[FileAction, int]] = field(default_factory=list)  # (action, new archive_id)
    held: list[FileAction] = field(default_factory=list)
    problems: list[FileAction] = field(default_factory=list)
    repaired: int = 0

    @property
    def rows(self) -> int:
        return sum(a.expired_rows for a in self.deleted) + sum(a.expired_rows for a, _ in self.rewritten)


def _holds_changed(conn: psycopg.Connection, action: FileAction) -> bool:
    conn.execute("LOCK TABLE legal_holds IN SHARE MODE")  # no hold may appear until we commit
    return tuple(h.hold_id for h in legal_hold.active(conn)) != action.hold_ids


def _audit_metadata(action: FileAction, **extra: Any) -> dict[str, Any]:
    f = action.file
    return {"archive_id": f.archive_id, "path": f.path, "day": f.day.isoformat(), "action": action.action,
            "rows_removed": action.expired_rows, "rows_kept": action.kept_rows,
            # A list, not a map keyed by type: R9 would redact a key such as "password_reset" or "auth_failure".
            "by_type": [{"event_type": t, "rows": n} for t, n in sorted(action.expired_by_type.items())],
            "held_rows": action.held_rows, "sha256": f.sha256, **extra}


def _delete(pool: ConnectionPool, store: ColdStore, action: FileAction, audit: Auditor, hook: Hook) -> bool:
    with pool.connection() as conn, conn.transaction():
        if _holds_changed(conn, action):
            return False
        conn.execute("UPDATE log_archives SET state = 'expired', deleted_at = now() "
                     "WHERE archive_id = %s AND state = 'complete'", (action.file.archive_id,))
        removals.record_removal(conn, action.file.range_start, action.file.range_end, reason="retention",
                                 rows=action.file.rows or 0, removed_by="retention", archive_ref=action.file.path,
                                 record=audit("events_expired", _audit_metadata(action), action.file.path))
    hook("expired_committed")
    store.remove(action.file.path)
    return True


def _rewrite(pool: ConnectionPool, store: ColdStore, action: FileAction, remaining: pl.DataFrame,
             audit: Auditor, hook: Hook) -> int | None:
    old = action.file
    table = store.read(old.path)  # for its schema and metadata, which the new file keeps
    order = [name for name in DEFAULT_LAYOUT.order if name in remaining.columns]
    kept = remaining.sort(order).to_arrow().cast(table.schema)  # files written before a layout change move to it
    columns = [Column(name, "") for name in old.columns]
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            new_id, path = archive.claim(conn, old.day, old.range_start, old.range_end, old.chunk_name, columns,
                                         supersedes=old.archive_id)
            done = store.write(path, table.schema, kept.to_batches(), hook=hook)
            store.verify(path, rows=kept.num_rows, sha256=done.sha256)
            times = remaining.get_column("timestamp")
            archive.mark_verified(conn, new_id, rows=kept.num_rows, size=done.bytes, sha256=done.sha256,
                                  min_time=times.min(), max_time=times.max(),
                                  event_types=sorted(remaining.get_column("event_type").unique().to_list()),
                                  fingerprint=None)
            hook("rewrite_verified")
        finally:
            conn.autocommit = False
        with conn.transaction():
            if _holds_changed(conn, action):
                conn.execute("UPDATE log_archives SET state = 'failed', note = 'legal holds changed during "
                             "the rewrite; retried on the next run' WHERE archive_id = %s", (new_id,))
                store.remove(path)
                return None
            conn.execute("UPDATE log_archives SET state = 'complete', completed_at = now() WHERE archive_id = %s",
                         (new_id,))
            conn.execute("UPDATE log_archives SET state = 'superseded', superseded_by = %s, deleted_at = now() "
                         "WHERE archive_id = %s AND state = 'complete'", (new_id, old.archive_id))
            removals.record_removal(conn, old.range_start, old.range_end, reason="retention",
                                     rows=(old.rows or 0) - kept.num_rows, removed_by="retention",
                                     archive_ref=old.path, record=audit("events_expired", _audit_metadata(
                                         action, new_archive_id=new_id, new_path=path, new_sha256=done.sha256),
                                         old.path))
    hook("rewrite_committed")
    store.remove(old.path)
    return new_id


def apply(pool: ConnectionPool, store: ColdStore, *, now: datetime, audit: Auditor,
          policy: RetentionPolicy | None = None, hook: Hook = _no_hook,
          progress: Callable[[FileAction], None] | None = None) -> RetentionResult:
    """Delete (or rewrite without) archived rows past their cold retention, sparing held rows."""
    result = RetentionResult()
    with archive.exclusive(pool) as lock:
        result.repaired = archive.repair(lock, store)
        policy = policy or load_policy(lock)
        candidates = _candidates(archive.files(lock, states=("complete",)), policy, now)
        holds = legal_hold.active(lock)
        for f in candidates:
            action, remaining = _assess(store, f, policy, now, holds)
            if action.action == "delete":
                if _delete(pool, store, action, audit, hook):
                    result.deleted.append(action)
                else:
                    result.problems.append(action)
            elif action.action == "rewrite" and remaining is not None:
                new_id = _rewrite(pool, store, action, remaining, audit, hook)
                if new_id is None:
                    result.problems.append(action)
                else:
                    result.rewritten.append((action, new_id))
            elif action.action == "held":
                result.held.append(action)
            else:
                log.error("retention skipped %s: %s", f.path, action.problem)
                result.problems.append(action)
            if progress:
                progress(action)
    return result


# -- scheduled jobs -------------------------------------------------------------------------------

def archive_job(pool: ConnectionPool, archive_root: str,
                archive_options: Mapping[str, str] | None = None) -> ArchiveResult | None:
    """Hot retention: archive chunks past ``hot_days`` (runs a few times a day; idempotent)."""
    now = datetime.now(UTC)
    with pool.connection() as conn:
        policy = load_policy(conn)
    try:
        result = archive.run(pool, ColdStore(archive_root, options=archive_options), now=now, hot_days=policy.hot_days,
                             audit=self_audit.auditor("worker", lambda: datetime.now(UTC)),
                             progress=lambda chunk, outcome: log.info("archive: %s %s", chunk.name, outcome))
    except ArchiveBusy as exc:
        log.info("archive job: %s", exc)
        return None
    log.info("archive job: %d chunks archived (%d rows), %d held, %d skipped, %d repaired",
             len(result.archived), result.rows, len(result.held), len(result.skipped), result.repaired)
    return result


def expire_job(pool: ConnectionPool, archive_root: str,
               archive_options: Mapping[str, str] | None = None) -> RetentionResult | None:
    """Cold retention: delete archived rows past their retention (idempotent)."""
    try:
        result = apply(pool, ColdStore(archive_root, options=archive_options), now=datetime.now(UTC),
                       audit=self_audit.auditor("worker", lambda: datetime.now(UTC)),
                       progress=lambda a: log.info("retention: %s %s", a.file.path, a.action))
    except ArchiveBusy as exc:
        log.info("retention job: %s", exc)
        return None
    log.info("retention job: %d files deleted, %d rewritten (%d rows), %d held, %d problems",
             len(result.deleted), len(result.rewritten), result.rows, len(result.held), len(result.problems))
    return result
