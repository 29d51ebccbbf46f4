"""Legal holds: keep matching events where they are (no chunk drop, no archive deletion) until released.

A hold matches events by time range, user and/or case id (``metadata.case_id``); its criteria are
ANDed and at least one is required. Placing and releasing a hold are audited (``legal_hold``) in
the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.errors import HoldNotFound, LegalHoldError
from storage.timescale import self_audit
from storage.timescale.db import where
from storage.timescale.self_audit import Auditor


@dataclass(frozen=True)
class LegalHold:
    hold_id: int
    case_id: str | None
    user_id: str | None
    start_time: datetime | None
    end_time: datetime | None
    reason: str
    created_by: str
    created_at: datetime
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}

    def scope(self) -> str:
        """A short human description, for CLI tables and audit records."""
        parts = []
        if self.start_time or self.end_time:
            parts.append(f"time [{self.start_time.isoformat() if self.start_time else '-inf'}, "
                         f"{self.end_time.isoformat() if self.end_time else '+inf'})")
        if self.user_id:
            parts.append(f"user {self.user_id}")
        if self.case_id:
            parts.append(f"case {self.case_id}")
        return " and ".join(parts)

    def expr(self) -> pl.Expr:
        """The hold as a Polars predicate over archived rows (metadata is PostgreSQL's jsonb text)."""
        conditions = []
        if self.start_time is not None:
            conditions.append(pl.col("timestamp") >= self.start_time.astimezone(UTC))
        if self.end_time is not None:
            conditions.append(pl.col("timestamp") < self.end_time.astimezone(UTC))
        if self.user_id is not None:
            conditions.append(pl.col("user_id") == self.user_id)
        if self.case_id is not None:
            conditions.append(pl.col("metadata").str.json_path_match("$.case_id") == self.case_id)
        return pl.all_horizontal(conditions).fill_null(False)


_COLUMNS = sql.SQL("hold_id, case_id, user_id, start_time, end_time, reason, created_by, created_at, "
                   "released_at, released_by, release_reason")


def _validate(case_id: str | None, user_id: str | None, start_time: datetime | None, end_time: datetime | None,
              reason: str) -> None:
    if not any(v is not None for v in (case_id, user_id, start_time, end_time)):
        raise LegalHoldError("a hold on nothing: give a time range (start and/or end), a user id or a case id")
    for name, value in (("case id", case_id), ("user id", user_id)):
        if value is not None and not (1 <= len(value) <= 256 and value.strip()):
            raise LegalHoldError(f"the {name} must be 1 to 256 characters")
    for name, moment in (("start", start_time), ("end", end_time)):
        if moment is not None and moment.tzinfo is None:
            raise LegalHoldError(f"the {name} time needs a time zone, e.g. 2024-01-31T00:00:00Z")
    if start_time is not None and end_time is not None and start_time >= end_time:
        raise LegalHoldError("the hold's start time must be before its end time")
    if not reason or not reason.strip() or len(reason) > 2000:
        raise LegalHoldError("say why the hold is placed (a reason of 1 to 2000 characters)")


def place(pool: ConnectionPool, *, reason: str, created_by: str, audit: Auditor, case_id: str | None = None,
          user_id: str | None = None, start_time: datetime | None = None,
          end_time: datetime | None = None) -> LegalHold:
    """Place a hold and store its ``legal_hold`` audit record with it."""
    _validate(case_id, user_id, start_time, end_time, reason)
    with pool.connection() as conn, conn.transaction():
        with conn.cursor(row_factory=class_row(LegalHold)) as cur:
            hold = cur.execute(
                sql.SQL("INSERT INTO legal_holds (case_id, user_id, start_time, end_time, reason, created_by) "
                        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING {}").format(_COLUMNS),
                (case_id, user_id, start_time, end_time, reason, created_by)).fetchone()
        self_audit.store(conn, audit("legal_hold", {"action": "placed", **_summary(hold)}, str(hold.hold_id)))
    return hold


def release(pool: ConnectionPool, hold_id: int, *, released_by: str, reason: str, audit: Auditor) -> LegalHold:
    """Release an active hold (audited); the data it kept becomes subject to retention again."""
    if not reason or not reason.strip() or len(reason) > 2000:
        raise LegalHoldError("say why the hold is released (a reason of 1 to 2000 characters)")
    with pool.connection() as conn, conn.transaction():
        with conn.cursor(row_factory=class_row(LegalHold)) as cur:
            current = cur.execute(sql.SQL("SELECT {} FROM legal_holds WHERE hold_id = %s FOR UPDATE").format(
                _COLUMNS), (hold_id,)).fetchone()
            if current is None:
                raise HoldNotFound(f"no legal hold has id {hold_id}; see `auditwatch legal-hold list`")
            if current.released_at is not None:
                raise LegalHoldError(f"legal hold {hold_id} was already released at "
                                     f"{current.released_at.isoformat()} by {current.released_by}")
            hold = cur.execute(sql.SQL(
                "UPDATE legal_holds SET released_at = now(), released_by = %s, release_reason = %s "
                "WHERE hold_id = %s RETURNING {}").format(_COLUMNS), (released_by, reason, hold_id)).fetchone()
        self_audit.store(conn, audit("legal_hold", {"action": "released", "release_reason": reason,
                                                    **_summary(hold)}, str(hold_id)))
    return hold


def _summary(hold: LegalHold) -> dict[str, Any]:
    return {"hold_id": hold.hold_id, "case_id": hold.case_id, "user_id": hold.user_id,
            "start_time": hold.start_time.isoformat() if hold.start_time else None,
            "end_time": hold.end_time.isoformat() if hold.end_time else None, "reason": hold.reason}


def get(pool: ConnectionPool, hold_id: int) -> LegalHold | None:
    with pool.connection() as conn, conn.cursor(row_factory=class_row(LegalHold)) as cur:
        return cur.execute(sql.SQL("SELECT {} FROM legal_holds WHERE hold_id = %s").format(_COLUMNS),
                           (hold_id,)).fetchone()


def list_holds(pool: ConnectionPool, *, include_released: bool = False) -> list[LegalHold]:
    with pool.connection() as conn:
        return active(conn) if not include_released else _all(conn)


def _all(conn: psycopg.Connection) -> list[LegalHold]:
    with conn.cursor(row_factory=class_row(LegalHold)) as cur:
        return cur.execute(sql.SQL("SELECT {} FROM legal_holds ORDER BY hold_id").format(_COLUMNS)).fetchall()


def active(conn: psycopg.Connection) -> list[LegalHold]:
    """Holds in force now."""
    with conn.cursor(row_factory=class_row(LegalHold)) as cur:
        return cur.execute(sql.SQL("SELECT {} FROM legal_holds WHERE released_at IS NULL ORDER BY hold_id").format(
            _COLUMNS)).fetchall()


def predicate(holds: Sequence[LegalHold]) -> tuple[sql.Composable, list[Any]]:
    """A WHERE condition over audit_events true for rows any of ``holds`` keeps (FALSE for none)."""
    alternatives: list[sql.Composable] = []
    params: list[Any] = []
    for hold in holds:
        w = (where().ge("timestamp", hold.start_time).lt("timestamp", hold.end_time).eq("user_id", hold.user_id)
             .compare("metadata", "@>", Jsonb({"case_id": hold.case_id}) if hold.case_id is not None else None))
        alternatives.append(sql.SQL("(") + w.conditions() + sql.SQL(")"))
        params.extend(w.params)
    if not alternatives:
        return sql.SQL("FALSE"), params
    return sql.SQL("(") + sql.SQL(" OR ").join(alternatives) + sql.SQL(")"), params


def holds_expr(holds: Sequence[LegalHold]) -> pl.Expr:
    """True for archived rows any of ``holds`` keeps."""
    if not holds:
        return pl.lit(False)
    return pl.any_horizontal([h.expr() for h in holds])
