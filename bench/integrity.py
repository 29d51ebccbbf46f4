"""What tamper evidence costs, measured in one run on one machine: integrity off vs on.

(a) the storage writer alone (EventWriter.write, 2 threads as the group committer runs, batches of
    --batch events): unsealed vs sealed (staging insert + RETURNING leaf hashes + chain append
    under the head lock);
(b) the foundation's ingest benchmark (b): the HTTP batch API, --clients clients, batches of 1,000,
    with AUDITWATCH_INTEGRITY=false vs true;
(c) `verify` over everything stored, in events/s.
Off and on alternate for --rounds rounds, so drift in a shared machine's load hits both alike;
medians are reported.

    python -m bench.integrity [--url postgresql://...] [--events 200000] [--rounds 2] [--threads 2] [--no-http]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import database, server
from bench.ingest import N_USERS, RATE_LIMIT, event_json, http_batches
from storage.auth import Role
from storage.events import EventRecord, Outcome
from storage.integrity import checkpoints
from storage.timescale import catalog, db, sealing, verify
from storage.timescale.writer import EventWriter


def records(n: int) -> list[EventRecord]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        e = event_json(i, now)
        out.append(EventRecord(
            event_id=uuid.UUID(e["event_id"]), timestamp=datetime.fromisoformat(e["timestamp"]),
            event_type=e["event_type"], user_id=e["user_id"], received_at=now, outcome=Outcome(e["outcome"]),
            source="bench", source_ip=e["source_ip"], user_agent=e["user_agent"], resource_id=e["resource_id"],
            metadata=e["metadata"]))
    return out


def writer_rate(url: str, n: int, batch: int, sealed: bool, threads: int = 2) -> float:
    pool = db.open_pool(url, min_size=threads, max_size=threads)
    writer = EventWriter(pool, sealed=sealed)
    data = records(n)
    chunks = [data[i:i + batch] for i in range(0, n, batch)]
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not chunks:
                    return
                part = chunks.pop()
            writer.write(part)

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    pool.close()
    return n / elapsed


def _backend_cpu(pid: int) -> float:
    """CPU seconds a local PostgreSQL backend has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_event(url: str, n: int, batch: int, sealed: bool) -> tuple[float, float]:
    """(server, client) CPU microseconds per event written through one connection: unlike wall-clock
    rates, this barely moves when other processes compete for the cores. Local servers only."""
    pool = db.open_pool(url, min_size=1, max_size=1)
    writer = EventWriter(pool, sealed=sealed)
    data = records(n)
    with pool.connection() as conn:
        pid = conn.info.backend_pid
    server0, client0 = _backend_cpu(pid), time.process_time()
    for i in range(0, n, batch):
        writer.write(data[i:i + batch])
    server, client = _backend_cpu(pid) - server0, time.process_time() - client0
    pool.close()
    return server / n * 1e6, client / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing TimescaleDB (default: a fresh durable local cluster)")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="writer threads for (a)")
    parser.add_argument("--no-http", action="store_true", help="skip (b), the HTTP runs")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)

    figures: dict[str, list[float]] = {k: [] for k in ("writer off", "writer on", "http off", "http on")}
    with database(args.url) as url:
        pool = db.open_pool(url, min_size=1, max_size=2)
        catalog.register_users(pool, [{"user_id": f"bench{i:05d}"} for i in range(N_USERS)], "bench")
        _, key = catalog.create_key(pool, f"bench-{uuid.uuid4().hex[:8]}", Role.SYSTEM, "bench")
        pool.close()

        cpu: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        local = args.url is None
        for r in range(args.rounds):
            for sealed in (False, True):
                label = "on" if sealed else "off"
                if local:
                    cpu[label].append(cpu_per_event(url, min(args.events, 50_000), args.batch, sealed))
                    print(f"round {r + 1}: (a') CPU per event, integrity {label:3}: server "
                          f"{cpu[label][-1][0]:.1f} us, client {cpu[label][-1][1]:.1f} us", flush=True)
                rate = writer_rate(url, args.events, args.batch, sealed, args.threads)
                figures[f"writer {label}"].append(rate)
                print(f"round {r + 1}: (a) writer, integrity {label:3}: {rate:,.0f} events/s", flush=True)
        for r in range(0 if args.no_http else args.rounds):
            for sealed in (False, True):
                label = "on" if sealed else "off"
                with server(url, AUDITWATCH_RATE_LIMIT_PER_MINUTE=RATE_LIMIT,
                            AUDITWATCH_INTEGRITY="true" if sealed else "false") as base:
                    http_batches(base, key, 20_000, args.clients)  # warm-up
                    rate, _ = http_batches(base, key, args.events, args.clients)
                figures[f"http {label}"].append(rate)
                print(f"round {r + 1}: (b) HTTP batch API, integrity {label:3}: {rate:,.0f} events/s", flush=True)

        pool = db.open_pool(url, min_size=1, max_size=2)
        signer = checkpoints.generate()
        sealing.write_checkpoint(pool, signer, now=datetime.now(UTC))
        with pool.connection() as conn:
            sealed_rows = conn.execute("SELECT count(*) FROM audit_events WHERE batch_seq IS NOT NULL").fetchone()[0]
            conn.execute("DELETE FROM audit_events WHERE batch_seq IS NULL")  # the unsealed runs' rows
        started = time.perf_counter()
        report = verify.verify(pool, trusted_keys=[checkpoints.public_bytes(signer)])
        verify_s = time.perf_counter() - started
        pool.close()

    med = {k: statistics.median(v) for k, v in figures.items() if v}
    print("\nsummary (medians)")
    print(f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"  (a) writer       off {med['writer off']:>9,.0f}  on {med['writer on']:>9,.0f} events/s   "
          f"on/off = {med['writer on'] / med['writer off']:.2f}")
    if cpu["off"]:
        off_s, off_c = (statistics.median(x[i] for x in cpu["off"]) for i in (0, 1))
        on_s, on_c = (statistics.median(x[i] for x in cpu["on"]) for i in (0, 1))
        print(f"  (a') CPU/event   off server {off_s:.1f} + client {off_c:.1f} us;  on server {on_s:.1f} + "
              f"client {on_c:.1f} us   (+{on_s + on_c - off_s - off_c:.1f} us per event)")
    if not args.no_http:
        print(f"  (b) HTTP batch   off {med['http off']:>9,.0f}  on {med['http on']:>9,.0f} events/s   "
              f"on/off = {med['http on'] / med['http off']:.2f}   (target >= 0.85)")
    print(f"  (c) verify       {report.events:,} events ({sealed_rows:,} sealed) in {verify_s:.1f} s: "
          f"{report.events / verify_s:,.0f} events/s, {report.chain_length:,} batches, ok={report.ok}")


if __name__ == "__main__":
    main()
