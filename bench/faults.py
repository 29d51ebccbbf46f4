"""Faults, measured: database outages and SIGKILLs on the real platform, with recovery times.

(a) pool during an outage, before vs after issue 14 #11, in one run on a private cluster: 4 threads
    query through a plain psycopg pool (what ``open_pool`` made before) and through ``GuardedPool``
    while PostgreSQL is stopped for ``--down`` seconds, then after a fast restart: how long a caller
    waits for its failure, and how long after the server is back the first query succeeds;
(b) the fault schedule on the whole stack (bench/faultstack.py: two APIs, one through JetStream, the
    bus writer, the syslog listener, the worker): ``--restarts`` PostgreSQL restarts and ``--kills``
    SIGKILLs under sustained ingest, then the same checks as tests/faults, and per fault the recovery time.

    python -m bench.faults [--down 10] [--restarts 5] [--kills 20]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from psycopg_pool import ConnectionPool

from bench.faultcluster import private_cluster
from bench.faultstack import HttpLoad, Stack, SyslogLoad, repeated_pages
from storage.timescale import db
from storage.timescale.cluster import DATABASE


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- (a) the pool, before and after ------------------------------------------------------------------

def _plain_pool(url: str) -> ConnectionPool:
    """The pool as open_pool made it before issue 14 #11: no check, psycopg_pool's defaults."""
    pool = ConnectionPool(url, min_size=2, max_size=16, open=False, kwargs={"autocommit": False},
                          configure=functools.partial(db._configure))
    pool.open(wait=True, timeout=15)
    return pool


def _outage(cluster, pool, down: float, threads: int = 4) -> dict:
    failures: list[float] = []  # seconds each failing call took while the server was down
    after_up: list[str] = []  # outcomes of calls made after the server was back, in order
    state = {"phase": "up", "down_at": 0.0, "up_at": 0.0, "first_ok": None}
    longest = [0.0]  # the longest call that overlapped the outage, however it ended
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                with pool.connection() as conn:
                    conn.execute("SELECT 1")
                ok = True
            except Exception:  # noqa: BLE001 - every failure kind is the measurement
                ok = False
            ended = time.monotonic()
            took = ended - started
            with lock:
                if state["down_at"] and ended >= state["down_at"] and (not state["up_at"] or started <= state["up_at"]):
                    longest[0] = max(longest[0], took)  # a call that overlapped the outage
                if state["phase"] == "down" and not ok:
                    failures.append(took)
                elif state["phase"] == "back":
                    after_up.append("ok" if ok else "error")
                    if ok and state["first_ok"] is None:
                        state["first_ok"] = time.monotonic() - state["up_at"]
            if not ok:
                time.sleep(0.05)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    time.sleep(1)
    state["down_at"] = time.monotonic()
    cluster.down()
    state["phase"] = "down"
    time.sleep(down)
    cluster.up(install=False)
    with lock:
        state["phase"], state["up_at"] = "back", time.monotonic()
    deadline = time.monotonic() + 60
    while state["first_ok"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)
    stop.set()
    for w in workers:
        w.join(60)
    return {"longest_call_s": longest[0], "failed_calls": len(failures), "failure_p50_s": _pct(failures, 0.5), "failure_max_s": max(failures or [0]),
            "first_ok_after_up_s": state["first_ok"], "errors_after_up": after_up.count("error")}


def _fast_restart(cluster, pool) -> int:
    """Failed calls right after a fast restart with an idle pool (stale connections handed out)."""
    errors = 0
    with pool.connection() as conn:
        conn.execute("SELECT 1")
    cluster.down()
    cluster.up(install=False)
    for _ in range(20):
        try:
            with pool.connection() as conn:
                conn.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - counted
            errors += 1
    return errors


