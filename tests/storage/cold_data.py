"""Old events written straight into the hypertable, and checks of the hot+cold invariant."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from psycopg_pool import ConnectionPool

from storage.cold.store import ColdStore
from storage.events import EventRecord, Outcome
from storage.timescale import archive, self_audit
from storage.timescale.writer import insert_rows, row_of

# "Now" for archive tests: 90-day hot retention puts everything before 2024-06-03 in the cold tier.
NOW = datetime(2024, 9, 1, 12, 0, tzinfo=UTC)
OLD_DAYS = (100, 99, 98, 97, 96)  # days before NOW with old events
TYPES = ("user_login", "file_download", "config_change", "data_export")
USERS = ("alice", "bob", "carol")


def audit():
    return self_audit.auditor("tests", lambda: NOW)


def event(at: datetime, *, rng: random.Random, **fields) -> EventRecord:
    values = dict(
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4), timestamp=at,
        event_type=rng.choice(TYPES), user_id=rng.choice(USERS), received_at=at + timedelta(seconds=1),
        outcome=rng.choice(list(Outcome)), source=rng.choice(["web", "vpn", None]),
        source_ip=rng.choice(["10.0.0.1", "192.168.7.20", "2001:db8::7", None]),
        source_country=rng.choice(["FR", None]), source_asn=None, user_agent=rng.choice(["curl/8", None]),
        resource_id=rng.choice(["doc-1", None]),
        metadata=rng.choice([{}, {"bucket": "hr", "n": rng.randrange(10**12)}, {"case_id": "CASE-1"},
                             {"nested": {"a": [1, 2, {"b": "é"}]}, "big": 2**62}]))
    values.update(fields)
    return EventRecord(**values)


def seed(pool: ConnectionPool, *, days: Iterable[int] = OLD_DAYS, per_day: int = 30, recent: int = 10,
         seed: int = 7) -> list[EventRecord]:
    """``per_day`` events on each of ``days`` before NOW (spread over the day) plus ``recent`` hot ones."""
    rng = random.Random(seed)
    events = []
    for day in days:
        midnight = (NOW - timedelta(days=day)).replace(hour=0, minute=0)
        for i in range(per_day):
            events.append(event(midnight + timedelta(seconds=i * 86400 // per_day + rng.randrange(60),
                                                     microseconds=rng.randrange(10**6)), rng=rng))
    for i in range(recent):
        events.append(event(NOW - timedelta(hours=i + 1), rng=rng))
    write(pool, events)
    return events


def write(pool: ConnectionPool, events: list[EventRecord]) -> None:
    with pool.connection() as conn, conn.cursor() as cur:
        insert_rows(cur, [row_of(e) for e in events])


def hot_keys(pool: ConnectionPool) -> list[tuple[str, datetime]]:
    with pool.connection() as conn:
        return [(str(i), t) for i, t in conn.execute('SELECT event_id, "timestamp" FROM audit_events').fetchall()]


def cold_keys(store: ColdStore, files: list[archive.ArchiveFile]) -> list[tuple[str, datetime]]:
    keys = []
    for f in files:
        table = store.read(f.path)
        keys += list(zip(table.column("event_id").to_pylist(), table.column("timestamp").to_pylist(), strict=True))
    return keys


def assert_nothing_lost(pool: ConnectionPool, store: ColdStore, events: list[EventRecord]) -> None:
    """Every event is hot or in a live archive file that matches its catalogue row; live rows all verify."""
    with pool.connection() as conn:
        live = archive.files(conn, states=("verified", "complete"))
    for f in live:
        store.verify(f.path, rows=f.rows, sha256=f.sha256)
    found = set(hot_keys(pool)) | set(cold_keys(store, live))
    missing = [e for e in events if (str(e.event_id), e.timestamp) not in found]
    assert missing == [], f"{len(missing)} events are neither hot nor archived"


def assert_each_once(pool: ConnectionPool, store: ColdStore, events: list[EventRecord]) -> None:
    """After a clean run: each event exactly once across hot and complete files, and no stray files."""
    with pool.connection() as conn:
        complete = archive.files(conn, states=("complete",))
        live = archive.files(conn, states=("verified", "complete"))
    keys = hot_keys(pool) + cold_keys(store, complete)
    wanted = {(str(e.event_id), e.timestamp) for e in events}
    counted = [k for k in keys if k in wanted]
    assert len(counted) == len(wanted) == len(set(counted))
    on_disk = set(store.listing())
    assert on_disk == {f.path for f in live}, "files on disk that the catalogue does not list as live"


def read_bytes(store: ColdStore, path: str) -> bytes:
    with store.fs.open_input_stream(store.full_path(path)) as fh:
        return fh.read()


def overwrite(store: ColdStore, path: str, data: bytes) -> None:
    """Change a file behind the archiver's back (what an attacker or a bad disk would do)."""
    with store.fs.open_output_stream(store.full_path(path)) as out:
        out.write(data)
