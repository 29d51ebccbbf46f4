"""Shared benchmark plumbing: a throwaway durable TimescaleDB, a real server, percentiles."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import requests

from storage.timescale import migrations
from storage.timescale.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def database(url: str | None = None, *, keep: bool = False):
    """A migrated database: ``url`` if given, else a fresh durable local cluster (fsync on)."""
    if url:
        with psycopg.connect(url) as conn:
            migrations.migrate(conn)
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="auditwatch-bench-"))
    cluster = LocalCluster(root, port=free_port(), fast=False)
    print(f"starting a durable TimescaleDB in {root} ...", flush=True)
    cluster.up()
    try:
        with psycopg.connect(cluster.url) as conn:
            migrations.migrate(conn)
        yield cluster.url
    finally:
        if keep:
            print(f"kept the database at {cluster.url}")
        else:
            cluster.destroy()
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def server(url: str, *, workers: int = 2, threads: int = 16, **env: str):
    """The real gunicorn server as a subprocess."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="auditwatch-bench-server-", suffix=".log")[1])
    environ = {**os.environ, "AUDITWATCH_DATABASE_URL": url, "AUDITWATCH_PORT": str(port),
               "AUDITWATCH_WORKERS": str(workers), "AUDITWATCH_THREADS": str(threads), **env}
    proc = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "serve"], env=environ,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.unlink(missing_ok=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
