"""The store of generated compliance reports (migration 0016): one row per run, with its hashes.

A report's row commits with its ``report_generated`` self-audit record, so there is never a stored
report without the record of who generated it, nor a record of a report that was not stored.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.events import EventRecord
from storage.timescale import self_audit
from storage.timescale.db import where


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) a generated file is stored with, and checked against before it is served."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()

@dataclass(frozen=True)
class StoredReport:
    report_id: uuid.UUID
    name: str
    version: int
    period_start: datetime
    period_end: datetime
    scope: str
    parameters: dict[str, Any]
    figures: dict[str, Any]
    files: dict[str, str]
    sha256: str
    generated_by: str
    generated_at: datetime
    location: str | None


_NAMES = ("report_id", "name", "version", "period_start", "period_end", "scope", "parameters", "figures", "files",
          "sha256", "generated_by", "generated_at", "location")
_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, _NAMES))
_INSERT = sql.SQL("INSERT INTO generated_reports ({}) VALUES ({})").format(
    _COLUMNS, sql.SQL(", ").join(sql.Placeholder() * len(_NAMES)))
_SELECT = sql.SQL("SELECT {} FROM generated_reports").format(_COLUMNS)


def save(pool: ConnectionPool, report: StoredReport, record: EventRecord) -> None:
    """Store the report's row and its self-audit ``record`` in one transaction."""
    with pool.connection() as conn, conn.transaction():
        conn.execute(
            _INSERT,
            (report.report_id, report.name, report.version, report.period_start, report.period_end, report.scope,
             Jsonb(report.parameters), Jsonb(report.figures), Jsonb(report.files), report.sha256,
             report.generated_by, report.generated_at, report.location))
        self_audit.store(conn, record)


def history(pool: ConnectionPool, *, name: str | None = None, limit: int = 100) -> list[StoredReport]:
    """Generated reports, newest first (of one report when ``name`` is given)."""
    with pool.connection() as conn, conn.cursor(row_factory=class_row(StoredReport)) as cur:
        w = where().eq("name", name)
        return cur.execute(_SELECT + w.sql() + sql.SQL(" ORDER BY generated_at DESC, report_id LIMIT %s"),
                           [*w.params, limit]).fetchall()


def get(pool: ConnectionPool, report_id: uuid.UUID) -> StoredReport | None:
    with pool.connection() as conn, conn.cursor(row_factory=class_row(StoredReport)) as cur:
        return cur.execute(_SELECT + sql.SQL(" WHERE report_id = %s"), (report_id,)).fetchone()
