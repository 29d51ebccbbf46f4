"""R6 leases: never more than the limit across processes, and few database round trips."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from ingest.ratelimit import RateLimiter
from storage.timescale import db

WINDOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def pools(db_url):
    opened = [db.open_pool(db_url, min_size=1, max_size=4) for _ in range(3)]
    yield opened
    for pool in opened:
        pool.close()


def test_one_process_gets_exactly_the_limit_with_leases(pools):
    limiter = RateLimiter(pools[0], 1000, lease=20)
    granted = sum(limiter.take({"alice": 1}, WINDOW)["alice"] for _ in range(1500))
    assert granted == 1000


def test_leases_save_round_trips(pools, conn):
    limiter = RateLimiter(pools[0], 1000)  # default lease: limit // 50 = 20
    assert limiter.lease == 20

    for _ in range(200):
        assert limiter.take({"alice": 1}, WINDOW) == {"alice": 1}
    counted = conn.execute("SELECT events FROM ingest_rate WHERE sender = 'alice'").fetchone()[0]
    # 200 events served; the database was asked for at most the next lease beyond them.
    assert 200 <= counted <= 200 + limiter.lease


def test_small_limits_lease_nothing_and_are_exact_across_processes(pools):
    a, b = RateLimiter(pools[0], 20), RateLimiter(pools[1], 20)
    assert a.lease == 0
    granted = 0
    for i in range(40):
        granted += (a if i % 2 else b).take({"bob": 1}, WINDOW)["bob"]
    assert granted == 20


def test_concurrent_processes_never_exceed_the_limit(pools):
    limiters = [RateLimiter(pool, 1000, lease=20) for pool in pools]
    totals = [0] * 12
    barrier = threading.Barrier(12)

    def hammer(i: int) -> None:
        barrier.wait()
        limiter = limiters[i % 3]
        for _ in range(150):
            totals[i] += limiter.take({"carol": 1, f"other{i}": 2}, WINDOW)["carol"]

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    granted = sum(totals)
    assert granted <= 1000
    # What is lost to unused leases is bounded: at most a lease per other process.
    assert granted >= 1000 - 2 * 20


def test_a_new_minute_starts_a_new_budget(pools):
    limiter = RateLimiter(pools[0], 100, lease=10)
    assert limiter.take({"dave": 150}, WINDOW)["dave"] == 100
    assert limiter.take({"dave": 1}, WINDOW)["dave"] == 0
    assert limiter.take({"dave": 1}, WINDOW.replace(minute=1))["dave"] == 1
