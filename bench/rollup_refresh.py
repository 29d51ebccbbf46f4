"""The Apache edition's rollup refresh under steady ingest: the old hour-long late allowance vs exact invalidations.

Writes ``--history-hours`` of events at ``--rate`` events per minute with EventWriter (one batch a minute), brings
the rollups up to date, then simulates ``--minutes`` minutes: each writes the minute's batch and a late batch
(``--late`` events from one minute 2 to 40 minutes back, a shipper catching up, so the writer's notes are
exercised), then refreshes, alternately with ``late=timedelta(hours=1)`` (the behaviour before migration 0025)
and with the default (none: the watermark and the noted ranges only). Prints the time per refresh and the
minutes it recomputed, per mode, and the ratio of the medians, all from the same run.

    python -m bench.rollup_refresh [--url postgresql://...] [--rate 1000] [--minutes 40] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from psycopg import sql

from bench.harness import database, percentile
from storage.events import EventRecord, Outcome
from storage.timescale import db, rollups
from storage.timescale.writer import EventWriter

TYPES = ("user_login", "file_download", "file_upload", "data_query", "data_export")
MINUTE = timedelta(minutes=1)
MODES = {"late allowance 1 h (before)": timedelta(hours=1), "exact invalidations (now)": timedelta(0)}


def minute_of(start: datetime, n: int, *, offset: int) -> list[EventRecord]:
    """``n`` events spread over the minute from ``start``."""
    return [EventRecord(event_id=uuid.uuid4(), timestamp=start + timedelta(microseconds=i * 60_000_000 // n),
                        event_type=TYPES[(i + offset) % len(TYPES)], user_id=f"bench{(i + offset) % 2000:05d}",
                        received_at=start + MINUTE, outcome=Outcome.FAILURE if i % 17 == 0 else Outcome.SUCCESS,
                        source="bench", source_ip=f"81.2.{i % 250}.{(i // 250) % 250 + 1}",
                        source_country=("GB", "US", "DE", None)[i % 4], metadata={"n": i})
            for i in range(n)]


def unlike_raw(conn, result: rollups.RefreshResult) -> dict[str, int]:
    """Per rollup, its rows up to its watermark that the raw events counted the same way lack, and the reverse."""
    dimensions = {"events_1m": rollups.DIMENSIONS, "events_type_1m": rollups.TYPE_DIMENSIONS,
                  "events_country_1m": rollups.COUNTRY_DIMENSIONS}
    found = {}
    for minutes, hours in rollups.PAIRS:
        columns = sql.SQL(", ").join(map(sql.Identifier, dimensions[minutes]))
        for table, step, mark in ((minutes, "1 minute", result.watermark_1m), (hours, "1 hour", result.watermark_1h)):
            stored = sql.SQL("SELECT bucket, {c}, events FROM {t} WHERE bucket < %(mark)s").format(
                c=columns, t=sql.Identifier(table))
            counted = sql.SQL('SELECT time_bucket(%(step)s::interval, "timestamp"), {c}, count(*) FROM audit_events '
                              'WHERE "timestamp" < %(mark)s GROUP BY 1, {c}').format(c=columns)
            found[table] = conn.execute(sql.SQL(
                "SELECT (SELECT count(*) FROM ({a} EXCEPT ALL {b}) AS x) + (SELECT count(*) FROM ({b} EXCEPT ALL {a}) "
                "AS y)").format(a=stored, b=counted), {"mark": mark, "step": step}).fetchone()[0]
    return found


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--rate", type=int, default=1000, help="events per simulated minute")
    parser.add_argument("--late", type=int, default=20, help="late events written each minute")
    parser.add_argument("--history-hours", type=int, default=2)
    parser.add_argument("--minutes", type=int, default=40, help="simulated minutes, each with one refresh")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {loadavg()}")
    with database(args.url, keep=args.keep) as url:
        pool = db.open_pool(url, min_size=1, max_size=4)
        writer = EventWriter(pool)
        # On the hour, so a run does not depend on the minute it starts at: a late minute in an earlier hour
        # costs that hour's hourly rollups, and the simulated minutes run from :00.
        clock = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - args.history_hours * 60 * MINUTE
        print(f"writing {args.history_hours} h at {args.rate:,} events/min ...", flush=True)
        for m in range(args.history_hours * 60):
            writer.write(minute_of(clock, args.rate, offset=m))
            clock += MINUTE
        rollups.refresh(pool, now=clock)
        samples: dict[str, list[tuple[float, float, int]]] = {mode: [] for mode in MODES}
        crossing: dict[str, list[tuple[bool, float]]] = {mode: [] for mode in MODES}
        for m in range(args.minutes):
            writer.write(minute_of(clock, args.rate, offset=m))
            behind = 2 + (m * 7) % 39  # 2 to 40 minutes late
            writer.write(minute_of(clock - behind * MINUTE, args.late, offset=m))
            crossed = (clock - behind * MINUTE).hour != clock.hour
            clock += MINUTE
            mode = list(MODES)[m % 2]
            started = time.perf_counter()
            result = rollups.refresh(pool, now=clock, late=MODES[mode])
            elapsed = time.perf_counter() - started
            minutes = sum((high - low) / MINUTE for low, high in result.ranges)
            samples[mode].append((elapsed * 1000, minutes, len(result.ranges)))
            crossing[mode].append((crossed, elapsed * 1000))
        with pool.connection() as conn:
            raw = conn.execute("SELECT count(*) FROM audit_events WHERE \"timestamp\" < %s",
                               (result.watermark_1m,)).fetchone()[0]
            counted = conn.execute("SELECT sum(events) FROM events_1m").fetchone()[0]
            differing = {table: rows for table, rows in unlike_raw(conn, result).items() if rows}
        pool.close()
    assert raw == counted, f"the rollup counts {counted} events, the raw table {raw}"
    assert not differing, f"rows unlike the raw events' counts, by rollup: {differing}"
    print(f"load average after: {loadavg()}")
    print(f"\n{args.rate:,} events/min for {args.history_hours} h, then {args.minutes} refreshes, one per simulated "
          f"minute, alternating; {args.late} events 2-40 min late each minute; rollup == raw: {raw:,} events, every "
          "rollup row by row\n")
    print("| mode | refreshes | time per refresh, median (p95) | minutes recomputed, median (max) | ranges |")
    print("|---|---|---|---|---|")
    medians = {}
    for mode, rows in samples.items():
        ms, minutes, ranges = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        medians[mode] = statistics.median(ms)
        print(f"| {mode} | {len(rows)} | {medians[mode]:,.0f} ms ({percentile(ms, 95):,.0f} ms) | "
              f"{statistics.median(minutes):.0f} ({max(minutes):.0f}) | {statistics.median(ranges):.0f} |")
    for mode, rows in crossing.items():
        same = [ms for crossed, ms in rows if not crossed]
        earlier = [ms for crossed, ms in rows if crossed]
        if same and earlier:
            print(f"{mode}: median {statistics.median(same):,.0f} ms when the late minute is in the current hour "
                  f"({len(same)}), {statistics.median(earlier):,.0f} ms when it is in an earlier one ({len(earlier)})")
    before, now = medians.values()
    print(f"\nexact invalidations: {before / now:.1f}x less time per refresh (medians, same run)")


if __name__ == "__main__":
    main()
