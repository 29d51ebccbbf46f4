"""Connection pool and server facts (versions, TimescaleDB edition)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import DatabaseUnavailable, ExtensionMissing


@dataclass(frozen=True)
class ServerInfo:
    server_version: str
    timescaledb_version: str | None
    edition: str | None  # 'apache' or 'timescale' (community); None when the extension is absent
    database: str


def connect(url: str, **kwargs) -> psycopg.Connection:
    """One connection, with a message that says what to do when the server is not there."""
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to the database ({exc}). Start the embedded one with `auditwatch db up`, "
            "or check AUDITWATCH_DATABASE_URL."
        ) from exc


def _configure(conn: psycopg.Connection) -> None:
    # psycopg prepares a statement after a few runs, and PostgreSQL may then switch it to a
    # generic plan: one that cannot exclude chunks by the actual time range, or see that a
    # metadata value is rare (seen: 15 ms custom, 1.3 s generic). Plan every run for its values.
    conn.execute("SET plan_cache_mode = force_custom_plan")
    conn.commit()


def _configure_read_only(conn: psycopg.Connection) -> None:
    # Every transaction of the session starts read-only: a guard against accidents in an
    # analyst's notebook, not a security boundary (that is a database role with SELECT only).
    _configure(conn)
    conn.execute("SET default_transaction_read_only = on")
    conn.commit()


def open_pool(url: str, *, min_size: int = 2, max_size: int = 16, name: str = "auditwatch",
              read_only: bool = False) -> ConnectionPool:
    pool = ConnectionPool(url, min_size=min_size, max_size=max_size, name=name, open=False,
                          kwargs={"autocommit": False},
                          configure=_configure_read_only if read_only else _configure)
    try:
        pool.open(wait=True, timeout=15)
    except (psycopg.Error, PoolTimeout) as exc:
        pool.close()
        raise DatabaseUnavailable(
            f"cannot open a connection pool to the database ({exc}). Start the embedded one with "
            "`auditwatch db up`, or check AUDITWATCH_DATABASE_URL."
        ) from exc
    return pool


def server_info(conn: psycopg.Connection) -> ServerInfo:
    version = conn.execute("SHOW server_version").fetchone()[0]
    database = conn.execute("SELECT current_database()").fetchone()[0]
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if row is None:
        available = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        return ServerInfo(version, available[0] if available else None, edition_of(conn), database)
    return ServerInfo(version, row[0], edition_of(conn), database)


def edition_of(conn: psycopg.Connection) -> str | None:
    """'apache' or 'timescale' per ``timescaledb.license``; None without the extension."""
    try:
        with conn.transaction():
            return conn.execute("SHOW timescaledb.license").fetchone()[0]
    except psycopg.errors.UndefinedObject:
        return None


_EDITIONS: weakref.WeakKeyDictionary[ConnectionPool, str | None] = weakref.WeakKeyDictionary()


def pool_edition(pool: ConnectionPool) -> str | None:
    """The edition behind a pool, asked once: it cannot change while the server runs."""
    if pool not in _EDITIONS:
        with pool.connection() as conn:
            _EDITIONS[pool] = edition_of(conn)
    return _EDITIONS[pool]


def require_timescaledb(conn: psycopg.Connection) -> None:
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if available is None:
        raise ExtensionMissing(
            "the server has no timescaledb extension. Install TimescaleDB on it (and add it to "
            "shared_preload_libraries), or use the embedded database: unset AUDITWATCH_DATABASE_URL."
        )