def pool_outage(down: float) -> None:
    print(f"(a) pool during a {down:g} s outage, 4 threads; then a fast restart with an idle pool")
    with private_cluster() as cluster:
        url = cluster.url_for(DATABASE)
        rows = {}
        for name, make in (("before (plain pool)", _plain_pool),
                           ("after (GuardedPool)", lambda u: db.open_pool(u, name="bench"))):
            pool = make(url)
            try:
                rows[name] = _outage(cluster, pool, down)
                rows[name]["errors_after_fast_restart"] = _fast_restart(cluster, pool)
            finally:
                pool.close()
        print(f"  {'':22} {'longest call':>12} {'failed calls':>12} {'fail p50':>9} {'fail max':>9} "
              f"{'1st ok after up':>16} {'errors after up':>16} {'errors, fast restart':>21}")
        for name, r in rows.items():
            first = f"{r['first_ok_after_up_s']:.2f} s" if r["first_ok_after_up_s"] is not None else "never"
            print(f"  {name:22} {r['longest_call_s']:>11.2f}s {r['failed_calls']:>12} {r['failure_p50_s']:>8.2f}s "
                  f"{r['failure_max_s']:>8.2f}s {first:>16} {r['errors_after_up']:>16} "
                  f"{r['errors_after_fast_restart']:>21}")


# -- (b) the fault schedule on the whole stack -------------------------------------------------------

