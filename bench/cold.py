"""Bytes per event in the hypertable heap vs the Parquet cold tier (target: Parquet >= 8x smaller).

Two data sets, each archived through the real archiver in both file layouts (storage/cold/layout.py):

- ``random``: the worst case. Every event picks a uniformly random user among 5,000, a random
  10/8 address, a random 64-bit session id and byte count: nothing repeats that could compress.
- ``demo``: the project's demo traffic (ingest/demo.py: users with a home address, agent and
  country, working-hour rhythms, sessions, the injected incidents), scaled to ``--events`` by
  adding users, passed through ingest's own validation, redaction and offline GeoIP enrichment.

Each data set is loaded twice, into two consecutive old days, so each layout archives an identical
chunk. The script prints heap, heap + index and Parquet bytes per event, the ratios, archive
throughput (export, fsync, read-back verification, rollup materialisation and the drop), and how
long Polars takes to read the day back: all of it, one user's events, one hour.

    python -m bench.cold --events 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from bench.harness import database
from ingest.demo import DemoTraffic
from ingest.enrich import Geoip2FastLookup
from ingest.redact import Redactor
from ingest.validate import ValidationPolicy, validate_event
from storage.cold.layout import CLUSTERED, TIME_ORDER, Layout
from storage.cold.store import ColdStore
from storage.events import EventRecord, Outcome
from storage.timescale import archive, db, self_audit
from storage.timescale.writer import copy_direct, row_of

TYPES = ("user_login", "user_logout", "file_download", "file_upload", "query_executed", "config_change",
         "data_export", "permission_change")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
          "python-requests/2.32.3", "curl/8.5.0", None)
# Time order with the new encodings: bytes only (re-written in memory), to separate what the order gives.
TIME_TYPED = Layout("time+typed", TIME_ORDER.order)
BATCH = 50_000


def random_events(n: int, day: datetime, rng: random.Random) -> Iterator[EventRecord]:
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


def demo_users(n: int, day: datetime) -> int:
    """How many demo users make about ``n`` events on ``day`` (service accounts do not scale)."""
    probe = DemoTraffic(seed=7)
    humans = len(probe.users) - 8
    counts = {"human": 0, "service": 0}
    for event in probe.events(day, day + timedelta(days=1)):
        counts["service" if event["user_id"].startswith("svc-") else "human"] += 1
    return max(60, round(humans * (n - counts["service"]) / counts["human"]))  # the spraying incident needs 60


def demo_events(n: int, day: datetime, rng: random.Random) -> Iterator[EventRecord]:
    """The demo day as the ingest pipeline would store it (validation, redaction, GeoIP enrichment)."""
    traffic = DemoTraffic(seed=7, users=demo_users(n, day))
    geo, redactor, policy = Geoip2FastLookup(), Redactor(), ValidationPolicy()
    now = day + timedelta(days=2)
    for raw in traffic.events(day, day + timedelta(days=1)):
        event = validate_event(raw, now=now, policy=policy, backfill=True)
        country, asn = geo.lookup(event.source_ip) if event.source_ip else (None, None)
        yield EventRecord(
            event_id=event.event_id, timestamp=event.timestamp, event_type=event.event_type, user_id=event.user_id,
            received_at=event.timestamp + timedelta(milliseconds=rng.randrange(50, 900)), outcome=event.outcome,
            source=event.source, source_ip=event.source_ip, source_country=country, source_asn=asn,
            user_agent=event.user_agent, resource_id=event.resource_id,
            metadata=redactor.redact(event.metadata) if event.metadata else event.metadata)


DATASETS: dict[str, Callable[[int, datetime, random.Random], Iterator[EventRecord]]] = {
    "random": random_events, "demo": demo_events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per data set and day")
    parser.add_argument("--datasets", default="random,demo", help="comma-separated: random, demo")
    parser.add_argument("--database-url", help="a migrated database to use (default: a throwaway local cluster)")
    parser.add_argument("--levels", type=lambda text: [int(v) for v in text.split(",") if v], default=[],
                        help="also write the clustered file at these zstd levels in memory, e.g. 9,12,15,17,19")
    args = parser.parse_args()
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = set(names) - set(DATASETS)
    if unknown:
        parser.error(f"unknown data set(s) {sorted(unknown)}; choose from {sorted(DATASETS)}")
    with tempfile.TemporaryDirectory(prefix="aw-bench-cold-") as tmp, database(args.database_url) as url:
        pool = db.open_pool(url, min_size=1, max_size=4)
        try:
            rows = [run(pool, name, args.events, Path(tmp) / name, args.levels) for name in names]
        finally:
            pool.close()
    report(rows)


def _shifted(record: EventRecord, by: timedelta) -> EventRecord:
    return dataclasses.replace(record, timestamp=record.timestamp + by, received_at=record.received_at + by)


def load(pool, name: str, n: int, first: datetime) -> int:
    """The data set on ``first`` and, identically, on the day after (one chunk per layout)."""
    started = time.perf_counter()
    loaded = 0
    batch: list[tuple] = []
    for record in DATASETS[name](n, first, random.Random(42)):
        batch += [row_of(record), row_of(_shifted(record, timedelta(days=1)))]
        loaded += 1
        if len(batch) >= BATCH:
            copy_direct(pool, batch)
            batch = []
    if batch:
        copy_direct(pool, batch)
    print(f"[{name}] generated and loaded 2 x {loaded:,} events in {time.perf_counter() - started:.1f} s", flush=True)
    return loaded


def _best_ms(action: Callable[[], object], repeat: int = 5) -> float:
    """The fastest of a few runs: on a shared machine, the rest is other people's load."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def probe(store: ColdStore, path: str) -> tuple[str, datetime]:
    """A user and an hour to look up: those of the day's middle event in time order."""
    scan = store.scan([path])
    middle = scan.select(pl.len()).collect().item() // 2
    row = scan.sort("timestamp").slice(middle, 1).select("user_id", "timestamp").collect().row(0, named=True)
    return row["user_id"], row["timestamp"].replace(minute=0, second=0, microsecond=0)


