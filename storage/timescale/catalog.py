"""Users, event types, API keys and run-time settings: the small tables around the events.

Every change an operator makes here (a key created or revoked, a user registered, an event type
added, a setting stored) takes ``audit``, the builder of its audit record
(``storage.timescale.self_audit.Auditor``), and stores that record in the same transaction as the
change: there is never a change without its record, nor a record of a change that did not happen.
``audit=None`` is only for the platform's own bookkeeping (ingest registering unknown senders, tests).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.auth import ApiKey, Role, new_secret, secret_matches, split_key
from storage.timescale import self_audit
from storage.timescale.db import advisory_lock, copy_frame
from storage.timescale.self_audit import Auditor


@dataclass(frozen=True)
class User:
    user_id: str
    display_name: str | None
    email: str | None
    department: str | None
    kind: str
    registered_by: str
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class EventType:
    event_type: str
    description: str
    ocsf_class: str | None
    builtin: bool
    reserved: bool = False  # only the platform writes it; ingest refuses it (migration 0014)
    class_uid: int | None = None  # OCSF 1.x (migration 0015); None: exported as the Base Event
    activity_id: int | None = None
    type_uid: int | None = None  # class_uid * 100 + activity_id, computed by the database


_CLASS_UID = re.compile(r"\[(\d{1,5})\]\s*$")


def ocsf_ids(ocsf_class: str | None, class_uid: int | None = None,
             activity_id: int | None = None) -> tuple[int | None, int | None]:
    """The OCSF ids to store for a new type: as given, else the class from a caption "Name [3002]" with
    activity 99 (Other); neither when the caption names no class."""
    if class_uid is None and ocsf_class:
        found = _CLASS_UID.search(ocsf_class)
        class_uid = int(found.group(1)) if found else None
    if class_uid is None:
        return None, None
    return class_uid, 99 if activity_id is None else activity_id


# -- event types -----------------------------------------------------------------------------

def event_types(pool: ConnectionPool) -> list[EventType]:
    with pool.connection() as conn, conn.cursor(row_factory=class_row(EventType)) as cur:
        return cur.execute(
            "SELECT event_type, description, ocsf_class, builtin, reserved, class_uid, activity_id, type_uid "
            "FROM event_types ORDER BY event_type"
        ).fetchall()


def add_event_type(pool: ConnectionPool, event_type: str, description: str, ocsf_class: str | None,
                   created_by: str, *, audit: Auditor | None = None, class_uid: int | None = None,
                   activity_id: int | None = None) -> bool:
    """Add a type to the catalogue; False if it was already there (then nothing is audited)."""
    class_uid, activity_id = ocsf_ids(ocsf_class, class_uid, activity_id)
    with pool.connection() as conn, conn.transaction():
        row = conn.execute(
            "INSERT INTO event_types (event_type, description, ocsf_class, created_by, class_uid, activity_id) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (event_type, description, ocsf_class, created_by, class_uid, activity_id),
        ).fetchone()
        if row is not None and audit is not None:
            self_audit.store(conn, audit("config_change", {"change": "event_type_added"}, event_type))
    return row is not None


# -- users -------------------------------------------------------------------------------------

def existing_users(pool: ConnectionPool, user_ids: Iterable[str]) -> set[str]:
    ids = list(set(user_ids))
    if not ids:
        return set()
    with pool.connection() as conn:
        rows = conn.execute("SELECT user_id FROM users WHERE user_id = ANY(%s)", (ids,)).fetchall()
    return {r[0] for r in rows}


def register_users(pool: ConnectionPool, users: Iterable[dict[str, Any]], registered_by: str, *,
                   audit: Auditor | None = None) -> int:
    """Insert users that are not there yet; returns how many were new. With ``audit``, each new user's
    ``config_change`` record (``user_registered``) is stored in the same transaction."""
    rows = [
        (u["user_id"], u.get("display_name"), u.get("email"), u.get("department"), u.get("kind", "human"),
         registered_by)
        for u in users
    ]
    if not rows:
        return 0
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO users (user_id, display_name, email, department, kind, registered_by) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
            rows,
            returning=True,
        )
        added: list[str] = []
        while True:
            added += [r[0] for r in cur.fetchall()]
            if not cur.nextset():
                break
        if audit is not None:
            for user_id in added:
                self_audit.store(conn, audit("config_change", {"change": "user_registered"}, user_id))
    return len(added)


def list_users(pool: ConnectionPool, *, limit: int = 1000, after: str | None = None) -> list[User]:
    with pool.connection() as conn, conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(
            "SELECT user_id, display_name, email, department, kind, registered_by, created_at, disabled_at "
            "FROM users WHERE %(after)s::text IS NULL OR user_id > %(after)s ORDER BY user_id LIMIT %(limit)s",
            {"after": after, "limit": limit},
        ).fetchall()


# -- API keys ------------------------------------------------------------------------------------

_KEY_COLUMNS = sql.SQL("key_id, name, role, created_at, revoked_at")


def _key(row: tuple) -> ApiKey:
    return ApiKey(key_id=row[0], name=row[1], role=Role(row[2]), created_at=row[3], revoked_at=row[4])


def create_key(pool: ConnectionPool, name: str, role: Role, created_by: str, *,
               audit: Auditor | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns it with the secret string, which is shown once and never stored.
    With ``audit``, its ``api_key_created`` record commits with it."""
    key_id = uuid.uuid4()
    secret, secret_hash = new_secret(key_id)
    with pool.connection() as conn, conn.transaction():
        row = conn.execute(
            sql.SQL("INSERT INTO api_keys (key_id, name, role, secret_hash, created_by) "
                    "VALUES (%s, %s, %s, %s, %s) RETURNING {}").format(_KEY_COLUMNS),
            (key_id, name, str(role), secret_hash, created_by),
        ).fetchone()
        # The key acts under its own principal, which R4 must know about.
        conn.execute(
            "INSERT INTO users (user_id, kind, registered_by) VALUES (%s, 'apikey', %s) ON CONFLICT DO NOTHING",
            (f"apikey:{name}", created_by),
        )
        if audit is not None:
            self_audit.store(conn, audit("api_key_created", {"name": name, "role": str(role)}, str(key_id)))
    return _key(row), secret


