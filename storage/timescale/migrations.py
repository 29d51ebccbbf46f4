"""Versioned SQL migrations, applied once each, in order, safe from concurrent processes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg

from storage.errors import MigrationError
from storage.timescale.db import advisory_lock

# Any constant works; it only has to be the same in every process that migrates.
MIGRATION_LOCK = 0x4155_4449_5457_4348 & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """The migrations shipped with this package, in version order."""
    found = []
    for entry in resources.files("storage.timescale").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    return found


def migrate(conn: psycopg.Connection, *, chunk_interval: str | None = None) -> list[Migration]:
    """Apply pending migrations; returns those applied by this call.

    A session-level advisory lock serialises concurrent migrators: the second waits, then
    finds nothing left to do.
    """
    applied: list[Migration] = []
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    previous_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with advisory_lock(conn, MIGRATION_LOCK):
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {row[0]: row[1] for row in conn.execute("SELECT version, checksum FROM schema_migrations")}
            for migration in available():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version}_{migration.name} was edited after it was applied; "
                            "add a new migration instead of changing an applied one"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(migration.sql)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.version}_{migration.name} failed: {exc}") from exc
                applied.append(migration)
            if chunk_interval:
                conn.execute(
                    "SELECT set_chunk_time_interval('audit_events', %s::interval)", (chunk_interval,)
                )
            newest = max((m.version for m in available()), default=0)
            ahead = [v for v in done if v > newest]
            if ahead:
                raise MigrationError(
                    f"the database is at schema version {max(ahead)}, newer than this code knows ({newest}); "
                    "upgrade Auditwatch before running it against this database"
                )
    finally:
        conn.autocommit = previous_autocommit
    return applied


def current_version(conn: psycopg.Connection) -> int | None:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    return conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]

