"""An absence rule on a busy store: when did a silent sender last send? (`silent_source`, migration 0022)

Loads N events (default 2 M) over the last 24 hours from five busy senders (SQL-side generation), and a quiet
sender through the real writer, which stops 20 hours ago. Then times `rule_inputs.last_seen` for the quiet
sender and for a busy one, with the rule's 24 h lookback, against the query it replaced (the time index
walked back from now, the baseline, timed in the same run), best of ``--repeat``. The answers must agree.

    python -m bench.absence [--url postgresql://...] [--events 2000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench.harness import database
from storage.events import EventRecord, Outcome
from storage.timescale import db, rule_inputs
from storage.timescale.writer import EventWriter

LOAD_HOUR = """
INSERT INTO audit_events (event_id, "timestamp", event_type, user_id, outcome, source, source_ip, user_agent,
                          metadata, received_at)
SELECT gen_random_uuid(), %(hour)s::timestamptz + (random() * interval '1 hour'), 'user_login',
       'user' || lpad(((g * 7919) %% 10000)::text, 5, '0'), 'success', 'app-' || (1 + g %% 5),
       ('81.2.' || (g %% 250) || '.' || (1 + (g / 250) %% 250))::inet, 'bench/1.0',
       jsonb_build_object('n', g), now()
FROM generate_series(1::bigint, %(n)s) AS g
"""
WALK = ("SELECT (SELECT \"timestamp\" FROM audit_events WHERE source = %(v)s AND \"timestamp\" >= %(since)s "
        "AND \"timestamp\" < %(until)s ORDER BY \"timestamp\" DESC LIMIT 1)")


def load(url: str, events: int, now: datetime) -> None:
    with db.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] >= events:
            print("events already loaded", flush=True)
            return
        began = time.perf_counter()
        for h in range(24):
            conn.execute(LOAD_HOUR, {"hour": now - timedelta(hours=24 - h), "n": events // 24})
            if h % 6 == 5:
                print(f"  loaded {(h + 1) * (events // 24):,} of {events:,} events "
                      f"({time.perf_counter() - began:.0f} s)", flush=True)
        conn.execute("ANALYZE audit_events")
    pool = db.open_pool(url, min_size=1, max_size=2)
    try:  # the quiet sender, through the writer that keeps each sender's last-seen time
        quiet = [EventRecord(event_id=uuid.uuid4(), timestamp=now - timedelta(hours=23, minutes=59 - m),
                             event_type="user_login", user_id="svc-edge", received_at=now, outcome=Outcome.SUCCESS,
                             source="edge-syslog") for m in range(0, 240, 3)]
        EventWriter(pool).write(quiet)
    finally:
        pool.close()


def best(fn, repeat: int) -> tuple[float, object]:
    times, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = fn()
        times.append(time.perf_counter() - started)
    return min(times), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing TimescaleDB (default: a fresh durable local cluster)")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    now = datetime.now(UTC).replace(microsecond=0)
    with database(args.url) as url:
        load(url, args.events, now)
        pool = db.open_pool(url, min_size=1, max_size=2)
        try:
            until, since = now, now - timedelta(hours=24)
            for sender, what in (("edge-syslog", "silent for 20 h"), ("app-3", "busy")):
                def walk(sender=sender):
                    with pool.connection() as conn:
                        return conn.execute(WALK, {"v": sender, "since": since, "until": until}).fetchone()[0]

                def sliced(sender=sender):
                    return rule_inputs.last_seen(pool, field_name="source", values=[sender], since=since,
                                                 until=until)[sender]

                walk_s, walked = best(walk, args.repeat)
                new_s, answered = best(sliced, args.repeat)
                assert walked == answered, (sender, walked, answered)
                print(f"{sender} ({what}): last seen {answered:%H:%M:%S}; walking the time index "
                      f"{walk_s * 1000:,.1f} ms, last-seen slice {new_s * 1000:,.1f} ms "
                      f"({walk_s / max(new_s, 1e-9):,.0f}x)", flush=True)
        finally:
            pool.close()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
