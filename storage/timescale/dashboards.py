"""Saved dashboards: per-user layouts, shared read-only with named principals or everyone.

Creating, saving and deleting take ``audit(saved) -> record``: the change's config_change record is stored in
the same transaction, so a change and its record commit together or not at all."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.errors import StorageError
from storage.events import EventRecord
from storage.timescale import self_audit

EVERYONE = "*"


class DashboardConflict(StorageError):
    """The dashboard changed (or a name is taken) since it was read."""


@dataclass(frozen=True)
class SavedDashboard:
    dashboard_id: uuid.UUID
    owner: str
    name: str
    config: dict[str, Any]
    shared_with: tuple[str, ...]
    version: int
    created_at: datetime
    updated_at: datetime

    def readable_by(self, principal: str) -> bool:
        return principal == self.owner or EVERYONE in self.shared_with or principal in self.shared_with

    def writable_by(self, principal: str) -> bool:
        return principal == self.owner


_COLUMNS = sql.SQL("dashboard_id, owner, name, config, shared_with, version, created_at, updated_at")


def _row(row: tuple) -> SavedDashboard:
    return SavedDashboard(row[0], row[1], row[2], row[3], tuple(row[4]), row[5], row[6], row[7])


Audit = Callable[["SavedDashboard"], EventRecord]  # the change's audit record, stored in its transaction


def _audited(conn: psycopg.Connection, row: tuple | None, audit: Audit | None) -> tuple | None:
    if row is not None and audit is not None:
        self_audit.store(conn, audit(_row(row)))
    return row


def create(pool: ConnectionPool, *, owner: str, name: str, config: dict[str, Any],
           shared_with: tuple[str, ...] = (), audit: Audit | None = None) -> SavedDashboard:
    """A new dashboard for ``owner``; a name the owner already uses is a conflict."""
    try:
        with pool.connection() as conn, conn.transaction():
            row = _audited(conn, conn.execute(
                sql.SQL("INSERT INTO dashboards (owner, name, config, shared_with) VALUES (%s, %s, %s, %s) "
                        "RETURNING {}").format(_COLUMNS),
                (owner, name, Jsonb(config), list(shared_with)),
            ).fetchone(), audit)
    except psycopg.errors.UniqueViolation:
        raise DashboardConflict(f"you already have a dashboard named {name!r}; choose another name") from None
    return _row(row)


def get(pool: ConnectionPool, dashboard_id: uuid.UUID) -> SavedDashboard | None:
    with pool.connection() as conn:
        row = conn.execute(sql.SQL("SELECT {} FROM dashboards WHERE dashboard_id = %s").format(_COLUMNS),
                           (dashboard_id,)).fetchone()
    return _row(row) if row else None


def visible_to(pool: ConnectionPool, principal: str) -> list[SavedDashboard]:
    """The principal's own dashboards, then those shared with them, newest first."""
    with pool.connection() as conn:
        rows = conn.execute(
            sql.SQL("SELECT {} FROM dashboards WHERE owner = %s OR shared_with && %s::text[] "
                    "ORDER BY owner = %s DESC, updated_at DESC, name LIMIT 500").format(_COLUMNS),
            (principal, [principal, EVERYONE], principal),
        ).fetchall()
    return [_row(r) for r in rows]


def save(pool: ConnectionPool, dashboard_id: uuid.UUID, *, owner: str, version: int,
         name: str | None = None, config: dict[str, Any] | None = None,
         shared_with: tuple[str, ...] | None = None, audit: Audit | None = None) -> SavedDashboard:
    """Update what is given, if ``owner`` owns it and nobody saved since ``version``."""
    changes: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (("name", name), ("config", Jsonb(config) if config is not None else None),
                          ("shared_with", list(shared_with) if shared_with is not None else None)):
        if value is not None:
            changes.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    statement = sql.SQL(
        "UPDATE dashboards SET {changes}, version = version + 1, updated_at = now() "
        "WHERE dashboard_id = %s AND owner = %s AND version = %s RETURNING {cols}"
    ).format(changes=sql.SQL(", ").join([*changes, sql.SQL("owner = owner")]), cols=_COLUMNS)
    try:
        with pool.connection() as conn, conn.transaction():
            row = _audited(conn, conn.execute(statement, [*params, dashboard_id, owner, version]).fetchone(), audit)
    except psycopg.errors.UniqueViolation:
        raise DashboardConflict(f"you already have a dashboard named {name!r}; choose another name") from None
    if row is None:
        current = get(pool, dashboard_id)
        if current is None or current.owner != owner:
            raise DashboardConflict("no dashboard of yours has this id; it was deleted or belongs to someone else")
        raise DashboardConflict(f"this dashboard was saved elsewhere (version {current.version}, you had "
                                f"version {version}); reload it and apply your change again")
    return _row(row)


def delete(pool: ConnectionPool, dashboard_id: uuid.UUID, *, owner: str,
           audit: Audit | None = None) -> SavedDashboard | None:
    """Delete one of ``owner``'s dashboards; None if there is no such dashboard of theirs."""
    with pool.connection() as conn, conn.transaction():
        row = _audited(conn, conn.execute(
            sql.SQL("DELETE FROM dashboards WHERE dashboard_id = %s AND owner = %s RETURNING {}").format(_COLUMNS),
            (dashboard_id, owner),
        ).fetchone(), audit)
    return _row(row) if row else None
