"""Fuzz the live API with schemathesis, driven by its own OpenAPI document: 0 server errors is the target.

Every documented operation (the REST API, the OTLP receiver, alerts, anomalies, archive, holds ...) gets
schemathesis' example, coverage and fuzzing phases, as an admin key (admin may do everything but backfill),
with the `not_a_server_error` check: any 5xx, or a dropped connection, is a failure.

    .venv/bin/python -m bench.fuzz                    # a larger run: 400 examples per operation
    .venv/bin/python -m bench.fuzz --examples 1000 --url postgresql://...
    .venv/bin/python -m bench.fuzz --requests 50000   # fuzzing with the next seeds until 50,000 were sent

tests/auditwatch/test_fuzz.py runs the CI-sized version (run() below) against a throwaway server.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.harness import database, server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@dataclass
class FuzzResult:
    requests: int = 0
    operations: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    unauthorized: int = 0  # 401 responses (a revoked or missing key)
    server_errors: list[str] = field(default_factory=list)  # "METHOD path -> status: body" per 5xx seen
    failures: list[str] = field(default_factory=list)  # what schemathesis itself reported
    exit_code: int = 0
    output: str = ""
    seeds: list[int] = field(default_factory=list)  # schemathesis --seed of each run: rerun one with it

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def add(self, other: FuzzResult) -> None:
        """Fold a later run's figures into this one."""
        self.requests += other.requests
        self.operations = max(self.operations, other.operations)
        self.seconds += other.seconds
        self.statuses.update(other.statuses)
        self.unauthorized += other.unauthorized
        self.server_errors += other.server_errors
        self.failures += other.failures
        self.exit_code = self.exit_code or other.exit_code
        self.output = other.output
        self.seeds += other.seeds


def admin_key(db_url: str, name: str = "fuzz-admin-7f3c9b1e") -> str:
    """A fresh admin key (stored as the API stores keys) for the fuzzer's Authorization header."""
    from storage.auth import Role
    from storage.timescale import catalog
    from storage.timescale.db import open_pool

    pool = open_pool(db_url, min_size=1, max_size=2)
    try:
        _, secret = catalog.create_key(pool, name, Role.ADMIN, "bench.fuzz")
    finally:
        pool.close()
    return secret


def run_until(base_url: str, key: str, *, requests: int, examples: int, workdir: Path, workers: int = 2,
              seed: int = 14, first_seconds: float = 240, ceiling: float = 1200, chunk: float = 120) -> FuzzResult:
    """Runs until at least ``requests`` were sent (or ``ceiling`` seconds went by): one pass of every phase,
    then fuzzing-only runs with the next seeds, each as long as the rate so far says the rest needs but at most
    ``chunk`` seconds, so a machine that speeds up does not make it overshoot (seen: 37,172 for 10,000).

    The request rate on a shared machine varies threefold with its load, so a fixed time buys no fixed count.
    """
    total = run(base_url, key, examples=examples, workdir=workdir / "run-0", workers=workers, seed=seed,
                max_time=first_seconds)
    started = time.monotonic() - total.seconds
    index = 0
    while total.requests < requests and time.monotonic() - started < ceiling and not total.server_errors:
        index += 1
        missing = requests - total.requests
        needed = missing / max(total.per_second, 1.0) * 1.15 + 10
        left = ceiling - (time.monotonic() - started)
        total.add(run(base_url, key, examples=max(examples, 100), workdir=workdir / f"run-{index}",
                      workers=workers, seed=seed + index, max_time=max(15.0, min(needed, left, chunk)),
                      phases="fuzzing"))
    return total


def run(base_url: str, key: str, *, examples: int, workdir: Path, workers: int = 2, seed: int = 14,
        max_time: float | None = None, phases: str = "examples,coverage,fuzzing") -> FuzzResult:
    """One schemathesis run; every request and response is read back from its HAR report."""
    workdir.mkdir(parents=True, exist_ok=True)
    har = workdir / "fuzz.har"
    command = [str(SCHEMATHESIS), "run", f"{base_url}/api/v1/openapi.json", "--url", base_url,
               "--checks", "not_a_server_error", "--phases", phases,
               "--max-examples", str(examples), "--workers", str(workers), "--seed", str(seed),
               "--header", f"Authorization: Bearer {key}", "--suppress-health-check", "all",
               "--request-timeout", "30", "--continue-on-failure", "--no-shrink",
               # Revoking keys is left out: the fuzzer learns its own key's name from responses and revoked
               # it within the first requests of a run, after which everything it sent was a 401.
               "--exclude-path", "/api/v1/keys/{name}",
               "--report", "har", "--report-har-path", str(har), "--output-sanitize", "false"]
    if max_time:
        command += ["--max-time", str(int(max_time))]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    result = FuzzResult(seconds=time.monotonic() - started, exit_code=done.returncode,
                        output=done.stdout[-20_000:] + done.stderr[-5_000:], seeds=[seed])
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    operations = set()
    for entry in entries:
        request, response = entry["request"], entry["response"]
        status = response.get("status", 0)
        result.requests += 1
        result.statuses[status // 100 * 100 if status else 0] += 1
        result.unauthorized += status == 401
        path = request["url"].split("?")[0].removeprefix(base_url)
        operations.add((request["method"], path.split("/")[1:4].__str__()))
        if status >= 500 or status == 0:
            body = (response.get("content") or {}).get("text", "")[:300]
            result.server_errors.append(f"{request['method']} {request['url'][:200]} -> {status}: {body}")
    result.operations = len(operations)
    result.failures = [line for line in result.output.splitlines() if "Server error" in line or "❌" in line]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing database (default: a throwaway durable cluster)")
    parser.add_argument("--examples", type=int, default=400, help="examples per operation and phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/auditwatch-fuzz")
    parser.add_argument("--max-time", type=float, help="seconds; schemathesis keeps fuzzing until it is spent")
    parser.add_argument("--requests", type=int, help="go on (fuzzing with the next seeds) until this many were sent")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--server-workers", type=int, default=2)
    args = parser.parse_args()
    with database(args.url) as url, server(url, workers=args.server_workers) as base:
        key = admin_key(url)
        if args.requests:
            result = run_until(base, key, requests=args.requests, examples=args.examples, workdir=Path(args.workdir),
                               workers=args.workers, seed=args.seed, first_seconds=args.max_time or 240)
        else:
            result = run(base, key, examples=args.examples, workdir=Path(args.workdir), workers=args.workers,
                         seed=args.seed, max_time=args.max_time)
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    print(f"schemathesis {args.examples} examples/operation: {result.requests:,} requests in {result.seconds:.0f} s "
          f"({result.per_second:.0f}/s), {stored:,} events stored")
    print("responses by class: " + ", ".join(f"{k}xx: {v:,}" if k else f"no response: {v}"
                                             for k, v in sorted(result.statuses.items())).replace("00xx", "xx"))
    print(f"401 (unauthenticated): {result.unauthorized:,}; server errors: {len(result.server_errors)}; "
          f"seeds {result.seeds}")
    for line in result.server_errors[:20]:
        print("  " + line)
    if result.exit_code and not result.server_errors:
        print(result.output[-3000:])


if __name__ == "__main__":
    main()
