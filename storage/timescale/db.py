"""Connection pool, server facts, and the two helpers every table module shares: ``where()`` and
``advisory_lock()``."""

from __future__ import annotations

import functools
import select
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import psycopg
from psycopg import pq, sql
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import DatabaseUnavailable, ExtensionMissing, TooManyRows
from storage.timescale.circuit import GuardedPool


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


def _configure(conn: psycopg.Connection, *, statement_timeout: float | None = None,
               read_only: bool = False) -> None:
    # psycopg prepares a statement after a few runs, and PostgreSQL may then switch it to a
    # generic plan: one that cannot exclude chunks by the actual time range, or see that a
    # metadata value is rare (seen: 15 ms custom, 1.3 s generic). Plan every run for its values.
    conn.execute("SET plan_cache_mode = force_custom_plan")
    if statement_timeout:
        # The time budget of every statement on this pool's sessions (the role's own default otherwise):
        # a viewer's read that would scan the whole store is cancelled instead of holding a connection.
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{int(statement_timeout * 1000)}ms")))
    if read_only:
        # Every transaction of the session starts read-only: a guard against accidents in an
        # analyst's notebook, not a security boundary (that is a database role with SELECT only).
        conn.execute("SET default_transaction_read_only = on")
    conn.commit()


def open_pool(url: str, *, min_size: int = 2, max_size: int = 16, name: str = "auditwatch",
              read_only: bool = False, statement_timeout: float | None = None,
              timeout: float = 30.0, replica: bool = False) -> GuardedPool:
    """A pool that fails fast while the database is down and refills as soon as it is back
    (storage/timescale/circuit.py); ``statement_timeout`` (seconds) bounds each statement.

    ``replica``: a read replica's pool. It opens even while the replica is down (the process's writes do not
    need it); its reads then fail at once with ``ReplicaDown`` until the replica answers again."""
    pool = GuardedPool(url, min_size=min_size, max_size=max_size, name=name, open=False, timeout=timeout,
                       kwargs={"autocommit": False}, replica=replica,
                       configure=functools.partial(_configure, statement_timeout=statement_timeout,
                                                   read_only=read_only))
    if replica:
        pool.open(wait=False)
        if not pool.probe():
            pool.trip("the replica did not answer when the server started")
        return pool
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


# -- bulk reads ----------------------------------------------------------------------------------------

