"""Storage fixtures: a pool on the test's fresh database and a factory for events."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from storage.events import EventRecord, Outcome
from storage.timescale.writer import EventWriter

# A fixed clock: every event time in these tests is relative to it.
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)



@pytest.fixture
def make_event():
    """Build an EventRecord; every field has a sensible default and can be overridden."""
    counter = itertools.count()

    def make(**fields) -> EventRecord:
        n = next(counter)
        defaults = {
            "event_id": uuid.uuid4(),
            "timestamp": T0 - timedelta(minutes=n),
            "event_type": "user_login",
            "user_id": "alice",
            "received_at": T0,
            "outcome": Outcome.SUCCESS,
        }
        return EventRecord(**{**defaults, **fields})

    return make


@pytest.fixture
def key():
    """A fresh Ed25519 checkpoint signing key."""
    from storage.integrity import checkpoints

    return checkpoints.generate()


@pytest.fixture
def check(pool, key):
    """Run verify with the test key trusted; returns the report."""
    from storage.integrity import checkpoints
    from storage.timescale import verify

    def run(**kwargs) -> verify.VerifyReport:
        return verify.verify(pool, trusted_keys=[checkpoints.public_bytes(key)], **kwargs)

    return run


@pytest.fixture
def old_writes(monkeypatch):
    """``with old_writes():`` writes as a release before migration 0025 did, on a schema without its
    rollup_thresholds table: nothing noted for the rollups. Writes after the block go today's way."""
    from storage.timescale import writer

    @contextmanager
    def writing() -> Iterator[None]:
        with monkeypatch.context() as patched:
            patched.setattr(writer, "_note_behind_rollups", lambda *args: None)
            yield

    return writing


def migrate_up_to(conn, version: int) -> None:
    """Apply the migrations up to ``version`` as an old release did (on an autocommit connection)."""
    from storage.timescale import migrations

    conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                 "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
    for m in migrations.available():
        if m.version <= version:
            conn.execute(m.sql)
            conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (m.version, m.name, m.checksum))


# -- the cold tier's store: a local directory, and a real S3-protocol server ------------------------

S3_CREDENTIALS = {"access_key_id": "auditwatch-test", "secret_access_key": "auditwatch-test-secret"}


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server in its own process on loopback (the real S3 wire protocol, path-style)."""
    import socket
    import subprocess
    import sys
    import time

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start on port {port} (exit {proc.poll()})") from None
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def new_bucket(endpoint: str) -> str:
    """A fresh bucket, made with an independent client (boto3), not with the code under test."""
    import boto3

    name = f"aw-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_CREDENTIALS["access_key_id"],
                          aws_secret_access_key=S3_CREDENTIALS["secret_access_key"])
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The cold tier's store, once on local disk and once in a bucket of a real S3-protocol server."""
    from storage.cold.store import ColdStore

    if request.param == "local":
        return ColdStore(tmp_path / "archive")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = new_bucket(endpoint)
    # The non-secret options in the URL (as `archive_url` carries them), the credentials beside it.
    return ColdStore(f"s3://{bucket}/audit/cold?endpoint={endpoint}&region=us-east-1&path_style=true",
                     options=S3_CREDENTIALS)


class GatedWriter(EventWriter):
    """Writes only once the gate opens (a slow or unreachable database); ``busy`` is set when a transaction
    has taken a group, and ``calls`` holds each write's number of records."""

    def __init__(self, pool) -> None:
        super().__init__(pool)
        self.gate = threading.Event()
        self.busy = threading.Event()
        self.calls: list[int] = []

    def write(self, records):
        self.calls.append(len(records))
        self.busy.set()
        assert self.gate.wait(30)
        return super().write(records)
