"""Bytes per event in the hypertable heap vs the Parquet cold tier (target: Parquet >= 8x smaller).

Loads synthetic but realistic audit events (the demo generator's shapes) into one old day,
measures the chunk's heap + TOAST (and, separately, index) bytes, archives it through the real
archiver, and divides the Parquet file's bytes by the same row count.

    python -m bench.cold --events 1000000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import database
from storage.cold.store import ColdStore
from storage.events import EventRecord, Outcome
from storage.timescale import archive, db, self_audit
from storage.timescale.writer import copy_direct, row_of

TYPES = ("user_login", "user_logout", "file_download", "file_upload", "query_executed", "config_change",
         "data_export", "permission_change")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
          "python-requests/2.32.3", "curl/8.5.0", None)


def events(n: int, day: datetime, rng: random.Random):
    users = [f"user{i:05d}@corp.example" for i in range(5000)]
    for i in range(n):
        at = day + timedelta(microseconds=i * 86_400_000_000 // n + rng.randrange(1000))
        kind = rng.choice(TYPES)
        yield EventRecord(
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4), timestamp=at, event_type=kind,
            user_id=rng.choice(users), received_at=at + timedelta(milliseconds=rng.randrange(50, 900)),
            outcome=Outcome.FAILURE if rng.random() < 0.07 else Outcome.SUCCESS, source=rng.choice(["web", "vpn", "sso"]),
            source_ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            source_country=rng.choice(["US", "FR", "DE", "IN", None]), source_asn=rng.choice(["AS15169", None]),
            user_agent=rng.choice(AGENTS), resource_id=f"doc-{rng.randrange(200_000)}" if kind.startswith("file") else None,
            metadata={"session": uuid.UUID(int=rng.getrandbits(128)).hex[:16], "bytes": rng.randrange(10**7),
                      "bucket": rng.choice(["hr", "finance", "eng", "legal"]), "mfa": rng.random() < 0.8})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="a migrated database to use (default: a throwaway local cluster)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aw-bench-cold-"))
    with database(args.database_url) as url:
        pool = db.open_pool(url, min_size=1, max_size=4)
        try:
            run(pool, args.events, root)
        finally:
            pool.close()


def run(pool, n: int, root: Path) -> None:
    """Load n events into one old day, archive it, print bytes per event in each tier."""
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    day = (now - timedelta(days=120)).replace(hour=0)
    rng = random.Random(42)
    started = time.perf_counter()
    batch = []
    for record in events(n, day, rng):
        batch.append(row_of(record))
        if len(batch) == 50_000:
            copy_direct(pool, batch)
            batch = []
    if batch:
        copy_direct(pool, batch)
    print(f"loaded {n:,} events in {time.perf_counter() - started:.1f} s")
    with pool.connection() as conn:
        [chunk] = archive.old_chunks(conn, now - timedelta(days=90))
        heap, indexes = conn.execute(
            "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)", (chunk.name, chunk.name)).fetchone()
    store = ColdStore(root / "archive")
    started = time.perf_counter()
    result = archive.run(pool, store, now=now, hot_days=90, audit=self_audit.auditor("bench", lambda: now))
    elapsed = time.perf_counter() - started
    parquet = sum(f.bytes for f in result.files)
    rows = result.rows
    assert rows == n, (rows, n)
    print(f"archived {rows:,} rows in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s, including export, "
          "fsync, read-back verification and the rollup materialisation)")
    print(f"heap (table + TOAST): {heap / rows:8.1f} bytes/event   ({heap / 2**20:,.1f} MiB)")
    print(f"heap + indexes:       {(heap + indexes) / rows:8.1f} bytes/event   ({(heap + indexes) / 2**20:,.1f} MiB)")
    print(f"parquet (zstd):       {parquet / rows:8.1f} bytes/event   ({parquet / 2**20:,.1f} MiB)")
    print(f"ratio heap/parquet:   {heap / parquet:8.1f}x   (target >= 8x)")
    print(f"ratio (heap+idx)/parquet: {(heap + indexes) / parquet:4.1f}x")


if __name__ == "__main__":
    main()
