"""Writer scale-out on a 3-node JetStream cluster (R3 streams), measured against the direct path in one run.

The same HTTP batch load (4 clients, 1,000 events per request) goes (a) straight to the database, then
(b) through a 3-node nats-server cluster on loopback to 1, 2 and 4 ``auditwatch writer`` processes
sharing one durable consumer. Reported: events/s acknowledged to clients, events/s stored (clock stops
when the last event is in the database), and stored ratio against (a).

On one 2-core machine the writers, the three NATS nodes, the API and PostgreSQL share the cores, so
more writers mostly show the contention; the figure that carries to real hardware is whether a
writer adds throughput until PostgreSQL or the cluster saturates.

``--signed`` gives the API and the writers one ``bus_signing_key`` (``ingest.bussign``): the API signs what it
checked, and the writers keep only the checks that guard the platform's own records.

    python -m bench.bus_scale [--events 50000] [--writers 1,2,4] [--signed] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import base64
import os
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

from bench.harness import database, free_port, server
from bench.ingest import N_USERS
from bench.natscluster import NatsCluster
from bench.syslog import http_run, process
from storage.auth import Role
from storage.timescale import catalog, db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing migrated-or-empty database (default: a fresh durable cluster)")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--writers", default="1,2,4", help="writer counts to measure, comma-separated")
    parser.add_argument("--signed", action="store_true", help="sign messages on the API, trust them on the writers")
    args = parser.parse_args()
    counts = [int(n) for n in args.writers.split(",")]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)

    with database(args.url) as url:
        pool = db.open_pool(url, min_size=1, max_size=2)
        catalog.register_users(pool, [{"user_id": f"bench{i:05d}"} for i in range(N_USERS)], "bench")
        _, key = catalog.create_key(pool, f"bench-{uuid.uuid4().hex[:8]}", Role.SYSTEM, "bench")
        pool.close()
        with server(url, workers=2) as base:
            direct = http_run(base, key, url, args.events)
        print(f"(a) direct: {direct[0]:,.0f} events/s acknowledged, {direct[1]:,.0f} events/s stored", flush=True)

        cluster = NatsCluster(Path(tempfile.mkdtemp(prefix="auditwatch-bench-nats-cluster-")))
        print("starting a 3-node JetStream cluster ...", flush=True)
        cluster.start()
        try:
            bus_env = {"AUDITWATCH_BUS_URL": cluster.url, "AUDITWATCH_BUS_REPLICAS": "3"}
            if args.signed:
                bus_env["AUDITWATCH_BUS_SIGNING_KEY"] = base64.b64encode(os.urandom(32)).decode()
            rows = []
            for n in counts:
                with ExitStack() as stack:
                    for i in range(n):
                        stack.enter_context(process(["writer"], url, f"writer-{i}", **bus_env,
                                                    AUDITWATCH_WRITER_OPS_PORT=str(free_port())))
                    base = stack.enter_context(server(url, workers=2, **bus_env))
                    acked, stored = http_run(base, key, url, args.events)
                rows.append((n, acked, stored))
                print(f"(b) {n} writer(s): {acked:,.0f} events/s acknowledged, {stored:,.0f} events/s stored "
                      f"(×{stored / direct[1]:.2f} of direct)", flush=True)
        finally:
            cluster.stop()
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        print("\n| writers | acknowledged/s | stored/s | stored vs direct |\n|---|---|---|---|")
        print(f"| direct | {direct[0]:,.0f} | {direct[1]:,.0f} | 1.00 |")
        for n, acked, stored in rows:
            print(f"| {n} | {acked:,.0f} | {stored:,.0f} | {stored / direct[1]:.2f} |")


if __name__ == "__main__":
    main()
