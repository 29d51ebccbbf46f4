"""Schemathesis against the live server, from its own OpenAPI document: at least 10,000 generated requests and
not one 5xx (issue 14, fuzzing). The larger run and its figures: bench/fuzz.py, bench/README.md."""

from __future__ import annotations

import os

import pytest

from bench import fuzz
from tests.conftest import start_server

# Issue 14's CI-sized run. One pass of the phases is ~1,900 requests whatever the example count (the coverage
# phase dominates); fuzzing-only runs with the following seeds then go on until the count is reached. The rate
# is the machine's (5-55 requests/s seen on the shared 2-core box), hence a count, not a time, with a ceiling.
REQUESTS = int(os.environ.get("AUDITWATCH_FUZZ_REQUESTS", "10000"))
EXAMPLES = int(os.environ.get("AUDITWATCH_FUZZ_EXAMPLES", "10"))
FIRST_SECONDS = float(os.environ.get("AUDITWATCH_FUZZ_SECONDS", "150"))
CEILING_SECONDS = float(os.environ.get("AUDITWATCH_FUZZ_CEILING_SECONDS", "1800"))
SEED = int(os.environ.get("AUDITWATCH_FUZZ_SEED", "14"))


@pytest.mark.timeout(int(CEILING_SECONDS) + 240)  # the ceiling, the server's start and a last run's overshoot
def test_schemathesis_gets_no_server_error_in_10000_requests(db_url, tmp_path):
    # Three workers with 16 threads each, so the fuzzer's requests are not queued behind one slow read.
    server = start_server(db_url, tmp_path, AUDITWATCH_WORKERS="3")
    try:
        result = fuzz.run_until(server.url, fuzz.admin_key(db_url), requests=REQUESTS, examples=EXAMPLES,
                                workdir=tmp_path / "fuzz", workers=4, seed=SEED, first_seconds=FIRST_SECONDS,
                                ceiling=CEILING_SECONDS)
    finally:
        server.stop()
    log = server.log.read_text()
    print(f"fuzz: {result.requests} requests, {result.operations} operations, {result.seconds:.0f} s "
          f"({result.per_second:.0f}/s), statuses {dict(result.statuses)}, 5xx {len(result.server_errors)}, "
          f"seeds {result.seeds} (rerun one: AUDITWATCH_FUZZ_SEED)")
    assert result.server_errors == [], (f"seeds {result.seeds}\n" + "\n".join(result.server_errors[:20]) + "\n"
                                        + log[-4000:])
    assert result.requests >= REQUESTS, (result.requests, result.seconds, result.output[-3000:])
    assert result.statuses[200] > 0 and result.statuses[400] > 0  # it reached the handlers, valid and not
    assert "Traceback" not in log, log[-4000:]
    assert result.unauthorized < result.requests // 4, "the fuzzer lost its key: its requests were 401s"
