"""CPU per hostile line: what the costliest 16 KB lines cost the ingest path, against an ordinary 16 KB line.

A syslog sender needs no credentials, so the CPU one line can cost is a denial-of-service bound: a line of
digit groups ("5 5 5 ...") made the card search try every start one at a time (~100 ms for 16 KB, so ten such
lines a second kept a core busy). Each row times one step on fresh texts (the redactor caches what it has
seen), best of ``--rounds``, and divides by the same step on a 16 KB line of words measured in the same run.

    .venv/bin/python -m bench.hostile_cpu [--rounds 5] [--bytes 16000]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime

from ingest.syslog.events import parse_line
from storage.redaction import Redactor

# (prefix, repeated unit): a card in front passes the redactor's cheap pre-check for the rest of the line.
PATTERNS = [("", u) for u in ("5 ", "5-", "2 3 ", "45 ", "55 5 ", "1 ", "4111 ", "\t", "a=b ", "Bearer x ", ":")]
PATTERNS += [("4111 1111 1111 1111 ", "5a"), ("4111 1111 1111 1111 ", "55 a ")]
_counter = itertools.count()


def _fresh(text: str) -> str:
    return f"n{next(_counter)} {text}"


def best_of(rounds: int, step: Callable[[str], object], text: str) -> float:
    times = []
    for _ in range(rounds):
        fresh = _fresh(text)
        started = time.perf_counter()
        step(fresh)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bytes", type=int, default=16_000)
    args = parser.parse_args()
    redactor = Redactor()
    now = datetime(2026, 11, 28, 20, tzinfo=UTC)
    steps: dict[str, Callable[[str], object]] = {
        "redact_text": redactor.redact_text,
        "redact metadata": lambda line: redactor.redact_object({"line": line}),
        "parse_line": lambda line: parse_line("<86>Nov 28 10:00:00 host sshd[1]: " + line, now=now),
    }
    words = ("lorem ipsum dolor sit amet " * (args.bytes // 27 + 1))[:args.bytes]
    baseline = {name: best_of(args.rounds, step, words) for name, step in steps.items()}
    print(f"{args.bytes:,}-byte lines, best of {args.rounds}; baseline = a line of words, same run")
    print("| pattern | " + " | ".join(f"{name} (ms, × baseline)" for name in steps) + " |")
    print("|---|" + "---:|" * len(steps))
    print("| words (baseline) | " + " | ".join(f"{baseline[n] * 1e3:.2f}" for n in steps) + " |")
    for prefix, pattern in PATTERNS:
        text = (prefix + pattern * (args.bytes // len(pattern) + 1))[:args.bytes]
        cells = []
        for name, step in steps.items():
            seconds = best_of(args.rounds, step, text)
            cells.append(f"{seconds * 1e3:.2f} ({seconds / baseline[name]:.0f}×)")
        label = f"{prefix!r} + {pattern!r}" if prefix else repr(pattern)
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
