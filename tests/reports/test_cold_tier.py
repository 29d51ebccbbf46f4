"""Reports stay correct when part (here: all) of what they aggregate is in the cold tier.

The access review's last activity per account is aggregated separately in PostgreSQL and in the Parquet
scan; with the period ending where the archive ends, every event it looks at is archived, so an account
or key active only in the cold tier must still count as active (and not show as dormant or unused).
"""

from __future__ import annotations

import polars as pl

from reports import engine, registry
from tests.reports.conftest import ARCHIVED_BEFORE, START
from tests.reports.test_reports import NOW, figure, pdf_text


def test_the_access_review_sees_activity_that_is_only_in_the_cold_tier(seeded, tmp_path):
    with seeded.pool.connection() as conn:  # nothing of the window is hot any more
        assert conn.execute('SELECT count(*) FROM audit_events WHERE "timestamp" < %s',
                            (ARCHIVED_BEFORE,)).fetchone()[0] == 0
    params = registry.get("access-review").params(START, ARCHIVED_BEFORE)
    g = engine.generate(seeded.source(), params, tmp_path, generated_by="tests:auditor", now=NOW,
                        trusted_keys=seeded.trusted, archive=seeded.store)
    expected = {}
    for e in seeded.events:
        if e.timestamp < ARCHIVED_BEFORE and str(e.outcome) != "failure":
            expected[e.user_id] = max(expected.get(e.user_id, e.timestamp), e.timestamp)
    keys = pl.read_csv(tmp_path / "keys.csv")
    ingest = keys.filter(pl.col("name") == "ingest-key")
    assert ingest["last_activity"].to_list() == [expected["apikey:ingest-key"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
    assert pl.read_csv(tmp_path / "unused_keys.csv")["name"].to_list() == ["admin-old"]
    # alice, bob and carol acted only in archived days: only dave (failed sign-ins aimed at him) is dormant
    assert pl.read_csv(tmp_path / "dormant_accounts.csv")["user_id"].to_list() == ["dave"]
    text = pdf_text(g.pdf)
    assert figure(text, "Active keys unused for 90 days") == "1"
    assert figure(text, "Accounts with no activity in 90 days") == "1"
