"""How stale the read replica is: the time from a commit on the primary until a read on the streaming standby
sees it, for single commits and under a stream of batch writes.

    .venv/bin/python -m bench.replica_lag --commits 200

A throwaway primary (project-local cluster, durable settings) and a hot standby made with pg_basebackup
(storage/timescale/standby.py), both on this machine. Figures: bench/README.md "Read replica".
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench.harness import free_port
from storage.timescale.cluster import LocalCluster
from storage.timescale.standby import LocalStandby


def _visible_after(primary: psycopg.Connection, replica: psycopg.Connection, n: int) -> float:
    """Seconds from the commit of row ``n`` on the primary until the replica returns it."""
    primary.execute("INSERT INTO lag_probe VALUES (%s)", (n,))
    primary.commit()
    committed = time.perf_counter()
    while replica.execute("SELECT 1 FROM lag_probe WHERE n = %s", (n,)).fetchone() is None:
        time.sleep(0.0005)
    return time.perf_counter() - committed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--load-rows", type=int, default=5_000, help="rows per batch of the background writer")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aw-replica-bench-"))
    root.chmod(0o755)
    primary = LocalCluster(root / "primary", port=free_port())
    standby = LocalStandby(root / "standby", port=free_port(), primary=primary)
    try:
        primary.up()
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE lag_probe (n bigint PRIMARY KEY)")
            conn.execute("CREATE TABLE lag_load (n bigint, pad text)")
        standby.up()
        standby.wait_for("auditwatch")
        with psycopg.connect(primary.url) as writer, psycopg.connect(standby.url, autocommit=True) as reader:
            quiet = [_visible_after(writer, reader, n) for n in range(args.commits)]
            stop = threading.Event()

            def load() -> None:
                with psycopg.connect(primary.url) as conn:
                    while not stop.is_set():
                        conn.execute("INSERT INTO lag_load SELECT g, repeat('x', 500) FROM generate_series(1, %s) g",
                                     (args.load_rows,))
                        conn.commit()

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            time.sleep(1)
            busy = [_visible_after(writer, reader, args.commits + n) for n in range(args.commits)]
            stop.set()
            loader.join()
        for name, values in (("idle primary", quiet), (f"primary writing {args.load_rows:,}-row batches", busy)):
            ms = sorted(v * 1000 for v in values)
            print(f"{name}: commit visible on the replica after P50 {statistics.median(ms):.1f} ms, "
                  f"P95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms ({len(ms)} commits)")
    finally:
        standby.destroy()
        primary.destroy()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
