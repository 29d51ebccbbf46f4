"""Lawful erasure: the one path, besides retention and archiving, that removes a stored event, in either tier.

The erasure, its own audit record and the integrity tombstones commit in one transaction: there
is never an erasure without its ``event_erased`` record, nor a record of an erasure that did not
happen. The tombstones keep each erased row's leaf hash so its batch still verifies, and the
audit record (itself sealed) lists those leaves, so verify can tell erasure from tampering.

Archived rows are erased by rewriting their Parquet file without them (written, fsynced and
verified beside the old one first); the catalogue swaps the files, and the erasure is recorded as
a link of the removal chain, in the same transaction as the tombstones and the record. The old file
is deleted only after that commit (a crash leaves it ``superseded``, which the archiver's repair
removes), so no read path (hot, cold, export) returns an erased event once the call returns.

A legal hold in force over any of the event's rows refuses the erasure and names the hold.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import polars as pl
import psycopg
import pyarrow.compute as pc
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.cold.schema import Column
from storage.cold.store import ColdStore
from storage.errors import ErasureHeld
from storage.events import COLUMNS, EventRecord, Outcome
from storage.integrity import chain
from storage.timescale import archive, legal_hold
from storage.timescale.archive import ArchiveFile
from storage.timescale.legal_hold import LegalHold
from storage.timescale.queries import record_of
from storage.timescale.sealing import COLUMN_LIST, leaf_sql
from storage.timescale.writer import insert_rows_sealed, row_of

_READ = sql.SQL("SELECT {cols}, batch_seq, {leaf} FROM audit_events WHERE event_id = %s")
_ERASE = "SELECT integrity_erase(%s, %s, %s, %s, %s)"
_ERASE_ARCHIVED = "SELECT removal_id, removal_pos FROM integrity_erase_archived(%s, %s, %s, %s, %s, %s, %s, %s)"
_HELD = sql.SQL("SELECT EXISTS (SELECT 1 FROM audit_events WHERE event_id = %s AND {})")
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class Erased:
    row: tuple  # the COLUMNS values as read before the delete
    batch_seq: int | None
    leaf: bytes


@dataclass
class _ColdFile:
    """One archive file holding the event: its erased rows and the replacement written without them."""

    old: ArchiveFile
    erased: pl.DataFrame  # the rows to erase, as archived
    leaves: list[bytes]
    new_id: int | None = None
    new_path: str | None = None


def rows_to_erase(conn: psycopg.Connection, event_id: uuid.UUID) -> list[Erased]:
    """Every stored row with this event_id, with the batch and leaf it was sealed under."""
    return [Erased(tuple(r[:len(COLUMNS)]), r[len(COLUMNS)], bytes(r[len(COLUMNS) + 1]))
            for r in conn.execute(_READ.format(cols=COLUMN_LIST, leaf=leaf_sql()), (event_id,)).fetchall()]


def erase_rows(conn: psycopg.Connection, event_id: uuid.UUID, rows: Sequence[Erased], *, erasure_event_id: uuid.UUID,
               erased_by: str, erased_at: datetime) -> int:
    """Delete the rows read by ``rows_to_erase`` and keep their tombstones, through integrity_erase() (the
    application's database role may not DELETE an event itself). The erasure's event_erased record
    ``erasure_event_id`` must be stored in the same transaction: the database checks at commit."""
    return conn.execute(_ERASE, (event_id, [e.leaf for e in rows], erasure_event_id, erased_by,
                                 erased_at)).fetchone()[0]


# -- legal holds ----------------------------------------------------------------------------------

def _refuse_if_held(conn: psycopg.Connection, event_id: uuid.UUID, cold: Sequence[_ColdFile]) -> None:
    """Raise ErasureHeld naming every hold in force that keeps a row of the event (hot or archived)."""
    holding: list[LegalHold] = []
    for hold in legal_hold.active(conn):
        condition, params = legal_hold.predicate([hold])
        if conn.execute(_HELD.format(condition), [event_id, *params]).fetchone()[0] or any(
                f.erased.filter(hold.expr()).height for f in cold):
            holding.append(hold)
    if holding:
        named = "; ".join(f"legal hold {h.hold_id} ({h.scope()}: {h.reason}, placed by {h.created_by})"
                          for h in holding)
        raise ErasureHeld(f"event {event_id} is kept by {named}. Held evidence cannot be erased: release the "
                          "hold first (`auditwatch legal-hold release`) if the erasure is lawful despite it")


# -- the cold tier --------------------------------------------------------------------------------

def _cold_matches(conn: psycopg.Connection, store: ColdStore, event_id: uuid.UUID) -> list[_ColdFile]:
    """The complete archive files holding rows of the event (each scan pushed into its row groups)."""
    found = []
    wanted = pl.col("event_id") == str(event_id)
    for f in archive.files(conn, states=("complete",)):
        if store.scan([f.path]).filter(wanted).select(pl.len()).collect().item():
            table = store.read(f.path)
            erased = table.filter(pc.equal(table.column("event_id"), str(event_id)))
            found.append(_ColdFile(f, pl.from_arrow(erased), chain.leaves_from_arrow(erased)))
    return found


def _cold_record(row: dict[str, Any]) -> EventRecord:
    """An archived row back as the stored event (the archive's encoding: storage.cold.schema)."""
    return EventRecord(
        event_id=uuid.UUID(row["event_id"]), timestamp=row["timestamp"], event_type=row["event_type"],
        user_id=row["user_id"], outcome=Outcome(row["outcome"]), source=row["source"], source_ip=row["source_ip"],
        source_country=row["source_country"], source_asn=row["source_asn"], user_agent=row["user_agent"],
        resource_id=row["resource_id"], metadata=orjson.loads(row["metadata"]), received_at=row["received_at"])


def _write_replacement(catalogue: psycopg.Connection, store: ColdStore, f: _ColdFile, event_id: uuid.UUID) -> None:
    """Write and verify the file without the event beside the old one; its catalogue row stays 'verified'
    (invisible to readers) until the erasure commits."""
    old = f.old
    table = store.read(old.path)
    kept = table.filter(pc.invert(pc.equal(table.column("event_id"), str(event_id))))
    f.new_id, f.new_path = archive.claim(catalogue, old.day, old.range_start, old.range_end, old.chunk_name,
                                         [Column(name, "") for name in old.columns], supersedes=old.archive_id)
    done = store.write(f.new_path, table.schema, kept.to_batches())  # no batches: an empty file, still verifiable
    store.verify(f.new_path, rows=kept.num_rows, sha256=done.sha256)
    frame = pl.from_arrow(kept)
    times = frame.get_column("timestamp")
    archive.mark_verified(catalogue, f.new_id, rows=kept.num_rows, size=done.bytes, sha256=done.sha256,
                          min_time=times.min(), max_time=times.max(),
                          event_types=sorted(frame.get_column("event_type").unique().to_list()), fingerprint=None)


def _erase_archived(conn: psycopg.Connection, event_id: uuid.UUID, f: _ColdFile, record: EventRecord) -> dict:
    """Tombstones, the removal link and the catalogue swap for one file; returns the link for the record."""
    seqs = f.erased.get_column("batch_seq").to_list()
    times = [t if isinstance(t, datetime) else datetime.fromtimestamp(t / 1e6, UTC)
             for t in f.erased.get_column("timestamp").to_list()]
    _, pos = conn.execute(_ERASE_ARCHIVED, (event_id, seqs, times, f.leaves, record.event_id, record.user_id,
                                            record.timestamp, f.old.path)).fetchone()
    swapped = conn.execute("UPDATE log_archives SET state = 'superseded', superseded_by = %s, deleted_at = now() "
                           "WHERE archive_id = %s AND state = 'complete'", (f.new_id, f.old.archive_id)).rowcount
    if swapped != 1:
        raise archive.ArchiveBusy(f"archive file {f.old.path} changed during the erasure; try again")
    conn.execute("UPDATE log_archives SET state = 'complete', completed_at = now(), note = %s WHERE archive_id = %s",
                 (f"rewritten without erased event {event_id}", f.new_id))
    return {"chain_pos": pos, "lo": min(times).isoformat(), "hi": (max(times) + _MICRO).isoformat(),
            "reason": "erasure", "rows": len(times), "file": f.old.path, "new_file": f.new_path}


# -- the erasure ----------------------------------------------------------------------------------

def erase_event(pool: ConnectionPool, event_id: uuid.UUID, audit: Callable[[list[EventRecord]], EventRecord], *,
                store: ColdStore | None = None) -> list[EventRecord]:
    """Delete every stored row with this event_id, hot and (given ``store``) archived, and store
    ``audit(erased)`` with it.

    Returns what was erased; nothing is written when there was nothing to erase. Raises ErasureHeld
    when a legal hold keeps any of the rows, and ArchiveBusy when an archive or retention run holds
    the cold tier (try again when it ends).
    """
    if store is not None:
        with pool.connection() as conn:
            in_archive = bool(_cold_matches(conn, store, event_id))
        if in_archive:
            with archive.exclusive(pool) as catalogue:  # no archiver or retention run rewrites files meanwhile
                return _erase(pool, event_id, audit, catalogue, store)
    return _erase(pool, event_id, audit, None, None)


def _erase(pool: ConnectionPool, event_id: uuid.UUID, audit: Callable[[list[EventRecord]], EventRecord],
           catalogue: psycopg.Connection | None, store: ColdStore | None) -> list[EventRecord]:
    cold = _cold_matches(catalogue, store, event_id) if catalogue is not None and store is not None else []
    if cold:
        with pool.connection() as conn, conn.transaction():
            _refuse_if_held(conn, event_id, cold)  # before writing any file: a held event costs nothing
    try:
        for f in cold:
            _write_replacement(catalogue, store, f, event_id)  # type: ignore[arg-type]
        with pool.connection() as conn, conn.transaction():
            conn.execute("LOCK TABLE legal_holds IN SHARE MODE")  # no hold may appear until we commit
            _refuse_if_held(conn, event_id, cold)
            removed = rows_to_erase(conn, event_id)
            erased = [record_of(e.row) for e in removed]
            erased += [_cold_record(r) for f in cold for r in f.erased.iter_rows(named=True)]
            if not erased:
                return []
            record = audit(erased)
            leaves = [e.leaf.hex() for e in removed] + [leaf.hex() for f in cold for leaf in f.leaves]
            links = [_erase_archived(conn, event_id, f, record) for f in cold]
            integrity: dict[str, Any] = {"erased_leaves": leaves}  # rows never sealed have no tombstone: harmless
            if links:
                integrity["removals"] = links
            record = dataclasses.replace(record, metadata={**record.metadata, "integrity": integrity})
            if removed:
                erase_rows(conn, event_id, removed, erasure_event_id=record.event_id, erased_by=record.user_id,
                           erased_at=record.timestamp)
                times = [record_of(e.row).timestamp for e in removed]
                conn.execute("INSERT INTO rollup_invalidations (low, high) VALUES (%s, %s)", (min(times), max(times)))
            # Archived days keep their rollups (their raw rows are gone from the hot table, so a refresh
            # would zero them): an archived erasure records no invalidation.
            insert_rows_sealed(conn, [row_of(record)])
    except BaseException:
        for f in cold:  # the replacements were never published: throw them away
            if f.new_id is not None and catalogue is not None and store is not None:
                archive.mark_failed(catalogue, [f.new_id], "erasure rolled back; removed")
                store.remove(f.new_path or "")
        raise
    for f in cold:
        store.remove(f.old.path)  # type: ignore[union-attr]
    return erased

