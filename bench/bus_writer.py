"""The bus writer alone: draining a filled work queue against writing the same events straight to the database.

One nats-server (JetStream, fsync always) and one durable TimescaleDB. Each round (a) writes N events with
``EventWriter.write`` in batches of ``--batch`` (the ceiling: what the database and the writer's COPY take),
then (b) publishes N other events through ``BusPublisher`` (as an API node does), and times a ``BusWriter``
in this process draining them: fetch, decode, re-validate (``BusGuard``), write in one transaction per batch,
ack; then (c) the same with ``bus_signing_key`` set on both sides (``ingest.bussign``: the node signs each
message, the writer verifies it and does not re-validate). Reported per round: events/s and this process's
CPU per event for each, and (b)/(a), (c)/(a). The publish is
timed apart, and is not part of (b); (b)'s rate runs from its first batch's ack to its last (attaching to
the bus, about a second, is not in it; its CPU is, spread over the events). So is (c)'s.

The process's collector is set as `auditwatch writer` sets it (``auditwatch.server.settle``), for both.
What (b) adds to (a) is the writer's own work per event (decode, re-validation, redaction, fetch and acks),
all under one GIL; the publishing node's CPU and the NATS server's are not in it.

    python -m bench.bus_writer [--events 60000] [--batch 1000] [--rounds 3] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from dataclasses import replace

from auditwatch.server import settle
from bench import integrity
from bench.harness import database
from bench.ingest import N_USERS
from bench.syslog import nats_server
from ingest.bus import BusClient, BusConfig, BusPublisher, BusWriter
from ingest.bussign import BusKeys
from storage.events import EventRecord
from storage.timescale import catalog, db
from storage.timescale.writer import EventWriter


def records(n: int) -> list[EventRecord]:
    """``bench.integrity``'s events as a publishing node hands them on: enriched, stamped with the sender."""
    return [replace(r, source_country="DE", source_asn="AS3320 Example",
                    metadata={**r.metadata, "_ingest": {"sender": "apikey:bench"}}) for r in integrity.records(n)]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def direct(writer: EventWriter, n: int, batch: int) -> tuple[float, float]:
    events = records(n)
    started, used = time.perf_counter(), cpu()
    for start in range(0, n, batch):
        writer.write(events[start:start + batch])
    return n / (time.perf_counter() - started), (cpu() - used) / n * 1e6


def through_the_bus(config: BusConfig, pool, n: int) -> tuple[float, float, float]:
    client = BusClient(config)
    try:
        publisher = BusPublisher(client)
        events = records(n)
        started = time.perf_counter()
        for start in range(0, n, 1000):
            publisher.write(events[start:start + 1000])
        published = time.perf_counter() - started
    finally:
        client.close()
    writer = BusWriter(config, EventWriter(pool))
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    batches: list[tuple[float, int]] = []  # (when a batch was acked, events done so far)

    def on_batch(stats) -> None:
        batches.append((time.perf_counter(), stats.stored + stats.duplicates))
        if stats.stored + stats.duplicates >= n:
            stop.set()

    used = cpu()
    try:
        loop.run_until_complete(writer.run(stop, on_batch=on_batch))
    finally:
        loop.close()
    # From the first batch's ack to the last one's: attaching to the bus (connect, streams, consumer: about a
    # second here) and the first, one-message fetch are not the writer's steady rate.
    (first_at, first_done), (last_at, last_done) = batches[0], batches[-1]
    return (last_done - first_done) / (last_at - first_at), (cpu() - used) / n * 1e6, published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing migrated-or-empty database (default: a fresh durable cluster)")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per transaction, both ways")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    with database(args.url) as url, nats_server() as bus_url:
        pool = db.open_pool(url, min_size=1, max_size=4)
        try:
            catalog.register_users(pool, [{"user_id": f"bench{i:05d}"} for i in range(N_USERS)], "bench")
            config = BusConfig(url=bus_url, batch=args.batch)
            signed = replace(config, keys=BusKeys((os.urandom(32),)))
            settle()  # the collector as `auditwatch writer` has it (start-up heap frozen, young generation 10,000)
            for round_ in range(1, args.rounds + 1):
                ceiling = direct(EventWriter(pool), args.events, args.batch)
                print(f"round {round_}: (a) direct {ceiling[0]:,.0f} events/s, {ceiling[1]:.1f} µs CPU per event",
                      flush=True)
                bus = through_the_bus(config, pool, args.events)
                print(f"round {round_}: (b) bus writer {bus[0]:,.0f} events/s, {bus[1]:.1f} µs CPU per event "
                      f"(published in {bus[2]:.1f} s beforehand); (b)/(a) {bus[0] / ceiling[0]:.2f}", flush=True)
                trusted = through_the_bus(signed, pool, args.events)
                print(f"round {round_}: (c) signed messages {trusted[0]:,.0f} events/s, {trusted[1]:.1f} µs CPU per "
                      f"event (published in {trusted[2]:.1f} s beforehand); (c)/(a) {trusted[0] / ceiling[0]:.2f}",
                      flush=True)
                rows.append((ceiling, bus, trusted))
        finally:
            pool.close()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| round | direct events/s | µs CPU/event | bus writer events/s | µs CPU/event | writer / direct "
          "| signed events/s | µs CPU/event | signed / direct |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, ((d_rate, d_cpu), (b_rate, b_cpu, _), (s_rate, s_cpu, _)) in enumerate(rows, 1):
        print(f"| {i} | {d_rate:,.0f} | {d_cpu:.1f} | {b_rate:,.0f} | {b_cpu:.1f} | {b_rate / d_rate:.2f} "
              f"| {s_rate:,.0f} | {s_cpu:.1f} | {s_rate / d_rate:.2f} |")
    print(f"\nmedian writer / direct: {statistics.median(b[0] / d[0] for d, b, _ in rows):.2f}; "
          f"signed / direct: {statistics.median(t[0] / d[0] for d, _, t in rows):.2f}")


if __name__ == "__main__":
    main()
