"""Memory bounds under hostile input: RSS of the API, the syslog listener and the bus writer while attacked.

Each component runs as its real process (gunicorn for the API with its workers, ``auditwatch syslog``,
``auditwatch writer`` on a real nats-server). A sampler reads the RSS of the process and all its
children every 20 ms; for each attack the table shows the RSS before, the peak during it and the RSS
after, so "bounded" is a number per component, not a claim.

Attacks:
- API: OTLP gzip bombs (32 KB that inflate past the body limit), too many OTLP records, JSON nested
  200,000 deep, 30 MB fields, and 64 clients at once each posting 4 MB batches;
- syslog: 20,000 UDP peers (one source port each), 400 TCP connections each sending 1 MB with no
  newline, and lines at the size limit;
- writer: 2,000 bus messages of up to 1 MB (NATS max_payload), deeply nested or with huge fields, published straight to the
  stream (as a compromised publisher would), which the writer must re-validate.

    .venv/bin/python -m bench.hostile_memory [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
import psutil
import requests

from bench.fuzz import admin_key
from bench.harness import database, free_port
from bench.syslog import nats_server, process

MB = 1024 * 1024


class Sampler:
    """Peak RSS (MB) of a process tree, sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> float:
        total = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / MB

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    @contextmanager
    def attack(self, rows: list, component: str, name: str):
        time.sleep(1.0)
        before = self.rss()
        self.peak = before
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        started = time.monotonic()
        outcome: dict = {}
        try:
            yield outcome
        finally:
            seconds = time.monotonic() - started
            time.sleep(1.5)
            self._stop.set()
            self._thread.join()
            after = self.rss()
            rows.append((component, name, before, self.peak, after, seconds, outcome.get("note", "")))
            print(f"{component:8} {name:44} before {before:7.1f} MB  peak {self.peak:7.1f} MB  after {after:7.1f} MB"
                  f"  ({seconds:5.1f} s) {outcome.get('note', '')}", flush=True)


def _event(**fields) -> dict:
    return {"event_id": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(), "event_type": "user_login",
            "user_id": "mallory", "outcome": "failure", **fields}


def _statuses(responses: list) -> str:
    counts: dict[int, int] = {}
    for r in responses:
        counts[r] = counts.get(r, 0) + 1
    return "responses " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _post(url: str, body: bytes, headers: dict) -> int:
    try:
        return requests.post(url, data=body, headers=headers, timeout=120).status_code
    except requests.RequestException:
        return 0


