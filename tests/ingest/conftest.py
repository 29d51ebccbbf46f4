"""A real nats-server with JetStream (the Debian package), on a free port with a temporary store."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port


class NatsServer:
    def __init__(self, store: Path, log: Path) -> None:
        self.port = free_port()
        self.store = store
        self.log = log
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, *, jetstream: bool = True) -> None:
        """Start on the fixed port; ``jetstream=False`` is plain NATS, whose JetStream API has no responders."""
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        js = ["-js", "-sd", str(self.store)] if jetstream else []
        self.process = subprocess.Popen([binary, *js, "-a", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4) == b"INFO":
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if shutil.which("nats-server") is None and not Path("/usr/sbin/nats-server").exists():
        pytest.fail("nats-server is not installed: run scripts/install-nats.sh (make system-deps)")
    server = NatsServer(tmp_path / "jetstream", tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class InThread:
    """An asyncio coroutine factory running on its own thread until ``stop()``."""

    def __init__(self, run) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._run = run
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run(self._stop))
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the writer did not stop"
        if self.error is not None:
            raise self.error
