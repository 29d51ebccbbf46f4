"""Rollups vs raw rows for a dashboard-style aggregate, on 10 M events.

7-day hourly counts by event type: straight from audit_events, and through
rollups.series (the rollup plus the raw tail past its watermark). Also: the time the
Apache edition's refresh takes to materialise the history, and bytes per stored event.

    python -m bench.storage [--url postgresql://...] [--events 10000000] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench.harness import database
from bench.query import load
from storage.timescale import db, rollups
from storage.timescale.rollups import SeriesQuery

RAW = """
    SELECT time_bucket(INTERVAL '1 hour', "timestamp") AS bucket, event_type, count(*)
    FROM audit_events WHERE "timestamp" >= %s AND "timestamp" < %s GROUP BY 1, 2 ORDER BY 1, 2
"""


def timed(fn, runs: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with database(args.url, keep=args.keep) as url:
        print(f"loading {args.events:,} events ...", flush=True)
        load(url, args.events)
        pool = db.open_pool(url, min_size=1, max_size=2)
        now = datetime.now(UTC)
        started = time.perf_counter()
        result = rollups.refresh(pool, now=now, progress=lambda lo, hi: print(
            f"\r  refreshed up to {hi:%Y-%m-%d %H:%M}", end="", flush=True))
        refresh_s = time.perf_counter() - started
        print()
        with db.connect(url, autocommit=True) as conn:
            total = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
            heap = conn.execute("SELECT hypertable_size('audit_events')").fetchone()[0]
            sizes = {t: conn.execute("SELECT hypertable_size(%s)", (t,)).fetchone()[0]
                     for t in (t for pair in rollups.PAIRS for t in pair)}
            start, end = (now - timedelta(days=7)).replace(minute=0, second=0, microsecond=0), now
            raw_ms, raw_rows = timed(lambda: conn.execute(RAW, (start, end)).fetchall(), 5)
        query = SeriesQuery(start=start, end=end, interval="1h", group_by=("event_type",))
        rollup_ms, frame = timed(lambda: rollups.series(pool, query), 20)
        pool.close()
    assert sum(r[2] for r in raw_rows) == frame["events"].sum(), "rollup and raw disagree"
    print(f"\nevents: {total:,}; refresh of the whole history: {refresh_s:.1f} s ({total / refresh_s:,.0f} events/s); "
          f"watermark {result.watermark_1m:%H:%M}")
    print(f"bytes per event (table + indexes): {heap / total:.0f}")
    for table, size in sizes.items():
        print(f"  {table:15} {size / 2**20:8.1f} MiB")
    print(f"7-day hourly counts by type: raw {raw_ms:.1f} ms, rollup {rollup_ms:.1f} ms "
          f"-> {raw_ms / rollup_ms:.0f}x faster (target >= 50x); {len(raw_rows)} series points")


if __name__ == "__main__":
    main()
