"""Issue 14 #11: pools and the group committer while PostgreSQL is stopped and started (a private cluster).

Bounds on time here are loose on purpose (the machine is shared): they separate "fails at once" from
"hangs for the pool's 30 s timeout"; bench/faults.py measures the real figures.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from bench.faultcluster import private_cluster, restart
from storage.errors import DatabaseDown, DatabaseUnavailable
from storage.events import EventRecord, Outcome
from storage.timescale import db
from storage.timescale.cluster import DATABASE, LocalCluster
from storage.timescale.writer import EventWriter, GroupCommitter


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with private_cluster() as made:
        yield made


@pytest.fixture
def url(cluster: LocalCluster) -> str:
    if not cluster.is_running():
        cluster.up(install=False)
    return cluster.url_for(DATABASE)


def _event() -> EventRecord:
    now = datetime.now(UTC)
    return EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id="alice",
                       received_at=now, outcome=Outcome.SUCCESS)


def _stored(url: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event_id, count(*) FROM audit_events WHERE event_id = ANY(%s) GROUP BY 1",
                            (ids,)).fetchall()
    return dict(rows)


def _wait_until_up(pool, deadline: float) -> float:
    """Seconds until a query through ``pool`` succeeds again."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        try:
            with pool.connection() as conn:
                conn.execute("SELECT 1")
            return time.monotonic() - start
        except DatabaseUnavailable:
            time.sleep(0.05)
    raise AssertionError("the pool did not recover")


def test_connections_that_died_with_a_restart_are_replaced_not_handed_out(cluster, url):
    pool = db.open_pool(url, min_size=4, max_size=4, name="stale")
    try:
        pool.wait(10)
        restart(cluster)  # every pooled connection is now a dead socket
        for _ in range(8):  # more than the pool holds: each would have failed once before `check`
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pool.outages == 0  # a fast restart is not an outage to anyone
    finally:
        pool.close()


def _state_change(url: str, pid: int):
    with psycopg.connect(url) as watcher:
        row = watcher.execute("SELECT state_change FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row[0] if row else None


def test_a_quiet_connection_is_handed_out_without_a_round_trip_and_one_the_server_ended_is_replaced(cluster, url):
    """The pool's check sends a query only when the socket has something to say: a server that ended the
    connection has sent its error and closed it. Otherwise it would cost two round trips per API request."""
    pool = db.open_pool(url, min_size=1, max_size=1, name="quiet")
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.execute("SELECT 1")
        before = _state_change(url, pid)
        for _ in range(3):
            with pool.connection() as conn:
                assert conn.info.backend_pid == pid
        assert _state_change(url, pid) == before  # the server saw nothing: no check query was sent
        with psycopg.connect(url, autocommit=True) as killer:
            assert killer.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        deadline = time.monotonic() + 10
        while _state_change(url, pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pool.connection() as conn:  # replaced by the check, not handed out dead
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.info.backend_pid != pid
        assert pool.outages == 0
    finally:
        pool.close()


def test_a_connection_on_a_descriptor_past_1024_is_still_seen_quiet(url):
    """A server process with many files open (sockets, logs) gets connections on high descriptors, which
    select() cannot watch: the check must still see them quiet, not send a query each time."""
    import os
    import resource

    from storage.timescale.circuit import _quiet

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.fail(f"the hard RLIMIT_NOFILE is {hard}: raise it to 1200 or more (ulimit -Hn) to run this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        conn = psycopg.connect(url, autocommit=True)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with conn:
        assert conn.fileno() >= 1024
        conn.execute("SELECT 1")
        assert _quiet(conn)


def test_fails_fast_while_down_and_recovers_on_its_own(cluster, url):
    pool = db.open_pool(url, min_size=2, max_size=4, name="outage")
    try:
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        cluster.down()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            with pool.connection() as conn:
                conn.execute("SELECT 1")
        first = time.monotonic() - started
        assert first < 10, f"the first failure took {first:.1f} s: callers hang instead of failing"
        assert pool.down and pool.outages == 1
        # Open circuit: every caller is refused at once with the short Retry-After, none waits on the pool.
        started = time.monotonic()
        for _ in range(50):
            with pytest.raises(DatabaseDown) as refused:
                with pool.connection():
                    pass
        assert time.monotonic() - started < 5
        assert refused.value.retry_after == 1

        cluster.up(install=False)
        _wait_until_up(pool, time.monotonic() + 30)
        assert not pool.down
    finally:
        pool.close()


def test_a_write_in_flight_when_the_server_dies_is_refused_not_lost(cluster, url):
    """Acknowledged means committed: whatever the committer answered True for is stored exactly once."""
    pool = db.open_pool(url, min_size=2, max_size=4, name="writes")
    committer = GroupCommitter(EventWriter(pool), threads=2, max_queued_events=2_000)
    acked: list[uuid.UUID] = []
    refused = 0
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        nonlocal refused
        while not stop.is_set():
            batch = [_event() for _ in range(5)]
            try:
                statuses = committer.write(batch, timeout=10)
            except (DatabaseUnavailable, psycopg.OperationalError):
                with lock:
                    refused += 1
                time.sleep(0.02)
                continue
            with lock:
                acked.extend(e.event_id for e, new in zip(batch, statuses, strict=True) if new)

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        cluster.down()
        time.sleep(1.5)
        cluster.up(install=False)
        deadline = time.monotonic() + 30
        before = len(acked)
        while len(acked) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        committer.close()
        pool.close()
    assert refused > 0, "the outage was never noticed"
    assert len(acked) > before, "writes did not resume after the server came back"
    stored = _stored(url, acked)
    assert len(stored) == len(acked) and set(stored.values()) == {1}
