"""Query latency on 10 M events: user + time range, event type + time range, metadata containment.

Loads N events (default 10 M) spread over 30 days for 10,000 users with SQL-side
generation, then times each query shape at the storage API (queries.search, the code
behind GET /api/v1/logs) and over real HTTP through the server, P50 and P99.

    python bench/query.py [--url postgresql://...] [--events 10000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta

import requests

from bench.harness import database, percentile, server
from storage.auth import Role
from storage.timescale import catalog, db, queries
from storage.timescale.queries import EventQuery

DAYS = 30
USERS = 10_000
TYPES = ("user_login", "user_logout", "file_download", "file_upload", "query_executed", "data_export",
         "config_change", "permission_change", "password_change", "api_key_created")
DATASETS = ("crm", "billing", "hr", "tickets", "warehouse", "legal", "marketing", "payroll")

# One day of synthetic events per statement, generated server side (the point is the queries, not the load).
LOAD_DAY = """
INSERT INTO audit_events (event_id, "timestamp", event_type, user_id, outcome, source, source_ip,
                          source_country, user_agent, resource_id, metadata, received_at)
SELECT gen_random_uuid(),
       %(day)s::timestamptz + (random() * interval '1 day'),
       (%(types)s::text[])[1 + (g %% 10)],
       'user' || lpad(((g * 7919) %% 10000)::text, 5, '0'),
       CASE WHEN g %% 23 = 0 THEN 'failure' ELSE 'success' END,
       'bench',
       ('81.2.' || (g %% 250) || '.' || (1 + (g / 250) %% 250))::inet,
       'GB',
       'bench/1.0',
       'doc-' || (g %% 50000),
       jsonb_build_object('dataset', (%(datasets)s::text[])[1 + (g / 10 %% 8)], 'bytes', g %% 100000,
                          'ticket', 'T-' || (g %% 200000)),
       now()
FROM generate_series(1::bigint, %(n)s) AS g
"""


def load(url: str, events: int) -> None:
    with db.connect(url, autocommit=True) as conn:
        per_day = events // DAYS
        have = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
        if have >= per_day * DAYS:
            print(f"{have:,} events already loaded")
            return
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DAYS - 1)
        began = time.perf_counter()
        for d in range(DAYS):
            conn.execute(LOAD_DAY, {"day": start + timedelta(days=d), "n": per_day, "types": list(TYPES),
                                    "datasets": list(DATASETS)})
            done = (d + 1) * per_day
            rate = done / (time.perf_counter() - began)
            print(f"\r  loaded {done:,}/{events:,} events ({rate:,.0f}/s)", end="", flush=True)
        print()
        conn.execute("VACUUM ANALYZE audit_events")


def shapes(rng: random.Random, now: datetime) -> dict[str, callable]:
    def user_time() -> EventQuery:
        return EventQuery(user_id=f"user{rng.randrange(USERS):05d}", start_time=now - timedelta(days=7), end_time=now)

    def type_time() -> EventQuery:
        start = now - timedelta(hours=rng.randrange(1, 24 * 7))
        return EventQuery(event_types=(rng.choice(TYPES),), start_time=start, end_time=start + timedelta(hours=24))

    def metadata() -> EventQuery:
        return EventQuery(metadata={"ticket": f"T-{rng.randrange(200_000)}"}, start_time=now - timedelta(days=30),
                          end_time=now)

    return {"user + time range": user_time, "event type + time range": type_time,
            "metadata containment": metadata}


def to_params(q: EventQuery) -> str:
    import orjson

    params = {"start_time": q.start_time.isoformat(), "end_time": q.end_time.isoformat(), "limit": q.limit}
    if q.user_id:
        params["user_id"] = q.user_id
    if q.event_types:
        params["event_type"] = q.event_types[0]
    if q.metadata:
        params["metadata"] = orjson.dumps(q.metadata).decode()
    return urllib.parse.urlencode(params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing TimescaleDB (default: a fresh durable local cluster)")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the database for another run")
    args = parser.parse_args()

    with database(args.url, keep=args.keep) as url:
        print(f"loading {args.events:,} events over {DAYS} days for {USERS:,} users ...", flush=True)
        load(url, args.events)
        pool = db.open_pool(url, min_size=1, max_size=4)
        _, key = catalog.create_key(pool, f"bench-{uuid.uuid4().hex[:8]}", Role.VIEWER, "bench")
        now = datetime.now(UTC)
        results = {}
        for name, make in shapes(random.Random(1), now).items():
            for _ in range(10):  # warm the cache a little, as a running server would be
                queries.search(pool, make())
            timings, returned = [], 0
            for _ in range(args.queries):
                q = make()
                t = time.perf_counter()
                page = queries.search(pool, q)
                timings.append((time.perf_counter() - t) * 1000)
                returned += len(page.events)
            results[name] = {"storage": timings, "rows": returned / args.queries}
        with server(url) as base:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
            for name, make in shapes(random.Random(2), now).items():
                timings = []
                for _ in range(args.queries):
                    url_ = f"{base}/api/v1/logs?{to_params(make())}"
                    t = time.perf_counter()
                    response = session.get(url_, timeout=30)
                    timings.append((time.perf_counter() - t) * 1000)
                    response.raise_for_status()
                results[name]["http"] = timings
        pool.close()

    print(f"\n{'query':28} {'rows/q':>7} {'storage P50':>12} {'P99':>8} {'HTTP P50':>10} {'P99':>8}   (ms)")
    for name, r in results.items():
        print(f"{name:28} {r['rows']:>7.0f} {percentile(r['storage'], 50):>12.1f} {percentile(r['storage'], 99):>8.1f}"
              f" {percentile(r['http'], 50):>10.1f} {percentile(r['http'], 99):>8.1f}")
    print("target: P99 <= 50 ms")


if __name__ == "__main__":
    main()
