"""The data API's COPY → Polars path against reading the same rows one by one.

Loads N events over 30 days (SQL-side generation, as bench/query.py), then reads the newest
day, and every event, three ways, in the same run:

- ``frames``: ``storage.timescale.queries.events_frame`` (what ``AuditData.events`` uses);
- ``rows``: ``queries.stream`` (the export path: a server-side cursor, one EventRecord per row)
  collected into a frame, which is what a notebook without the data API would do;
- ``fetchall``: ``pl.read_database`` on a psycopg connection (tuples, then a frame).

    python -m bench.dataapi [--url postgresql://...] [--events 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import polars as pl

from bench.harness import database
from bench.query import DAYS, load
from storage.timescale import db, queries
from storage.timescale.queries import EventQuery


def _rows_frame(pool, query: EventQuery) -> pl.DataFrame:
    records = [r.to_json() for r in queries.stream(pool, query)]
    return pl.DataFrame(records, infer_schema_length=None)


def _fetchall_frame(url: str, query: EventQuery) -> pl.DataFrame:
    where = (query.start_time, query.end_time)
    with db.connect(url) as conn:
        return pl.read_database(
            'SELECT event_id::text, "timestamp", event_type, user_id, outcome, source, host(source_ip) AS source_ip,'
            " source_country, source_asn, user_agent, resource_id, metadata::text, received_at FROM audit_events"
            ' WHERE "timestamp" >= %s AND "timestamp" < %s ORDER BY "timestamp", event_id',
            conn, execute_options={"params": where})


def _best(fn, repeat: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        began = time.perf_counter()
        rows = fn().height
        best = min(best, time.perf_counter() - began)
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing database (default: a throwaway durable cluster)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with database(args.url) as url:
        load(url, args.events)
        pool = db.open_pool(url, min_size=1, max_size=2, name="bench-dataapi", read_only=True)
        try:
            end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
            ranges = {"newest day": (end - timedelta(days=1), end), f"all {DAYS} days": (end - timedelta(days=DAYS), end)}
            print(f"{'range':>12} {'path':>9} {'rows':>10} {'seconds':>8} {'rows/s':>12} {'vs frames':>9}")
            for label, (low, high) in ranges.items():
                query = EventQuery(start_time=low, end_time=high)
                paths = {
                    "frames": lambda q=query: queries.events_frame(pool, q, max_rows=None),
                    "rows": lambda q=query: _rows_frame(pool, q),
                    "fetchall": lambda q=query: _fetchall_frame(url, q),
                }
                results = {name: _best(fn, 1 if name != "frames" and "all" in label else args.repeat)
                           for name, fn in paths.items()}
                base = results["frames"][0]
                for name, (seconds, rows) in results.items():
                    print(f"{label:>12} {name:>9} {rows:>10,} {seconds:>8.2f} {rows / seconds:>12,.0f} "
                          f"{seconds / base:>8.1f}x")
        finally:
            pool.close()


if __name__ == "__main__":
    main()
