"""How long a 30-day compliance report takes over N events, phase by phase, against a plain read.

Loads N events over 30 days (SQL-side generation, as bench/query.py: unsealed rows), signs a
checkpoint, then generates each report for the 30 days and prints, per report, the seconds spent
reading and computing (build), proving (verify + checkpoint) and writing (PDF, HTML, CSV, XLSX),
against the baseline measured in the same run: one data-API read of the whole period's
``timestamp, user_id, outcome`` (what the access review reads), i.e. the cost of touching every event once.

The proof (``verify`` over the period: every event's leaf hash recomputed in SQL, plus the chain and the
checkpoints) is made once and shared by the reports of the same period, as a monthly batch would; its
time is printed on its own line and added to each report's total in the last column. The loaded rows
are not sealed (no batch covers them), which does not change verify's work: it hashes every row of the
period to find rows outside any batch.

    python -m bench.reports [--url postgresql://...] [--events 10000000] [--only access-review,...] [--keep]
                            [--proof-rounds N]

The proof line also prints the CPU seconds it cost the server (every process of a local cluster, read from
/proc) and this client: on a shared box they move far less with the load than the seconds do.
``--proof-rounds N`` times only the proof, N times, and skips the reports.

``--keep`` leaves the throwaway cluster running and prints its URL; pass it back as ``--url`` to time the
reports again without reloading (the load is skipped when the database already holds the events).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import database
from bench.query import DAYS, load
from reports import engine, registry
from reports.proof import prove
from reports.source import Source
from storage.dataapi import AuditData
from storage.errors import IntegrityError
from storage.integrity import checkpoints
from storage.timescale import db, sealing

TARGET_SECONDS = 60


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(pool) -> float | None:
    """CPU seconds used so far by the server's backends (the postmaster's children, gone ones included via
    the postmaster's own cumulative children time), or None if the server is not a local process."""
    with pool.connection() as conn:
        pid = conn.info.backend_pid
    try:
        postmaster = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime + cstime: children reaped
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == postmaster:
                    total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        return total
    except (OSError, ValueError):
        return None


def timed_proof(pool, start: datetime, end: datetime, trusted: frozenset[bytes], rows: int):
    """The period's proof, its seconds, and a line saying them with the CPU it cost."""
    server0, client0, began = server_cpu(pool), time.process_time(), time.perf_counter()
    proof = prove(pool, start, end, trusted_keys=trusted, archive=None, now=datetime.now(UTC))
    seconds = time.perf_counter() - began
    client, server1 = time.process_time() - client0, server_cpu(pool)
    cpu = f"server CPU {server1 - server0:.1f} s, " if server0 is not None and server1 is not None else ""
    return proof, seconds, (f"proof: verify over the period in {seconds:.1f} s ({proof.events:,} events hashed: "
                            f"{rows / seconds:,.0f} events/s; {cpu}client CPU {client:.1f} s; load "
                            f"{os.getloadavg()[0]:.1f}), {proof.verdict}")


def sign(pool, *, reused: bool) -> frozenset[bytes]:
    """Sign a checkpoint with a fresh key and trust it. A database kept by an earlier run (``--keep``, then
    ``--url``) already holds that run's checkpoint, whose key is gone: a new key may not sign after it, so
    the stored checkpoints' own keys are trusted instead (this bench's own data; verify's work is the same)."""
    key = checkpoints.generate()
    try:
        sealing.write_checkpoint(pool, key, now=datetime.now(UTC), force=True)
    except IntegrityError:
        if not reused:
            raise
        stored = sealing.list_checkpoints(pool)
        print(f"reusing a kept database: trusting its {len(stored)} stored checkpoint(s)' own keys")
        return frozenset(cp.public_key for cp in stored)
    return frozenset({checkpoints.public_bytes(key)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing database (default: a throwaway durable cluster)")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--only", help="comma-separated report names (default: all but incident-timeline, "
                        "which is run scoped to one user)")
    parser.add_argument("--standalone", default="access-review",
                        help="also generate this report end to end with its own proof, as the CLI, the dashboard "
                        "and the worker do (the proof made first, then the build); '' to skip")
    parser.add_argument("--keep", action="store_true",
                        help="keep the throwaway database (its URL is printed) to re-run with --url, no reload")
    parser.add_argument("--proof-rounds", type=int, default=0,
                        help="time only the proof, this many times (no reports)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else [d.name for d in registry.all_reports()]
    with database(args.url, keep=args.keep) as url:
        load(url, args.events)
        pool = db.open_pool(url, min_size=1, max_size=4, name="bench-reports")
        trusted = sign(pool, reused=bool(args.url))
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        start = end - timedelta(days=DAYS)
        data = AuditData(pool, read_only=False)
        try:
            began = time.perf_counter()
            rows = data.events(start, end, columns=["timestamp", "user_id", "outcome"], max_rows=None).height
            baseline = time.perf_counter() - began
            print(f"baseline: data API read of {rows:,} events (3 columns) in {baseline:.1f} s "
                  f"({rows / baseline:,.0f} events/s)")
            if args.proof_rounds:
                for _ in range(args.proof_rounds):
                    print(timed_proof(pool, start, end, trusted, rows)[2], flush=True)
                return
            proof, proof_s, line = timed_proof(pool, start, end, trusted, rows)
            print(f"{line} (shared by the reports below)", flush=True)
            print(f"{'report':>20} {'build s':>8} {'render s':>9} {'report s':>9} {'vs read':>8} {'pages':>6} "
                  f"{'+ proof s':>10}  target <= {TARGET_SECONDS} s")
            for name in names:
                scope = "user:user00001" if name == "incident-timeline" else None
                params = registry.get(name).params(start, end, scope)
                with tempfile.TemporaryDirectory(prefix="bench-report-") as out:
                    g = engine.generate(Source(data), params, out, generated_by="bench", now=datetime.now(UTC),
                                        trusted_keys=trusted, proof=proof)
                    info = subprocess.run(["pdfinfo", str(Path(out, "report.pdf"))], capture_output=True,
                                          text=True).stdout
                    pages = next((line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")), "?")
                s = g.seconds
                own = s["build"] + s["render"]
                total = own + proof_s
                print(f"{name:>20} {s['build']:>8.1f} {s['render']:>9.1f} {own:>9.1f} {own / baseline:>7.1f}x "
                      f"{pages:>6} {total:>10.1f}  {'ok' if total <= TARGET_SECONDS else 'OVER'}", flush=True)
            if args.standalone:
                params = registry.get(args.standalone).params(start, end, None)
                began = time.perf_counter()
                with tempfile.TemporaryDirectory(prefix="bench-report-") as out:
                    g = engine.generate(Source(data), params, out, generated_by="bench", now=datetime.now(UTC),
                                        trusted_keys=trusted)
                wall = time.perf_counter() - began
                s = g.seconds
                print(f"end to end, {args.standalone} with its own proof: {wall:.1f} s (proof {s['proof']:.1f}, "
                      f"build {s['build']:.1f}, render {s['render']:.1f})  {'ok' if wall <= TARGET_SECONDS else 'OVER'}",
                      flush=True)
            print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min)")
        finally:
            pool.close()


if __name__ == "__main__":
    main()
