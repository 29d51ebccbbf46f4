"""R11's cost on the ingest path, in memory: records per second through R9 alone, and R9 then R11 (tokenise and
redact), on the same records in the same run. The vault write is one INSERT per batch of new tokens; it is not
timed here (it depends on the database, and only new values reach it).

    PYTHONPATH=. python -m bench.phi [--records 20000] [--distinct 500]
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from datetime import UTC, datetime

from ingest.phi import PhiKey, PhiRule, PhiTags
from ingest.redact import Redactor
from storage.events import EventRecord


def records(n: int, distinct: int, rng: random.Random) -> list[EventRecord]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        patient = f"p-{rng.randrange(distinct)}"
        out.append(EventRecord(
            event_id=uuid.uuid4(), timestamp=now, event_type=rng.choice(["file_download", "data_query", "user_login"]),
            user_id=f"u{i % 50}", received_at=now, resource_id=rng.choice([f"patients/{patient}", "doc-1", None]),
            metadata={"diagnosis": rng.choice(["J45", "E11.9", "I10"]), "mrn": rng.randrange(distinct),
                      "visit": {"ward": "3B", "patient": patient}, "bytes": rng.randrange(10**6),
                      "_ingest": {"sender": "apikey:emr"}}))
    return out


def rate(step, batch: list[EventRecord], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        step(batch)
        best = min(best, time.perf_counter() - began)
    return len(batch) / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--distinct", type=int, default=500)
    args = parser.parse_args()
    batch = records(args.records, args.distinct, random.Random(1))
    redactor = Redactor()
    tags = PhiTags.of(resources=("patients/*",), metadata_keys=("diagnosis", "mrn", "patient"))
    stored: list = []
    tokenise = PhiRule(tags, key=PhiKey(os.urandom(32)), vault=stored.extend)
    redact = PhiRule(tags, mode="redact")

    def r9(rs):
        return [redactor.redact(r.metadata) for r in rs]

    base = rate(r9, batch)
    with_tokens = rate(lambda rs: (r9(rs), tokenise.apply(rs)), batch)
    with_redact = rate(lambda rs: (r9(rs), redact.apply(rs)), batch)
    print(f"records {args.records:,}, distinct patients {args.distinct:,}, vault entries {len(stored):,}")
    print(f"R9 alone            {base:12,.0f} records/s")
    print(f"R9 + R11 tokenise   {with_tokens:12,.0f} records/s  ({with_tokens / base:.2f}x of R9 alone)")
    print(f"R9 + R11 redact     {with_redact:12,.0f} records/s  ({with_redact / base:.2f}x of R9 alone)")


if __name__ == "__main__":
    main()
