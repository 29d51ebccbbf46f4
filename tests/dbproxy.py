"""A proxy in front of the test database that can be cut: an outage for the processes behind it only (the
session's server keeps serving every other test)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import psycopg

from tests.conftest import _url_with_db


class DatabaseProxy:
    """Listens on a Unix socket of its own; ``url`` reaches the database through it. ``cut()`` closes every open
    connection and refuses new ones (each is accepted and closed at once, as a restarting server does) until
    ``restore()``."""

    def __init__(self, db_url: str) -> None:
        info = psycopg.conninfo.conninfo_to_dict(db_url)
        host, port = str(info.get("host") or "localhost"), int(info.get("port") or 5432)
        self._upstream = (f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port))
        self._dir = Path(tempfile.mkdtemp(prefix="awpx-"))  # short: a socket path has a 107-byte limit
        self.url = _url_with_db(psycopg.conninfo.make_conninfo(db_url, host=str(self._dir)), str(info["dbname"]))
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(self._dir / f".s.PGSQL.{port}"))
        self._server.listen(64)
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.up = True
        self.refused = 0
        self._accepting = threading.Thread(target=self._accept, name="db-proxy", daemon=True)
        self._accepting.start()

    def _connect(self) -> socket.socket:
        if isinstance(self._upstream, str):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self._upstream)
            return upstream
        return socket.create_connection(self._upstream)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            with self._lock:
                if not self.up:
                    self.refused += 1
                    client.close()
                    continue
                upstream = self._connect()
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for each in (source, sink):
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            self.up = False
            for each in self._open:
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)
                each.close()
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self.up = True

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):  # wakes the accepting thread (close alone leaves it blocked)
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._accepting.join(5)
        shutil.rmtree(self._dir, ignore_errors=True)