def key_exists(pool: ConnectionPool, name: str) -> bool:
    with pool.connection() as conn:
        return conn.execute("SELECT 1 FROM api_keys WHERE name = %s", (name,)).fetchone() is not None


def authenticate(pool: ConnectionPool, key: str) -> ApiKey | None:
    """The live key behind a key string, or None if it is malformed, unknown, wrong or revoked."""
    parts = split_key(key)
    if parts is None:
        return None
    key_id, secret = parts
    with pool.connection() as conn:
        row = conn.execute(
            sql.SQL("SELECT {}, secret_hash FROM api_keys WHERE key_id = %s").format(_KEY_COLUMNS), (key_id,)
        ).fetchone()
    if row is None or not secret_matches(secret, row[5]) or row[4] is not None:
        return None
    return _key(row[:5])


def list_keys(pool: ConnectionPool) -> list[ApiKey]:
    with pool.connection() as conn:
        rows = conn.execute(
            sql.SQL("SELECT {} FROM api_keys ORDER BY created_at, name").format(_KEY_COLUMNS)
        ).fetchall()
    return [_key(r) for r in rows]


def revoke_key(pool: ConnectionPool, name_or_id: str, revoked_by: str, *,
               audit: Auditor | None = None) -> ApiKey | None:
    """Revoke a live key by name or id; None if there is no such live key. With ``audit``, its
    ``api_key_revoked`` record commits with the revocation."""
    try:
        key_id = uuid.UUID(name_or_id)
    except ValueError:
        key_id = None
    with pool.connection() as conn, conn.transaction():
        row = conn.execute(
            sql.SQL("UPDATE api_keys SET revoked_at = now(), revoked_by = %s "
                    "WHERE (name = %s OR key_id = %s) AND revoked_at IS NULL RETURNING {}").format(_KEY_COLUMNS),
            (revoked_by, name_or_id, key_id),
        ).fetchone()
        if row is not None and audit is not None:
            self_audit.store(conn, audit("api_key_revoked", {"name": row[1]}, str(row[0])))
    return _key(row) if row else None


# -- run-time settings ------------------------------------------------------------------------------

