"""``auditwatch alerts``: rule validation, backtests, silences and acknowledgement from the shell."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from storage.events import EventRecord, Outcome
from storage.timescale import db, rollups
from storage.timescale.writer import EventWriter


def test_rules_validate_and_list(run, tmp_path):
    result = run("alerts", "rules", "validate")
    assert result.exit_code == 0 and "12 rule file(s) valid" in result.output  # 8 security, 4 platform health
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "oops.yml").write_text("id: oops\ntitle: x\nseverity: loud\nthreshold: {window: 1m, at_least: 2}\n")
    result = run("alerts", "rules", "validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad / 'oops.yml'}:3: `severity`: must be one of info, warning, critical" in result.output
    listed = run("alerts", "rules", "list")
    assert "failed_login_burst" in listed.output and "packaged" in listed.output


def test_backtest_counts_episodes_over_stored_data(run, db_url):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    events = []
    for days_ago, user in ((3, "amy"), (2, "amy"), (1, "ben")):
        start = now - timedelta(days=days_ago, hours=1)
        events += [EventRecord(event_id=uuid.uuid4(), timestamp=start + timedelta(seconds=3 * i), received_at=start,
                               event_type="user_login", user_id=user, outcome=Outcome.FAILURE) for i in range(15)]
    # Background noise that must not fire: a failure a minute for a day.
    events += [EventRecord(event_id=uuid.uuid4(), timestamp=now - timedelta(minutes=m), received_at=now,
                           event_type="user_login", user_id="noisy", outcome=Outcome.FAILURE) for m in range(1440)]
    pool = db.open_pool(db_url, min_size=1, max_size=2)
    try:
        EventWriter(pool).write(events)
        rollups.refresh(pool, now=now)
    finally:
        pool.close()
    result = run("alerts", "backtest", "failed_login_burst", "--since", "7d")
    assert result.exit_code == 0, result.output
    assert "would have fired 3 time(s)" in result.output and "2 distinct group(s)" in result.output
    assert "2  user_id=amy" in result.output
    none = run("alerts", "backtest", "password_spraying", "--since", "7d")
    assert "would have fired 0 time(s)" in none.output
    assert run("alerts", "backtest", "nope").exit_code == 2
    assert "not a duration" in run("alerts", "backtest", "failed_login_burst", "--since", "a week").output


def test_silences_and_ack_from_the_shell(run):
    added = run("alerts", "silence", "add", "--match", "rule_id=failed_login_burst", "--for", "1h",
                "--comment", "maintenance")
    assert added.exit_code == 0 and "silence 1 created" in added.output
    assert "maintenance" in run("alerts", "silence", "list").output
    assert run("alerts", "silence", "expire", "1").exit_code == 0
    assert run("alerts", "silence", "list").output == ""
    assert "ended" in run("alerts", "silence", "list", "--all").output
    assert run("alerts", "silence", "expire", "1").exit_code == 2
    assert "label=value" in run("alerts", "silence", "add", "--match", "nolabel", "--comment", "x").output
    unknown = run("alerts", "ack", "0" * 20)
    assert unknown.exit_code == 2 and "no alert has fingerprint" in unknown.output