def copy_frame(conn: psycopg.Connection, statement: sql.Composable, params: Sequence[Any] | dict[str, Any],
               schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Run ``COPY (statement) TO STDOUT`` as CSV and parse it into a frame of ``schema``.

    Columns are matched by position, not by name; Datetime columns of the schema are expected
    as epoch microseconds (bigint).
    """
    wire = {name: (pl.Int64() if isinstance(dtype, pl.Datetime) else dtype) for name, dtype in schema.items()}
    copy = sql.SQL("COPY ({}) TO STDOUT (FORMAT CSV)").format(statement)
    with conn.cursor() as cur, cur.copy(copy, params):
        # psycopg started the COPY (in the connection's transaction, under its lock); the rows are drained here
        data = drain_copy_out(conn)
    frame = pl.read_csv(data, has_header=False, schema=wire) if data else pl.DataFrame(schema=wire)
    times = [name for name, dtype in schema.items() if isinstance(dtype, pl.Datetime)]
    return frame.with_columns(pl.from_epoch(name, time_unit="us").dt.replace_time_zone("UTC") for name in times)


def drain_copy_out(conn: psycopg.Connection) -> bytes:
    """Every row of a COPY TO STDOUT in progress, joined, and its final result checked.

    libpq hands out one row per ``PQgetCopyData`` call; psycopg's ``Copy.read`` adds a generator, a
    wait and several frames to each (about 60 % of a report's bulk read at 10 M rows). Here every row
    already received is taken in a tight loop and the socket is waited on only when libpq has none.
    The stream's end (-1) is consumed here with its final result, so the ``Copy`` block must not be
    read afterwards: leaving it without error is then a no-op (the connection is idle again).
    """
    pgconn = conn.pgconn
    readable = select.poll()  # not select.select: a server process may hold descriptors past 1024
    readable.register(pgconn.socket, select.POLLIN)
    data = bytearray()  # not a list of the rows: each is a memoryview holding a libpq buffer
    append = data.extend
    get = pgconn.get_copy_data
    while True:
        nbytes, row = get(1)
        if nbytes > 0:
            append(row)
        elif nbytes == 0:  # nothing buffered: wait for the server
            readable.poll()
            pgconn.consume_input()
        else:
            break
    failure = None
    while True:
        while pgconn.is_busy():
            readable.poll()
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        if result.status != pq.ExecStatus.COMMAND_OK and failure is None:
            failure = psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    if failure is not None:
        raise failure
    return bytes(data)


def check_size(frame: pl.DataFrame, max_rows: int | None, what: str) -> pl.DataFrame:
    """``frame``, unless it has more than ``max_rows`` rows (readers fetch max_rows + 1 to know)."""
    if max_rows is not None and frame.height > max_rows:
        raise TooManyRows(
            f"more than {max_rows:,} {what} match; narrow the time range or the filters, or pass a larger "
            "max_rows (None for no limit) if the memory is there"
        )
    return frame


# -- WHERE clauses ---------------------------------------------------------------------------------

Column = str | sql.Composable


def _col(column: Column) -> sql.Composable:
    return sql.Identifier(column) if isinstance(column, str) else column


@dataclass
class Where:
    """A WHERE clause built from optional filters: a filter whose value is None (or empty) is left out.

    Positional ``%s`` parameters, composed with psycopg.sql, never with f-strings::

        w = where().eq("user_id", q.user_id).any("event_type", q.event_types).ge("timestamp", q.start)
        conn.execute(sql.SQL("SELECT ... FROM t") + w.sql() + sql.SQL(" LIMIT %s"), [*w.params, limit])
    """

    clauses: list[sql.Composable] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str | sql.Composable, *params: Any) -> Where:
        """Any condition with its own ``%s`` placeholders (always added)."""
        self.clauses.append(sql.SQL(clause) if isinstance(clause, str) else clause)
        self.params.extend(params)
        return self

    def compare(self, column: Column, op: str, value: Any, *, cast: str | None = None) -> Where:
        """``column <op> value`` unless value is None; ``cast`` is a type name for the placeholder."""
        if value is None:
            return self
        placeholder = sql.SQL("%s::" + cast) if cast else sql.SQL("%s")  # cast: a fixed type name from code
        return self.add(sql.SQL("{} {} {}").format(_col(column), sql.SQL(op), placeholder), value)

    def eq(self, column: Column, value: Any) -> Where:
        return self.compare(column, "=", value)

    def ge(self, column: Column, value: Any) -> Where:
        return self.compare(column, ">=", value)

    def gt(self, column: Column, value: Any) -> Where:
        return self.compare(column, ">", value)

    def lt(self, column: Column, value: Any) -> Where:
        return self.compare(column, "<", value)

    def le(self, column: Column, value: Any) -> Where:
        return self.compare(column, "<=", value)

    def any(self, column: Column, values: Sequence[Any] | None, *, cast: str = "text") -> Where:
        """``column = ANY(values)`` unless values is empty."""
        if not values:
            return self
        return self.add(sql.SQL("{} = ANY({})").format(_col(column), sql.SQL("%s::" + cast + "[]")), list(values))

    def within(self, column: Column, network: str | None) -> Where:
        """An inet column inside an address or CIDR block."""
        return self.compare(column, "<<=", network, cast="inet")

    def sql(self, keyword: str = " WHERE ") -> sql.Composable:
        """`` WHERE a AND b`` (or nothing when no filter applies)."""
        if not self.clauses:
            return sql.SQL("")
        return sql.SQL(keyword) + sql.SQL(" AND ").join(self.clauses)

    def conditions(self) -> sql.Composable:
        """The conditions alone (``TRUE`` when none), for a WHERE written around them."""
        return sql.SQL(" AND ").join(self.clauses) if self.clauses else sql.SQL("TRUE")


def where() -> Where:
    """An empty WHERE clause to narrow step by step."""
    return Where()


# -- advisory locks --------------------------------------------------------------------------------

LockKey = int | str  # a bigint key, or a text hashed with hashtext() (per-name locks)


def _key(key: LockKey) -> tuple[sql.Composable, Any]:
    return (sql.SQL("hashtext(%s)"), key) if isinstance(key, str) else (sql.SQL("%s::bigint"), key)


@contextmanager
def advisory_lock(conn: psycopg.Connection, key: LockKey, *, scope: Literal["session", "xact"] = "session",
                  wait: bool | float = True) -> Iterator[bool]:
    """Hold a PostgreSQL advisory lock for the ``with`` block; yields whether it was taken.

    ``wait=True`` blocks until the lock is free, ``False`` only tries, a number waits up to that many
    seconds. A session lock is released when the block ends (the connection should be autocommit, or
    idle); a transaction lock (``scope="xact"``) must be taken inside a transaction and is released by
    its commit or rollback.
    """
    if scope not in ("session", "xact"):
        raise ValueError("scope must be 'session' or 'xact'")
    suffix = "_xact" if scope == "xact" else ""
    expr, value = _key(key)
    if wait is False:
        taken = conn.execute(sql.SQL("SELECT pg_try_advisory{}_lock({})").format(sql.SQL(suffix), expr),
                             (value,)).fetchone()[0]
    elif wait is True:
        conn.execute(sql.SQL("SELECT pg_advisory{}_lock({})").format(sql.SQL(suffix), expr), (value,))
        taken = True
    else:
        timeout = sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(float(wait) * 1000)}ms"))
        try:
            if scope == "xact":  # the timeout then holds for the rest of the caller's transaction
                conn.execute(timeout)
                conn.execute(sql.SQL("SELECT pg_advisory_xact_lock({})").format(expr), (value,))
            else:
                with conn.transaction():
                    conn.execute(timeout)
                    conn.execute(sql.SQL("SELECT pg_advisory_lock({})").format(expr), (value,))
            taken = True
        except psycopg.errors.LockNotAvailable:
            taken = False
    try:
        yield taken
    finally:
        if taken and scope == "session" and not conn.closed:
            conn.execute(sql.SQL("SELECT pg_advisory_unlock({})").format(expr), (value,))
