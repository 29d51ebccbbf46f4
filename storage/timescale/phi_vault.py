"""The PHI token vault (migration 0019): each token with its value sealed under a key the database never sees.

Written at ingest, before the events that carry the tokens (a token stored by an event that then failed is
harmless: it reveals only what was sent). Read only by ``reveal``, which stores its ``phi_revealed`` record
in the same transaction as the read, so no value leaves the vault without a record of who asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from psycopg_pool import ConnectionPool

from storage.events import EventRecord
from storage.timescale import self_audit

_STORE = ("INSERT INTO phi_vault (token, ciphertext) SELECT * FROM unnest(%s::text[], %s::bytea[]) "
          "ON CONFLICT (token) DO NOTHING")


def store(pool: ConnectionPool, entries: Sequence[tuple[str, bytes]]) -> None:
    """Keep new tokens' sealed values; a token already there keeps its first value (the same plaintext)."""
    if not entries:
        return
    with pool.connection() as conn, conn.transaction():
        conn.execute(_STORE, ([t for t, _ in entries], [c for _, c in entries]))


def reveal(pool: ConnectionPool, token: str, record: Callable[[bool], EventRecord]) -> bytes | None:
    """The sealed value of ``token`` (None if unknown), read in the transaction that stores ``record(found)``."""
    with pool.connection() as conn, conn.transaction():
        row = conn.execute("SELECT ciphertext FROM phi_vault WHERE token = %s", (token,)).fetchone()
        self_audit.store(conn, record(row is not None))
    return bytes(row[0]) if row else None


def count(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        return conn.execute("SELECT count(*) FROM phi_vault").fetchone()[0]