def read_times(store: ColdStore, path: str, user: str, hour: datetime) -> dict[str, float]:
    """Polars over one archived day: everything, one user's events, one hour."""
    scan = store.scan([path])
    return {
        "day": _best_ms(lambda: scan.collect()),
        "user": _best_ms(lambda: scan.filter(pl.col("user_id") == user).collect()),
        "hour": _best_ms(lambda: scan.filter((pl.col("timestamp") >= hour)
                                               & (pl.col("timestamp") < hour + timedelta(hours=1))).collect()),
    }


def column_bytes(store: ColdStore, path: str, rows: int) -> dict[str, float]:
    meta = pq.ParquetFile(store.full_path(path)).metadata
    sizes: dict[str, int] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            sizes[column.path_in_schema] = sizes.get(column.path_in_schema, 0) + column.total_compressed_size
    return {name: size / rows for name, size in sizes.items()}


def rewritten(store: ColdStore, path: str, layout: Layout) -> tuple[int, float]:
    """The same rows written in another layout in memory: bytes, and the Parquet writer's rows/s alone."""
    table = store.read(path)
    table = table.sort_by([(name, "ascending") for name in layout.order])
    sink = io.BytesIO()
    started = time.perf_counter()
    with pq.ParquetWriter(sink, table.schema, **layout.writer_options(table.schema)) as writer:
        writer.write_table(table, row_group_size=layout.row_group_rows)
    return len(sink.getvalue()), table.num_rows / (time.perf_counter() - started)


def run(pool, name: str, n: int, root: Path, levels: list[int]) -> dict:
    """Load one data set on two old days, archive one day per layout, measure."""
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    first = (now - timedelta(days=121)).replace(hour=0)
    while first.weekday() >= 5:  # the demo's users mostly rest at weekends: take a working day
        first -= timedelta(days=1)
    loaded = load(pool, name, n, first)
    with pool.connection() as conn:
        chunks = archive.old_chunks(conn, now - timedelta(days=90))
        sizes = {c.range_start: conn.execute(
            "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)", (c.name, c.name)).fetchone()
            for c in chunks}
    store = ColdStore(root)
    out = {"name": name, "rows": loaded, "layouts": {}}
    for offset, layout in ((0, TIME_ORDER), (1, CLUSTERED)):
        day = first + timedelta(days=offset)
        heap, indexes = sizes[day]
        hot_days = (now - (day + timedelta(days=1))).days  # exactly this day's chunk is past retention
        started = time.perf_counter()
        result = archive.run(pool, store, now=now, hot_days=hot_days, layout=layout,
                             audit=self_audit.auditor("bench", lambda: now))
        elapsed = time.perf_counter() - started
        if result.rows != loaded or len(result.files) != 1:
            raise SystemExit(f"archived {result.rows} rows in {len(result.files)} files, expected {loaded} in 1")
        [f] = result.files
        if layout is TIME_ORDER:
            user, hour = probe(store, f.path)
        out["heap"], out["indexes"] = heap, indexes
        out["layouts"][layout.name] = {"bytes": f.bytes, "rows_per_s": loaded / elapsed,
                                       "read": read_times(store, f.path, user, hour + timedelta(days=offset)),
                                       "columns": column_bytes(store, f.path, loaded)}
        if layout is TIME_ORDER:
            out["layouts"][TIME_TYPED.name] = {"bytes": rewritten(store, f.path, TIME_TYPED)[0]}
        else:
            out["levels"] = {level: rewritten(store, f.path, dataclasses.replace(CLUSTERED, compression_level=level))
                             for level in levels}
        print(f"[{name}] {layout.name}: {f.bytes / loaded:.1f} bytes/event, archived in {elapsed:.1f} s", flush=True)
    return out


def report(results: list[dict]) -> None:
    print()
    print("| data set | events | heap B/ev | heap+idx B/ev | layout | Parquet B/ev | heap / Parquet | (heap+idx) / Parquet "
          "| archive rows/s | read day | one user | one hour |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        n = r["rows"]
        heap, total = r["heap"], r["heap"] + r["indexes"]
        for name, m in r["layouts"].items():
            timing = (f"{m['rows_per_s']:,.0f} | {m['read']['day']:.0f} ms | {m['read']['user']:.0f} ms | "
                      f"{m['read']['hour']:.0f} ms") if "read" in m else "(in-memory rewrite) | | |"
            print(f"| {r['name']} | {n:,} | {heap / n:.1f} | {total / n:.1f} | {name} | {m['bytes'] / n:.1f} | "
                  f"{heap / m['bytes']:.1f}x | {total / m['bytes']:.1f}x | {timing} |")
    print("\ntarget: heap / Parquet >= 8x")
    for r in results:
        for level, (size, speed) in r.get("levels", {}).items():
            print(f"{r['name']:>6} clustered at zstd {level:2d}: {size / r['rows']:5.1f} bytes/event, "
                  f"heap / Parquet {r['heap'] / size:4.1f}x, Parquet writer alone {speed:,.0f} rows/s")
    for r in results:
        for name in (TIME_ORDER.name, CLUSTERED.name):
            columns = r["layouts"][name]["columns"]
            top = sorted(columns.items(), key=lambda kv: -kv[1])
            print(f"{r['name']:>6} {name:>9} bytes/event by column: "
                  + ", ".join(f"{c} {b:.1f}" for c, b in top if b >= 0.1))


if __name__ == "__main__":
    main()