def get_setting(pool: ConnectionPool, key: str) -> Any | None:
    with pool.connection() as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def put_setting(pool: ConnectionPool, key: str, value: Any, updated_by: str, *,
                audit: Auditor | None = None, audit_form: Callable[[Any], Any] = lambda v: v) -> Any | None:
    """Store a setting; returns the previous value. With ``audit``, its ``config_change`` record
    (before and after, each through ``audit_form``) commits with it.

    ``audit_form`` reshapes a value for the record, e.g. a map keyed by event type into a list, as
    the record is redacted (R9) and a key such as ``password_reset`` would be masked."""
    # Serialise writers of this key (a row lock cannot, before the row exists).
    with pool.connection() as conn, conn.transaction(), advisory_lock(conn, f"settings:{key}", scope="xact"):
        previous = conn.execute("SELECT value FROM settings WHERE key = %s", (key,)).fetchone()
        conn.execute(
            "INSERT INTO settings (key, value, updated_by) VALUES (%s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by, "
            "updated_at = now()",
            (key, Jsonb(value), updated_by),
        )
        if audit is not None:
            self_audit.store(conn, audit("config_change", {
                "before": audit_form(previous[0]) if previous else None, "after": audit_form(value)}, key))
    return previous[0] if previous else None


# -- R6: shared rate-limit counters --------------------------------------------------------------------

def consume_rate(pool: ConnectionPool, counts: dict[str, int], window_start: datetime, limit: int) -> dict[str, int]:
    """Take up to ``counts[sender]`` from each sending key's budget for this window; returns how many each got.

    One statement for all senders asked for; the row lock on each counter makes concurrent
    processes see each other's consumption, so the limit holds across any number of servers.
    """
    if not counts:
        return {}
    senders = list(counts)
    wanted = [counts[u] for u in senders]
    with pool.connection() as conn:
        rows = conn.execute(
            "INSERT INTO ingest_rate AS r (sender, window_start, events) "
            "SELECT u, %s, n FROM unnest(%s::text[], %s::int[]) AS t(u, n) ORDER BY u "
            "ON CONFLICT (sender, window_start) DO UPDATE SET events = r.events + EXCLUDED.events "
            "RETURNING sender, events",
            (window_start, senders, wanted),
        ).fetchall()
    granted = {}
    for sender, total in rows:
        before = total - counts[sender]
        granted[sender] = max(0, min(counts[sender], limit - before))
    return granted


def prune_rate(pool: ConnectionPool, before: datetime) -> None:
    """Forget counters of windows that ended before ``before``."""
    with pool.connection() as conn:
        conn.execute("DELETE FROM ingest_rate WHERE window_start < %s", (before,))


def key_by_id(pool: ConnectionPool, key_id: uuid.UUID) -> ApiKey | None:
    """A key's record by id (revoked or not), for sessions that remember only the id."""
    with pool.connection() as conn:
        row = conn.execute(sql.SQL("SELECT {} FROM api_keys WHERE key_id = %s").format(_KEY_COLUMNS),
                           (key_id,)).fetchone()
    return _key(row) if row else None


# -- the user directory as frames -------------------------------------------------------------------

_USER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(), "display_name": pl.String(), "email": pl.String(), "department": pl.String(),
    "kind": pl.String(), "created_at": pl.Datetime("us", "UTC"), "disabled_at": pl.Datetime("us", "UTC"),
}


def users_frame(pool: ConnectionPool) -> pl.DataFrame:
    """The user directory, to join departments and kinds onto events."""
    statement = sql.SQL(
        "SELECT user_id, display_name, email, department, kind, "
        "(extract(epoch FROM created_at) * 1000000)::bigint, (extract(epoch FROM disabled_at) * 1000000)::bigint "
        "FROM users ORDER BY user_id")
    with pool.connection() as conn:
        return copy_frame(conn, statement, [], _USER_SCHEMA)


def peer_groups(pool: ConnectionPool) -> dict[str, str]:
    """User id → peer group: the registered department, else the account kind (human, service, apikey)."""
    with pool.connection() as conn:
        rows = conn.execute("SELECT user_id, coalesce(department, kind) FROM users").fetchall()
    return {user_id: group for user_id, group in rows}
