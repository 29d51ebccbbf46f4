"""A JetStream cluster of real nats-server processes on loopback (nats-server's own clustering).

Used by the scale-out test (tests/ingest/test_bus_cluster.py) and the writer-scaling benchmark
(bench/bus_scale.py). Each node gets its own client port, route port and store directory; the routes
name every node, and JetStream elects its meta leader once a quorum (2 of 3) is up.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import nats
import nats.errors
import nats.js.errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary() -> str:
    found = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if found is None:
        raise RuntimeError("nats-server is not installed: run scripts/install-nats.sh (make system-deps)")
    return found


class NatsCluster:
    def __init__(self, root: Path, size: int = 3, name: str = "auditwatch") -> None:
        self.root = root
        self.name = name
        self.client_ports = [_free_port() for _ in range(size)]
        self.route_ports = [_free_port() for _ in range(size)]
        self.processes: list[subprocess.Popen | None] = [None] * size

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    @property
    def url(self) -> str:
        """Every node, comma-separated: what AUDITWATCH_BUS_URL takes."""
        return ",".join(self.urls)

    def log(self, i: int) -> Path:
        return self.root / f"nats-{i}.log"

    def start_node(self, i: int) -> None:
        routes = ",".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != i)
        store = self.root / f"js-{i}"
        store.mkdir(parents=True, exist_ok=True)
        self.processes[i] = subprocess.Popen(
            [_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.client_ports[i]), "-sd", str(store),
             "--server_name", f"n{i}", "--cluster_name", self.name,
             "--cluster", f"nats://127.0.0.1:{self.route_ports[i]}", "--routes", routes],
            stdout=self.log(i).open("ab"), stderr=subprocess.STDOUT)

    def start(self, timeout: float = 60.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(len(self.processes)):
            self.start_node(i)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until JetStream answers through every live node (a meta leader is elected)."""
        deadline = time.monotonic() + timeout
        live = [u for u, p in zip(self.urls, self.processes, strict=True) if p is not None and p.poll() is None]
        while time.monotonic() < deadline:
            for i, p in enumerate(self.processes):
                if p is not None and p.poll() is not None and self.urls[i] in live:
                    raise RuntimeError(f"nats-server n{i} exited: {self.log(i).read_text()[-2000:]}")
            if all(asyncio.run(_jetstream_ready(u)) for u in live):
                return
            time.sleep(0.25)
        raise RuntimeError("the JetStream cluster elected no leader in time: "
                           + " | ".join(self.log(i).read_text()[-500:] for i in range(len(self.processes))))

    def kill(self, i: int) -> None:
        """SIGKILL one node (no clean shutdown, as a crashed machine)."""
        process = self.processes[i]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def stop(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in self.processes:
            if process is not None:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def _jetstream_ready(url: str) -> bool:
    try:
        nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
    except (OSError, nats.errors.Error):
        return False
    try:
        await nc.jetstream().account_info()
        return True
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
        return False
    finally:
        await nc.close()