def api_attacks(base: str, key: str, sampler: Sampler, rows: list) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    pool = ThreadPoolExecutor(64)

    record = {"timeUnixNano": str(time.time_ns()), "body": {"stringValue": "x"},
              "attributes": [{"key": "user.id", "value": {"stringValue": "mallory"}}]}
    inflated = orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}) + b" " * (40 * MB)
    bomb = gzip.compress(inflated, 9)
    with sampler.attack(rows, "api", f"OTLP gzip bomb x64 ({len(bomb) // 1024} KB -> 40 MB)") as out:
        headers = {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        out["note"] = _statuses(list(pool.map(lambda _: _post(base + "/v1/logs", bomb, headers), range(64))))

    many = orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record] * 200_000}]}]})
    packed = gzip.compress(many, 9)
    with sampler.attack(rows, "api", f"OTLP 200k records x16 ({len(packed) // 1024} KB gzip)") as out:
        headers = {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        out["note"] = _statuses(list(pool.map(lambda _: _post(base + "/v1/logs", packed, headers), range(16))))

    deep = b'{"event_id":"' + str(uuid.uuid4()).encode() + b'","metadata":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with sampler.attack(rows, "api", "JSON nested 200,000 deep x64") as out:
        headers = {**auth, "Content-Type": "application/json"}
        out["note"] = _statuses(list(pool.map(lambda _: _post(base + "/api/v1/logs", deep, headers), range(64))))

    huge = orjson.dumps(_event(user_id="u" * (30 * MB)))
    with sampler.attack(rows, "api", "30 MB user_id x16") as out:
        headers = {**auth, "Content-Type": "application/json"}
        out["note"] = _statuses(list(pool.map(lambda _: _post(base + "/api/v1/logs", huge, headers), range(16))))

    batch = orjson.dumps([_event(metadata={"blob": "b" * 4000}) for _ in range(1000)])
    with sampler.attack(rows, "api", f"64 clients x 4 batches of {len(batch) // MB} MB") as out:
        headers = {**auth, "Content-Type": "application/json"}
        out["note"] = _statuses(list(pool.map(lambda _: _post(base + "/api/v1/logs/batch", batch, headers),
                                              range(256))))
    pool.shutdown()


def syslog_attacks(udp: int, tcp: int, sampler: Sampler, rows: list) -> None:
    for _ in range(300):  # the listener binds once it has started (imports, database)
        try:
            socket.create_connection(("127.0.0.1", tcp), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    line = b"<38>1 2024-05-01T10:00:00Z host sshd 1 - - Failed password for invalid user x from 203.0.113.9 port 22\n"
    with sampler.attack(rows, "syslog", "400 TCP peers x 1 MB without a newline") as out:
        conns, refused = [], ""
        for _ in range(400):
            try:
                conns.append(socket.create_connection(("127.0.0.1", tcp), timeout=5))
            except OSError as exc:
                refused = f" (then {exc})"
                break
        chunk = b"A" * 65536
        for _ in range(16):
            for c in conns:
                try:
                    c.sendall(chunk)
                except OSError:
                    pass
        for c in conns:
            c.close()
        out["note"] = f"{len(conns)} connections opened{refused}"

    big = b"<38>1 2024-05-01T10:00:00Z host app 1 - - " + b"x" * (16 * 1024) + b"\n"
    with sampler.attack(rows, "syslog", "200 TCP peers x 500 lines of 16 KB") as out:
        def send(_):
            try:
                with socket.create_connection(("127.0.0.1", tcp), timeout=30) as c:
                    c.sendall(big * 500)
                return 1
            except OSError:
                return 0
        with ThreadPoolExecutor(50) as pool:
            out["note"] = f"{sum(pool.map(send, range(200)))} peers done"

    with sampler.attack(rows, "syslog", "20,000 UDP peers (one port each)") as out:
        sent = 0
        for _ in range(40):
            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(500)]
            for s in socks:
                s.sendto(line, ("127.0.0.1", udp))
                sent += 1
            for s in socks:
                s.close()
        out["note"] = f"{sent:,} datagrams"


def writer_attacks(nats_url: str, sampler: Sampler, rows: list) -> None:
    import nats
    import nats.js.errors

    async def publish(bodies: list[bytes]) -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream(timeout=30)
        for _ in range(600):  # the writer creates the stream when it has started
            try:
                await js.stream_info("AUDITWATCH_EVENTS")
                break
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.1)
        for body in bodies:
            await js.publish("auditwatch.events", body, headers={"Nats-Msg-Id": str(uuid.uuid4())})
        await nc.close()

    now = datetime.now(UTC).isoformat()
    deep = b'{"event_id":"' + str(uuid.uuid4()).encode() + b'","metadata":' + b'{"a":' * 50_000 + b"1" + \
        b"}" * 50_000 + b"}"
    huge = [orjson.dumps({**_event(user_id="u" * (900 * 1024)), "received_at": now})]  # under NATS max_payload
    with sampler.attack(rows, "writer", "1,000 bus messages nested 50,000 deep") as out:
        asyncio.run(publish([deep] * 1000))
        time.sleep(10)
        out["note"] = f"{len(deep) // 1024} KB each"
    with sampler.attack(rows, "writer", "1,000 bus messages with a 900 KB user_id") as out:
        asyncio.run(publish(huge * 1000))
        time.sleep(10)
        out["note"] = "dead-lettered after re-validation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing database (default: a throwaway durable cluster)")
    parser.add_argument("--only", choices=["api", "syslog", "writer"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["api", "syslog", "writer"])
    rows: list = []
    with database(args.url) as url:
        key = admin_key(url)
        if "api" in only:
            port = free_port()
            with process(["serve"], url, "api", AUDITWATCH_PORT=str(port), AUDITWATCH_WORKERS="2") as api:
                base = f"http://127.0.0.1:{port}"
                for _ in range(300):
                    try:
                        if requests.get(base + "/healthz", timeout=1).ok:
                            break
                    except requests.RequestException:
                        time.sleep(0.1)
                api_attacks(base, key, Sampler(api.pid), rows)
        if "syslog" in only:
            udp, tcp = free_port(), free_port()
            with process(["syslog", "--udp-port", str(udp), "--tcp-port", str(tcp)], url, "syslog") as listener:
                time.sleep(3)
                syslog_attacks(udp, tcp, Sampler(listener.pid), rows)
        if "writer" in only:
            with nats_server() as nats_url, process(["writer"], url, "writer", AUDITWATCH_BUS_URL=nats_url,
                                                    AUDITWATCH_BUS_SYNC="interval") as writer:
                time.sleep(3)
                writer_attacks(nats_url, Sampler(writer.pid), rows)
    print("\n| component | attack | RSS before | peak | after | outcome |")
    print("|---|---|---:|---:|---:|---|")
    for component, name, before, peak, after, _, note in rows:
        print(f"| {component} | {name} | {before:.0f} MB | {peak:.0f} MB | {after:.0f} MB | {note} |")


if __name__ == "__main__":
    main()
