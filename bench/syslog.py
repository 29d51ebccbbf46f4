"""Syslog and bus throughput, measured in one run on one machine against a durable TimescaleDB.

(a) parse only: ``ingest.syslog.parse_line`` over the loghub OpenSSH lines (the CPU ceiling);
(b) syslog over UDP and over TCP into a real ``auditwatch syslog`` process: lines/s parsed and
    stored (clock stops when the last line is in the database; UDP also reports what it dropped);
(c) the HTTP batch API, direct path vs the JetStream bus (a real nats-server and one
    ``auditwatch writer``): events/s acknowledged to clients and events/s stored.

    python -m bench.syslog [--lines 100000] [--events 100000] [--udp-rate 8500] [--skip-bus] [--url ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
import requests

from bench.harness import ROOT, database, free_port, server
from bench.ingest import N_USERS, event_json
from ingest.syslog import parse_line
from storage.auth import Role
from storage.timescale import catalog, db

LOGHUB = ROOT.parent.parent / "shared" / "data" / "loghub"
if not LOGHUB.exists():
    LOGHUB = Path("/work/shared/data/loghub")


def lines(n: int, run: str) -> list[bytes]:
    """n loghub OpenSSH lines, each made unique (the host name carries the run and a counter)."""
    base = (LOGHUB / "OpenSSH_2k.log").read_text().splitlines()
    return [base[i % len(base)].replace("LabSZ", f"{run}-{i // len(base)}", 1).encode() for i in range(n)]


def count(url: str, like: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM audit_events WHERE resource_id LIKE %s", (like,)).fetchone()[0]


def wait_count(url: str, like: str, target: int, quiet: float = 5.0, timeout: float = 600) -> tuple[int, float]:
    """Poll until ``target`` rows are stored, or the count stops moving for ``quiet`` seconds; returns the count
    and when (perf_counter) it last grew, so the quiet wait is not charged to the throughput."""
    last, last_change, deadline = -1, time.perf_counter(), time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        n = count(url, like)
        if n != last:
            last, last_change = n, time.perf_counter()
        # Before the first row, allow a slow start (a loaded machine, the geo database loading): 60 s.
        if n >= target or time.perf_counter() - last_change > (quiet if n else 60.0):
            return n, last_change
        time.sleep(0.1)
    return last, last_change


@contextmanager
def process(args: list[str], url: str, log_name: str, **env: str):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "AUDITWATCH_DATABASE_URL": url, **env}
    log = Path(tempfile.mkstemp(prefix=f"auditwatch-bench-{log_name}-", suffix=".log")[1])
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", *args], env=environ, cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        time.sleep(2)
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.unlink(missing_ok=True)


@contextmanager
def nats_server():
    store = Path(tempfile.mkdtemp(prefix="auditwatch-bench-nats-"))
    port = free_port()
    proc = subprocess.Popen([shutil.which("nats-server") or "/usr/sbin/nats-server", "-js", "-a", "127.0.0.1",
                             "-p", str(port), "-sd", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(store, ignore_errors=True)


def wait_port(port: int, timeout: float = 120) -> None:
    """Wait until something listens on ``port`` (a process on a loaded machine takes a while to start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def parse_only(n: int) -> float:
    data = [line.decode() for line in lines(n, "parse")]
    now = datetime.now(UTC)
    started = time.perf_counter()
    for line in data:
        parse_line(line, now=now)
    return n / (time.perf_counter() - started)


def syslog_run(url: str, n: int, udp_rate: float, processes: int = 1,
               connections: int = 1) -> dict[str, tuple[float, int, int]]:
    udp, tcp = free_port(), free_port()
    results = {}
    # Its own ops port: two syslog processes on one machine (another run, a test) must not collide on 9465.
    with process(["syslog", "--udp-port", str(udp), "--tcp-port", str(tcp), "--processes", str(processes)], url,
                 "syslog",
                 AUDITWATCH_SYSLOG_OPS_PORT=str(free_port())):
        wait_port(tcp)
        run = f"tcp{uuid.uuid4().hex[:6]}"
        every = lines(n, run)
        payloads = [b"\n".join(every[i::connections]) + b"\n" for i in range(connections)]  # one per sender

        def send(payload: bytes) -> None:
            with socket.create_connection(("127.0.0.1", tcp)) as s:
                s.sendall(payload)  # back-pressure: this blocks while the listener's queue is full

        started = time.perf_counter()
        with ThreadPoolExecutor(connections) as senders:
            list(senders.map(send, payloads))
        stored, done = wait_count(url, f"{run}-%", n)
        results["tcp"] = (stored / (done - started), stored, n)
        tcp_run = run

        run = f"udp{uuid.uuid4().hex[:6]}"
        data = lines(n, run)
        started = time.perf_counter()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, line in enumerate(data):
                if udp_rate and i % 100 == 0:  # paced in steps of 100 datagrams (0: as fast as it can)
                    ahead = started + i / udp_rate - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
                s.sendto(line, ("127.0.0.1", udp))
        offered = n / (time.perf_counter() - started)
        stored, done = wait_count(url, f"{run}-%", n)
        results["udp"] = (stored / (done - started), stored, n)
        results["udp offered"] = (offered, n, n)
        # TCP never loses a line: a count cut short by the quiet window above must catch up by now.
        tcp_final, _ = wait_count(url, f"{tcp_run}-%", n, quiet=15)
        results["tcp stored in the end"] = (tcp_final, tcp_final, n)
    return results


def http_run(base: str, key: str, url: str, n: int, clients: int = 4) -> tuple[float, float]:
    """(events/s acknowledged, events/s stored) through POST /api/v1/logs/batch."""
    now = datetime.now(UTC)
    tag = f"http{uuid.uuid4().hex[:6]}"
    bodies = []
    for start in range(0, n, 1000):
        batch = [{**event_json(i, now), "resource_id": f"{tag}-{i}"} for i in range(start, min(n, start + 1000))]
        bodies.append(orjson.dumps(batch))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def send(body: bytes) -> None:
        # A client's contract: a 503 acknowledged nothing, so resend after Retry-After (duplicates are dropped).
        for _ in range(20):
            with requests.post(f"{base}/api/v1/logs/batch", data=body, headers=headers, timeout=120) as r:
                if r.status_code == 503:
                    time.sleep(min(float(r.headers.get("Retry-After", 1)), 5))
                    continue
                r.raise_for_status()
                answer = r.json()
                assert answer["accepted"] + answer.get("duplicates", 0) == body.count(b'"event_id"'), r.text[:300]
                return
        raise RuntimeError("503 twenty times in a row")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, bodies))
    acked = time.perf_counter() - started
    stored, done = wait_count(url, f"{tag}-%", n)
    assert stored == n, f"only {stored} of {n} stored"
    return n / acked, n / (done - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing migrated-or-empty database (default: a fresh durable cluster)")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--udp-rate", type=float, default=8500, help="UDP lines/s offered (0: as fast as possible)")
    parser.add_argument("--skip-bus", action="store_true", help="only (a) and (b)")
    parser.add_argument("--syslog-processes", type=int, default=1,
                        help="the listener's store processes (`auditwatch syslog --processes`)")
    parser.add_argument("--tcp-connections", type=int, default=1,
                        help="TCP senders at once, the lines dealt out between them (relays, hosts)")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)

    print(f"(a) parse only: {parse_only(min(args.lines, 50_000)):,.0f} lines/s", flush=True)
    with database(args.url) as url:
        pool = db.open_pool(url, min_size=1, max_size=2)
        catalog.register_users(pool, [{"user_id": f"bench{i:05d}"} for i in range(N_USERS)], "bench")
        _, key = catalog.create_key(pool, f"bench-{uuid.uuid4().hex[:8]}", Role.SYSTEM, "bench")
        pool.close()
        for transport, (rate, stored, sent) in syslog_run(url, args.lines, args.udp_rate, args.syslog_processes,
                                                                  args.tcp_connections).items():
            if transport == "udp offered":
                print(f"    UDP offered at {rate:,.0f} lines/s", flush=True)
                continue
            if transport == "tcp stored in the end":
                print(f"    TCP lines stored in the end: {stored:,} of {sent:,}", flush=True)
                continue
            lost = (f"; UDP dropped {sent - stored:,} = {(sent - stored) / sent:.2%} (sent faster than they could be "
                    "stored)") if stored < sent else ""
            print(f"(b) syslog {transport}: {rate:,.0f} lines/s parsed and stored ({stored:,} of {sent:,}{lost})",
                  flush=True)
        if args.skip_bus:
            return
        with server(url, workers=2) as base:
            direct = http_run(base, key, url, args.events)
        print(f"(c) direct: {direct[0]:,.0f} events/s acknowledged, {direct[1]:,.0f} events/s stored", flush=True)
        with nats_server() as nats_url, server(url, workers=2, AUDITWATCH_BUS_URL=nats_url) as base, \
                process(["writer"], url, "writer", AUDITWATCH_BUS_URL=nats_url,
                        AUDITWATCH_WRITER_OPS_PORT=str(free_port())):
            bus = http_run(base, key, url, args.events)
        print(f"(c) bus:    {bus[0]:,.0f} events/s acknowledged, {bus[1]:,.0f} events/s stored "
              f"(×{bus[1] / direct[1]:.2f} of direct, one writer)", flush=True)


if __name__ == "__main__":
    main()
