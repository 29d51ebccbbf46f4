"""Scoring throughput: one hour of N events (default 1 M) from 10,000 users through every detector.

The detectors are fitted first on earlier hours of the same synthetic traffic (not timed: refits
run on a slow schedule); then the hour is scored with ``pipeline.detect_all`` (Polars + NumPy), and, in
the same run, by a naive per-row Python baseline computing the same window statistics with
dictionaries. ``--with-db`` also times reading the hour back from TimescaleDB with COPY.

    python bench/scoring.py [--events 1000000] [--users 10000] [--baseline-events 200000] [--with-db]
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import polars as pl

from analytics import pipeline
from analytics.events import SCHEMA

TYPES = np.array(["file_download", "file_upload", "query_executed", "data_export", "export_requested", "user_login",
                  "config_change", "permission_change", "password_change"], dtype=object)
WEIGHTS = np.array([30, 12, 25, 2, 2, 6, 0.3, 0.1, 0.1])


def hour_of_events(n: int, users: int, start, seed: int = 3) -> pl.DataFrame:
    """``n`` events in one hour for ``users`` people (a Zipf-skewed mix, some failed logins)."""
    rng = np.random.default_rng(seed)
    who = rng.zipf(1.3, size=n) % users
    types = TYPES[rng.choice(len(TYPES), size=n, p=WEIGHTS / WEIGHTS.sum())]
    outcome = np.where((types == "user_login") & (rng.random(n) < 0.05), "failure", "success")
    ts = int(start.timestamp() * 1e6) + np.sort(rng.integers(0, 3_600_000_000, size=n))
    rows = rng.lognormal(7, 1, size=n).astype(np.int64)
    size = rng.lognormal(12, 1.2, size=n).astype(np.int64)
    rows = np.where(np.isin(types, ["data_export", "export_requested"]), rows, -1)
    frame = pl.DataFrame({
        "event_id": [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)],
        "ts": ts, "event_type": types.astype(str), "user_id": [f"u{u:05d}" for u in who], "outcome": outcome,
        "source_ip": [f"24.48.{u // 250}.{u % 250}" for u in who], "source_country": "US", "source_asn": "AS7922",
        "user_agent": "Mozilla/5.0", "resource_id": None,
        "rows": rows, "bytes": np.where(types == "file_download", size, 0),
    })
    return frame.with_columns(
        pl.from_epoch("ts", time_unit="us").dt.replace_time_zone("UTC").alias("timestamp"),
        pl.when(pl.col("rows") >= 0).then(pl.concat_str([pl.lit('{"rows":'), pl.col("rows"), pl.lit("}")]))
        .when(pl.col("bytes") > 0).then(pl.concat_str([pl.lit('{"bytes":'), pl.col("bytes"), pl.lit("}")]))
        .otherwise(pl.lit("{}")).alias("metadata"),
    ).select([pl.col(c).cast(t) for c, t in SCHEMA.items()])


def naive(events: list[dict], history_rates: dict) -> int:
    """The same window statistics, one Python row at a time, and a Poisson-tail score per key."""
    failures: dict = defaultdict(int)
    spray: dict = defaultdict(set)
    exports: dict = defaultdict(float)
    per_hour: dict = defaultdict(lambda: defaultdict(float))
    firsts: dict = defaultdict(set)
    privileged: dict = defaultdict(int)
    for e in events:
        minute = e["timestamp"].replace(second=0, microsecond=0)
        if e["event_type"] == "user_login" and e["outcome"] == "failure":
            failures[("user", e["user_id"], minute)] += 1
            failures[("ip", e["source_ip"], minute)] += 1
            spray[(e["source_ip"], minute)].add(e["user_id"])
        meta = orjson.loads(e["metadata"]) if e["metadata"] else {}
        if e["event_type"] in ("data_export", "export_requested"):
            exports[(e["user_id"], minute.replace(minute=0))] += float(meta.get("rows", 1))
        if e["event_type"] in ("permission_change", "config_change", "api_key_created", "password_change"):
            privileged[(e["user_id"], e["event_type"], e["timestamp"].hour)] += 1
        vector = per_hour[e["user_id"]]
        vector["events"] += 1
        vector["bytes"] += float(meta.get("bytes", 0))
        firsts[e["user_id"]].add((e["source_ip"], e["user_agent"]))
    flagged = 0
    for (_kind, key, _), k in failures.items():
        lam = history_rates.get(key, 1e-4)
        tail = 1 - sum(math.exp(-lam) * lam**i / math.factorial(i) for i in range(min(k, 30)))
        flagged += tail < 1e-6
    for _, users in spray.items():
        flagged += len(users) > 10
    for _, rows in exports.items():
        flagged += math.log1p(rows) > 16
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--history-hours", type=int, default=3)
    parser.add_argument("--baseline-events", type=int, default=200_000,
                        help="Rows the naive baseline runs over (its rate is extrapolated to --events).")
    parser.add_argument("--with-db", action="store_true", help="Also time COPY of the hour from TimescaleDB.")
    args = parser.parse_args()

    # History: earlier hours of the same traffic (same users, addresses, mix and volume).
    began = time.perf_counter()
    start = datetime(2024, 3, 5, 7, tzinfo=UTC)
    history = pl.concat([hour_of_events(args.events, args.users, start + timedelta(hours=h), seed=100 + h)
                         for h in range(args.history_hours)])
    print(f"history: {history.height:,} events for {args.users:,} users over {args.history_hours} h "
          f"({time.perf_counter() - began:.1f} s)")
    began = time.perf_counter()
    detectors = pipeline.fit_all(history)
    print(f"fit all detectors: {time.perf_counter() - began:.1f} s (refit job, not the scoring path)")

    hour = hour_of_events(args.events, args.users, start + timedelta(hours=args.history_hours))
    print(f"scoring one hour: {hour.height:,} events, {hour['user_id'].n_unique():,} users")
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        found = pipeline.detect_all(detectors, hour)
        timings.append(time.perf_counter() - began)
    best = min(timings)
    per_detector = {}
    for name, detector in detectors.items():
        began = time.perf_counter()
        detector.detect(hour)
        per_detector[name] = time.perf_counter() - began
    print(f"  polars detectors: best of 3 {best:.2f} s ({hour.height / best:,.0f} events/s), {found.height} anomalies")
    print("  per detector: " + ", ".join(f"{k} {v:.2f} s" for k, v in per_detector.items()))

    sample = hour.head(args.baseline_events).to_dicts()
    rates = {}
    began = time.perf_counter()
    naive(sample, rates)
    naive_s = time.perf_counter() - began
    naive_rate = len(sample) / naive_s
    print(f"  naive per-row Python (same window statistics, subset of the detectors' work): "
          f"{naive_rate:,.0f} events/s → {args.events / naive_rate:.1f} s for {args.events:,} events "
          f"(measured on {len(sample):,})")
    print(f"  speed-up: {args.events / naive_rate / best:.1f}x; target ≤ 5 s for 1 M events on 2 cores: "
          f"{'met' if best * 1_000_000 / hour.height <= 5 else 'MISSED'}")

    if args.with_db:
        from analytics.events import read, to_records
        from bench.harness import database
        from storage.timescale import db
        from storage.timescale.writer import EventWriter

        with database() as url:
            pool = db.open_pool(url, min_size=1, max_size=4)
            try:
                EventWriter(pool).write(to_records(hour))
                began = time.perf_counter()
                back = read(pool, hour["timestamp"].min(), hour["timestamp"].max() + timedelta(1))
                read = time.perf_counter() - began
                print(f"  COPY → Polars read of the hour: {back.height:,} events in {read:.2f} s")
            finally:
                pool.close()


if __name__ == "__main__":
    main()
