"""Job watermarks: how far a window job has finished, one reader and one writer for every job.

A watermark only moves forward (``greatest``), so two runs racing, or a retry of an older
window, can never rewind it. Two tables hold them, by family (migrations 0002 and 0007):
``rollup_watermarks`` for the rollup refresh (``events_1m``, ``events_1h``) and
``detector_state`` for the scoring jobs (``score:<detector>``); ``score_invalidations`` (0013) holds
the ranges written behind the scoring jobs, for them to score again. The alert evaluator's
``alert_rule_runs`` is a per-rule last-run record with its error, not a window mark, and
stays with the alerts state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

Family = Literal["rollup", "job"]

# family -> (table, key column, timestamp-of-change column)
_TABLES: dict[str, tuple[str, str, str]] = {
    "rollup": ("rollup_watermarks", "rollup", "refreshed_at"),
    "job": ("detector_state", "job", "updated_at"),
}


def _table(family: Family) -> tuple[str, str, str]:
    try:
        return _TABLES[family]
    except KeyError:
        raise ValueError(f"unknown watermark family {family!r}; use one of {sorted(_TABLES)}") from None


def read(conn: psycopg.Connection, family: Family, name: str) -> datetime | None:
    """The watermark of ``name`` (a rollup or job), or None before its first run."""
    table, key, _ = _table(family)
    row = conn.execute(sql.SQL("SELECT watermark FROM {} WHERE {} = %s").format(
        sql.Identifier(table), sql.Identifier(key)), (name,)).fetchone()
    return row[0].astimezone(UTC) if row and row[0] is not None else None


def read_all(conn: psycopg.Connection, family: Family) -> dict[str, datetime]:
    """Every watermark of a family, by name."""
    table, key, _ = _table(family)
    rows = conn.execute(sql.SQL("SELECT {}, watermark FROM {} WHERE watermark IS NOT NULL").format(
        sql.Identifier(key), sql.Identifier(table))).fetchall()
    return {name: mark.astimezone(UTC) for name, mark in rows}


def advance(conn: psycopg.Connection, family: Family, name: str, value: datetime) -> None:
    """Move ``name``'s watermark forward to ``value`` (never back), in the caller's transaction."""
    table, key, changed = _table(family)
    conn.execute(sql.SQL(
        "INSERT INTO {table} ({key}, watermark) VALUES (%s, %s) ON CONFLICT ({key}) DO UPDATE "
        "SET watermark = greatest({table}.watermark, EXCLUDED.watermark), {changed} = now()").format(
        table=sql.Identifier(table), key=sql.Identifier(key), changed=sql.Identifier(changed)), (name, value))


def job_watermark(pool: ConnectionPool, job: str) -> datetime | None:
    """A scoring job's watermark (``score:<detector>``)."""
    with pool.connection() as conn:
        return read(conn, "job", job)


def advance_job(pool: ConnectionPool, job: str, value: datetime) -> None:
    """Move a scoring job's watermark forward (never back: two runs racing cannot rewind it)."""
    with pool.connection() as conn:
        advance(conn, "job", job, value)


def claim_unscored(pool: ConnectionPool, *, settled_before: datetime) -> list[tuple[datetime, datetime]]:
    """The ranges of events written behind the scoring jobs (backfills), claimed (deleted) for rescoring.

    Nothing is claimed while a backfill is still arriving (a range noted after ``settled_before``):
    history is scored once, when it is all there, not hour by hour against a model of its first hour.
    """
    with pool.connection() as conn, conn.transaction():
        conn.execute("LOCK TABLE score_invalidations IN EXCLUSIVE MODE")
        newest = conn.execute("SELECT max(noted_at) FROM score_invalidations").fetchone()[0]
        if newest is None or newest >= settled_before:
            return []
        rows = conn.execute("DELETE FROM score_invalidations RETURNING low, high").fetchall()
    return [(low.astimezone(UTC), high.astimezone(UTC)) for low, high in rows]


def unclaim(pool: ConnectionPool, ranges: list[tuple[datetime, datetime]]) -> None:
    """Put claimed ranges back (the scoring of them failed), so a later run scores them."""
    if ranges:
        with pool.connection() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO score_invalidations (low, high) VALUES (%s, %s)", ranges)
