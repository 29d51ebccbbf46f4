"""The whole platform as real processes, for fault injection (tests/faults, bench/faults.py).

A private embedded cluster (so restarting PostgreSQL touches nothing else), a nats-server with
JetStream, and the components as ``python -m auditwatch.cli ...`` children, each in its own process
group so that SIGKILL takes a gunicorn master and its workers at once:

- ``api``: the API writing straight to the database (HTTP ingest, group commit);
- ``api_bus``: a second API that publishes to JetStream (201 = stored by the bus);
- ``writer``: the bus consumer into the database;
- ``syslog``: the syslog TCP listener, writing straight to the database (through ``syslog_processes`` store
  worker processes when that is 2 or more);
- ``worker``: the scheduled jobs (checkpoints, alert rules and delivery) as the leader.

Load generators (``HttpLoad``, ``SyslogLoad``) remember exactly what was acknowledged. The harness is the
supervisor: ``kill`` SIGKILLs a component and ``start`` brings it back, as systemd would.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

from storage.auth import Role
from storage.timescale import catalog, db, migrations, roles
from storage.timescale.cluster import DATABASE, LocalCluster

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready: object  # callable() -> bool
    process: subprocess.Popen | None = None
    kills: int = 0

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", *self.argv], env=self.env,
                                        cwd=str(self.log.parent), stdout=self.log.open("ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the whole process group: no handler runs, nothing is flushed or released cleanly."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def wait_ready(self, timeout: float = 90) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout} s: {self.log.read_text()[-3000:]}")


class Stack:
    def __init__(self, root: Path, *, api_workers: int = 1, syslog_processes: int = 1) -> None:
        self.root = root
        self.syslog_processes = syslog_processes
        self.cluster = LocalCluster(root / "data", port=free_port(), fast=True)
        self.nats_port = free_port()
        self.nats: subprocess.Popen | None = None
        self.api_port, self.api_bus_port, self.syslog_port = free_port(), free_port(), free_port()
        self.api_workers = api_workers
        self.components: dict[str, Component] = {}
        self.key = ""
        self.pg_restarts = 0

    @property
    def owner_url(self) -> str:
        return self.cluster.url_for(DATABASE)

    # -- lifecycle -----------------------------------------------------------------------------------

    def up(self) -> None:
        self.cluster.up()
        with psycopg.connect(self.owner_url) as conn:
            migrations.migrate(conn)
            roles.apply(conn)
        pool = db.open_pool(self.owner_url, min_size=1, max_size=1, name="faults-setup")
        try:
            _, self.key = catalog.create_key(pool, "faults", Role.SYSTEM, "faults")
        finally:
            pool.close()
        self._start_nats()
        base = {**os.environ, "PYTHONPATH": str(ROOT), "AUDITWATCH_DATA_DIR": str(self.cluster.data_dir),
                "AUDITWATCH_DB_PORT": str(self.cluster.port), "AUDITWATCH_UNKNOWN_USERS": "register",
                "AUDITWATCH_DASHBOARD": "false", "AUDITWATCH_ANALYTICS_ENABLED": "false",
                "AUDITWATCH_INTEGRITY_CHECKPOINT_SECONDS": "2", "AUDITWATCH_ALERTS_EVAL_SECONDS": "2",
                "AUDITWATCH_ALERTS_DISPATCH_SECONDS": "0.5", "AUDITWATCH_BUS_ACK_WAIT": "5",
                "AUDITWATCH_WORKERS": str(self.api_workers), "AUDITWATCH_THREADS": "8",
                "AUDITWATCH_SYSLOG_UDP_PORT": "0", "AUDITWATCH_SYSLOG_TCP_PORT": str(self.syslog_port),
                "AUDITWATCH_SYSLOG_PROCESSES": str(self.syslog_processes),
                "AUDITWATCH_KEY_CACHE_SECONDS": "60"}
        for name in ("AUDITWATCH_CONFIG", "AUDITWATCH_DATABASE_URL", "AUDITWATCH_BUS_URL"):
            base.pop(name, None)
        bus = {**base, "AUDITWATCH_BUS_URL": f"nats://127.0.0.1:{self.nats_port}"}
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        self.components = {
            "api": Component("api", ["serve", "--port", str(self.api_port)], base, logs / "api.log",
                             lambda: _healthy(self.api_port)),
            "api_bus": Component("api_bus", ["serve", "--port", str(self.api_bus_port)], bus, logs / "api_bus.log",
                                 lambda: _healthy(self.api_bus_port)),
            "writer": Component("writer", ["writer"], bus, logs / "writer.log",
                                lambda: (logs / "writer.log").read_text().count("consuming")
                                >= self.components["writer"].kills + 1),
            "syslog": Component("syslog", ["syslog"], base, logs / "syslog.log",
                                lambda: _listening(self.syslog_port)),
            "worker": Component("worker", ["worker"], base, logs / "worker.log", lambda: True),
        }
        for component in self.components.values():
            component.start()
        for component in self.components.values():
            component.wait_ready()

    def down(self) -> None:
        for component in self.components.values():
            component.stop()
        if self.nats is not None and self.nats.poll() is None:
            self.nats.terminate()
            self.nats.wait(20)
        self.cluster.down()

    def destroy(self, *, keep_logs: Path | None = None) -> None:
        """Stop everything and remove the directory; ``keep_logs``: copy every log there first."""
        try:
            self.down()
        finally:
            if keep_logs is not None:
                keep_logs.mkdir(parents=True, exist_ok=True)
                for log in [*(self.root / "logs").glob("*.log"), self.root / "nats.log", self.cluster.log_file,
                            self.cluster.data_dir / "alerts" / "notifications.jsonl"]:
                    if log.exists():
                        shutil.copy(log, keep_logs / log.name)
            shutil.rmtree(self.root, ignore_errors=True)

    def _start_nats(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        log = (self.root / "nats.log").open("ab")
        self.nats = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(self.nats_port), "-sd",
                                      str(self.root / "jetstream")], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _listening(self.nats_port):
                return
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    # -- faults --------------------------------------------------------------------------------------

    def restart_postgres(self, down_for: float = 0.0) -> None:
        self.cluster.down()
        time.sleep(down_for)
        self.cluster.up(install=False)
        self.pg_restarts += 1

    def kill_and_restart(self, name: str) -> float:
        """SIGKILL a component, start it again; seconds until it is ready (the supervisor's view)."""
        component = self.components[name]
        component.kill()
        component.start()
        return component.wait_ready()

    # -- checks --------------------------------------------------------------------------------------

    def stored_counts(self, ids: list[str]) -> dict[str, int]:
        with psycopg.connect(self.owner_url) as conn:
            rows = conn.execute("SELECT event_id::text, count(*) FROM audit_events WHERE event_id = ANY(%s) "
                                "GROUP BY 1", ([uuid.UUID(i) for i in ids],)).fetchall()
        return dict(rows)

    def syslog_counts(self, prefix: str) -> dict[str, int]:
        with psycopg.connect(self.owner_url) as conn:
            rows = conn.execute("SELECT substring(metadata::text FROM %s), count(*) FROM audit_events "
                                "WHERE metadata::text LIKE %s GROUP BY 1", (f"{prefix}-[0-9]+", f"%{prefix}-%")).fetchall()
        return dict(rows)

    def checkpoints(self) -> int:
        with psycopg.connect(self.owner_url) as conn:
            return conn.execute("SELECT count(*) FROM integrity_checkpoints").fetchone()[0]

    def verify(self) -> subprocess.CompletedProcess:
        env = dict(self.components["worker"].env)
        return subprocess.run([sys.executable, "-m", "auditwatch.cli", "verify"], env=env, cwd=str(self.root),
                              capture_output=True, text=True, timeout=300)

    def notifications(self) -> list[dict]:
        import json
        path = self.cluster.data_dir / "alerts" / "notifications.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def repeated_pages(pages: list[dict]) -> list[dict]:
    """Notifications that page again with nothing new: the same receiver and group with the same alerts in
    the same states as an earlier one (a group update that adds or resolves an alert is not a repeat)."""
    seen: set = set()
    repeats = []
    for page in pages:
        key = (page.get("receiver"), page.get("group_key"),
               frozenset((a.get("fingerprint"), a.get("status")) for a in page.get("alerts", [])))
        if key in seen:
            repeats.append(page)
        seen.add(key)
    return repeats


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- load ------------------------------------------------------------------------------------------

@dataclass
class HttpLoad:
    """Clients posting single events, each retried with the same event_id until acknowledged (at-least-once),
    as a careful producer does; ``acked`` are the ids the API answered 201/200 for."""

    url: str
    key: str
    clients: int = 2
    user: str = "fault-user"
    failed_logins: bool = False  # every event a failed login of one account: keeps an alert firing
    acked: list[str] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)
    refusal_seconds: list[float] = field(default_factory=list)  # how long each 503 took to arrive
    retry_after: set[str] = field(default_factory=set)  # Retry-After values of the 503s
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _count(self, status: int | str) -> None:
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def _run(self) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.key}"}
        while not self._stop.is_set():
            body = {"event_id": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(),
                    "event_type": "user_login", "user_id": self.user,
                    "outcome": "failure" if self.failed_logins else random.choice(["success", "failure"])}
            while not self._stop.is_set():  # the same event until acknowledged
                started = time.monotonic()
                try:
                    response = session.post(self.url + "/api/v1/logs", json=body, headers=headers, timeout=10)
                    status: int | str = response.status_code
                except requests.RequestException:
                    status = "connection_error"
                    session = requests.Session()
                self._count(status)
                if status == 503:
                    with self._lock:
                        self.refusal_seconds.append(time.monotonic() - started)
                        self.retry_after.add(response.headers.get("Retry-After", ""))
                if status in (200, 201):
                    with self._lock:
                        self.acked.append(body["event_id"])
                    break
                time.sleep(0.1)


@dataclass
class SyslogLoad:
    """One TCP sender writing numbered RFC 5424 lines; ``sent`` counts lines the kernel accepted. It
    reconnects when the listener goes away and resends nothing (syslog has no acknowledgement)."""

    port: int
    prefix: str = "ftok"
    rate: float = 50.0
    sent: int = 0
    disconnects: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        while not self._stop.is_set():
            stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            line = f"<38>1 {stamp} faulthost faultapp - - - {self.prefix}-{self.sent} ok\n".encode()
            try:
                sock.sendall(line)
            except OSError:  # the listener dropped the connection: counted, and the checks will say what it lost
                self.disconnects += 1
                sock.close()
                time.sleep(0.5)
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                continue
            self.sent += 1
            time.sleep(1 / self.rate)
        sock.close()