def schedule(restarts: int, kills: int) -> list[tuple[str, str]]:
    """Faults in a fixed order: restarts spread among the kills, kills cycling over the components."""
    order = ["api", "writer", "api_bus", "worker"]
    faults: list[tuple[str, str]] = [("kill", order[i % len(order)]) for i in range(kills)]
    step = max(1, (len(faults) + 1) // (restarts + 1))
    for i in range(restarts):
        faults.insert(min(len(faults), (i + 1) * step + i), ("restart", "postgres"))
    return faults


def stack_faults(restarts: int, kills: int, pause: float) -> None:
    print(f"(b) {restarts} PostgreSQL restarts and {kills} SIGKILLs under sustained ingest "
          "(HTTP direct, HTTP through JetStream, syslog TCP)")
    stack = Stack(Path(tempfile.mkdtemp(prefix="auditwatch-bench-faults-")))
    started = time.monotonic()
    try:
        stack.up()
        print(f"  stack up in {time.monotonic() - started:.1f} s")
        direct = HttpLoad(f"http://127.0.0.1:{stack.api_port}", stack.key, clients=2)
        bus = HttpLoad(f"http://127.0.0.1:{stack.api_bus_port}", stack.key, clients=2)
        burst = HttpLoad(f"http://127.0.0.1:{stack.api_port}", stack.key, clients=1, user="fault-victim",
                         failed_logins=True)
        syslog = SyslogLoad(stack.syslog_port)
        loads = {"api": direct, "api_bus": bus}
        for load in (direct, bus, burst, syslog):
            load.start()
        time.sleep(pause)
        recovery: dict[str, list[float]] = {}
        ready: dict[str, list[float]] = {}
        for kind, name in schedule(restarts, kills):
            if kind == "restart":
                stack.restart_postgres(down_for=2.0)
                up_at = time.monotonic()  # pg_ctl reports the server up
                counts = {api: len(load.acked) for api, load in loads.items()}
                for api, load in loads.items():
                    recovery.setdefault(f"postgres (2 s down) → {api}: first 201 after up", []).append(
                        _next_ack(load, counts[api], up_at))
            else:
                component = stack.components[name]
                t0 = time.monotonic()
                if name == "worker":
                    before = stack.checkpoints()
                component.kill()
                count = len(loads[name].acked) if name in loads else 0
                component.start()
                ready.setdefault(name, []).append(component.wait_ready())
                if name == "worker":
                    while stack.checkpoints() <= before and time.monotonic() - t0 < 120:
                        time.sleep(0.2)
                    recovery.setdefault("worker: SIGKILL → next signed checkpoint", []).append(time.monotonic() - t0)
                elif name == "writer":
                    _drained(stack, bus.acked[:], 120)
                    recovery.setdefault("writer: SIGKILL → bus backlog stored", []).append(time.monotonic() - t0)
                else:
                    recovery.setdefault(f"{name}: SIGKILL → first 201", []).append(_next_ack(loads[name], count, t0))
            time.sleep(pause)
        for load in (direct, bus, burst, syslog):
            load.stop()
        everything = direct.acked + bus.acked + burst.acked
        drain = _drained(stack, everything, 180)
        deadline = time.monotonic() + 120
        while len(stack.syslog_counts(syslog.prefix)) < syslog.sent and time.monotonic() < deadline:
            time.sleep(0.5)
        stored = stack.stored_counts(everything)
        lines = stack.syslog_counts(syslog.prefix)
        verify = stack.verify()
        pages = stack.notifications()
        ids = Counter(p["notification_id"] for p in pages)
        total = time.monotonic() - started
        print(f"  faults: {stack.pg_restarts} restarts, kills {dict((n, c.kills) for n, c in stack.components.items())}")
        print(f"  acknowledged over HTTP: {len(everything):,} (direct {len(direct.acked) + len(burst.acked):,}, "
              f"bus {len(bus.acked):,}); stored: {len(stored):,}; lost: {len(everything) - len(stored)}; "
              f"stored twice or more: {sum(1 for c in stored.values() if c > 1)}; drained {drain:.1f} s after the load")
        print(f"  syslog lines sent: {syslog.sent:,} (connection dropped {syslog.disconnects} times); "
              f"stored: {len(lines):,}; "
              f"doubled: {sum(1 for c in lines.values() if c > 1)}")
        statuses: Counter = Counter()
        for load in (direct, bus, burst):
            statuses.update(load.statuses)
        print(f"  HTTP answers: {dict(statuses)}")
        refusals = direct.refusal_seconds + bus.refusal_seconds + burst.refusal_seconds
        print(f"  503s: {len(refusals)}, answered in p50 {_pct(refusals, 0.5) * 1000:.0f} ms, p99 "
              f"{_pct(refusals, 0.99) * 1000:.0f} ms, max {max(refusals or [0]) * 1000:.0f} ms; Retry-After "
              f"{sorted(direct.retry_after | bus.retry_after | burst.retry_after)}")
        print(f"  verify: exit {verify.returncode}: {verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else verify.stderr[-300:]}")
        print(f"  notifications: {len(pages)}; delivered twice: {sum(1 for c in ids.values() if c > 1)}; "
              f"paged again with nothing new: {len(repeated_pages(pages))}")
        for page in pages:
            print("    page", page["notification_id"], [(a.get("fingerprint"), a.get("status"), a.get("started_at"),
                                                       a.get("firing_at"), a.get("resolved_at"))
                                                      for a in page.get("alerts", [])])
        print(f"  {'recovery':52} {'n':>3} {'p50':>7} {'max':>7}")
        for what, values in {**recovery, **{f"{n}: restart → ready (supervisor)": v for n, v in ready.items()}}.items():
            print(f"  {what:52} {len(values):>3} {statistics.median(values):>6.2f}s {max(values):>6.2f}s")
        print(f"  whole run: {total:.0f} s")
    finally:
        stack.destroy(keep_logs=Path(tempfile.gettempdir()) / "auditwatch-bench-faults-logs")


def _next_ack(load: HttpLoad, count: int, since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` until ``load`` has more than ``count`` acknowledgements."""
    deadline = time.monotonic() + timeout
    while len(load.acked) <= count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no acknowledgement from {load.url} within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - since


def _drained(stack: Stack, ids: list[str], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if len(stack.stored_counts(ids)) == len(ids):
            return time.monotonic() - started
        time.sleep(0.5)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--down", type=float, default=10.0, help="seconds PostgreSQL stays stopped in (a)")
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--pause", type=float, default=3.0, help="seconds of steady load between faults")
    parser.add_argument("--skip-pool", action="store_true", help="run only (b)")
    parser.add_argument("--skip-stack", action="store_true", help="run only (a)")
    args = parser.parse_args()
    if not args.skip_pool:
        pool_outage(args.down)
    if not args.skip_stack:
        stack_faults(args.restarts, args.kills, args.pause)


if __name__ == "__main__":
    main()
