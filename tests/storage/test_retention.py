"""Cold retention: whole days expire per event type; longer-kept types and held rows survive; crash-safe."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage import tiers
from storage.timescale import archive, catalog, legal_hold, queries, retention
from storage.timescale.queries import EventQuery
from tests.storage.cold_data import NOW, assert_each_once, audit, overwrite, read_bytes, seed

# Seven years and a bit later: the cutoff falls at midnight starting NOW - 97 days, so the
# three oldest archived days (100, 99, 98 days before NOW) have expired under the 7-year default.
LATER = (NOW - timedelta(days=97)).replace(year=NOW.year + 7)
EXPIRED_DAYS = {(NOW - timedelta(days=d)).date() for d in (100, 99, 98)}


@pytest.fixture
def archived(pool, store):
    events = seed(pool)
    archive.run(pool, store, now=NOW, hot_days=90, audit=audit())
    return events


def expected_survivors(events, *, keep_types=(), keep=lambda e: False):
    return {str(e.event_id) for e in events
            if e.timestamp.date() not in EXPIRED_DAYS or e.event_type in keep_types or keep(e)}


def all_ids(pool, store) -> set[str]:
    frame = tiers.events_frame(pool, store, EventQuery())
    return set(frame.get_column("event_id").to_list())


def set_policy(pool, **value):
    catalog.put_setting(pool, "retention", {"hot_days": 90, "cold_years": 7, **value}, "tests")


def test_the_dry_run_shows_what_would_go_and_changes_nothing(pool, store, archived):
    set_policy(pool, cold_years_by_type={"config_change": 10})
    before = archive.list_files(pool, states=("complete",))
    plan = retention.plan(pool, store, now=LATER)
    assert {a.file.day for a in plan.actions} == EXPIRED_DAYS
    assert {a.action for a in plan.actions} == {"rewrite"}
    expired = [e for e in archived if e.timestamp.date() in EXPIRED_DAYS and e.event_type != "config_change"]
    assert plan.rows == len(expired)
    assert sum(sum(a.expired_by_type.values()) for a in plan.actions) == len(expired)
    assert all("config_change" not in a.expired_by_type for a in plan.actions)
    assert archive.list_files(pool, states=("complete",)) == before
    assert all(store.exists(f.path) for f in before)


def test_expired_days_are_deleted_and_types_kept_longer_survive_in_a_rewritten_file(pool, store, archived):
    set_policy(pool, cold_years_by_type={"config_change": 10})
    result = retention.apply(pool, store, now=LATER, audit=audit())
    assert len(result.rewritten) == 3 and result.deleted == []
    assert all_ids(pool, store) - {""} >= expected_survivors(archived, keep_types=("config_change",))
    gone = {str(e.event_id) for e in archived} - expected_survivors(archived, keep_types=("config_change",))
    assert gone and not (gone & all_ids(pool, store))
    superseded = archive.list_files(pool, states=("superseded",))
    assert len(superseded) == 3 and all(f.deleted_at and f.superseded_by for f in superseded)
    assert not any(store.exists(f.path) for f in superseded)
    new = [f for f in archive.list_files(pool, states=("complete",)) if f.supersedes]
    assert {f.event_types[0] for f in new} == {"config_change"} and all(len(f.event_types) == 1 for f in new)
    records = queries.search(pool, EventQuery(event_types=("events_expired",))).events
    assert len(records) == 3 and sum(r.metadata["rows_removed"] for r in records) == len(gone)
    # Per-type counts are a list: as map keys, R9 would mask types named like "password_reset" or "auth_failure".
    by_type = [row for r in records for row in r.metadata["by_type"]]
    assert sum(row["rows"] for row in by_type) == len(gone) and "config_change" not in {
        row["event_type"] for row in by_type}
    # A second run has nothing left to do.
    again = retention.apply(pool, store, now=LATER, audit=audit())
    assert again.rows == 0 and again.rewritten == [] and again.deleted == []


def test_a_day_whose_types_all_expired_is_deleted_whole(pool, store, archived):
    result = retention.apply(pool, store, now=LATER, audit=audit())
    assert len(result.deleted) == 3 and result.rewritten == []
    assert {f.day for f in archive.list_files(pool, states=("expired",))} == EXPIRED_DAYS
    assert all_ids(pool, store) >= expected_survivors(archived)
    assert not (all_ids(pool, store) & ({str(e.event_id) for e in archived} - expected_survivors(archived)))
    assert_each_once(pool, store, [e for e in archived if str(e.event_id) in expected_survivors(archived)])


def test_held_rows_survive_expiry(pool, store, archived):
    hold = legal_hold.place(pool, user_id="bob", reason="litigation", created_by="tests", audit=audit())
    case = legal_hold.place(pool, case_id="CASE-1", reason="case", created_by="tests", audit=audit())
    day = min(EXPIRED_DAYS)
    whole_day = legal_hold.place(pool, start_time=NOW - timedelta(days=101),
                                 end_time=NOW - timedelta(days=99, hours=12), reason="incident", created_by="tests",
                                 audit=audit())
    plan = retention.plan(pool, store, now=LATER)
    held_days = {a.file.day for a in plan.actions if a.action == "held"}
    assert held_days == {day}

    def kept(e) -> bool:
        return (e.user_id == "bob" or e.metadata.get("case_id") == "CASE-1"
                or (whole_day.start_time <= e.timestamp < whole_day.end_time))

    retention.apply(pool, store, now=LATER, audit=audit())
    survivors = expected_survivors(archived, keep=kept)
    assert all_ids(pool, store) >= survivors
    assert not (all_ids(pool, store) & ({str(e.event_id) for e in archived} - survivors))
    # Released holds stop protecting: the next run removes what they kept.
    for h in (hold, case, whole_day):
        legal_hold.release(pool, h.hold_id, released_by="tests", reason="closed", audit=audit())
    retention.apply(pool, store, now=LATER, audit=audit())
    assert not (all_ids(pool, store) & ({str(e.event_id) for e in archived} - expected_survivors(archived)))


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("step", ["file_written", "rewrite_verified", "rewrite_committed", "expired_committed"])
def test_a_crash_during_retention_loses_nothing_that_must_stay(pool, store, archived, step):
    # config_change kept longer: two days are rewritten; data_export never expires in day 98 - deleted days too.
    set_policy(pool, cold_years_by_type={"config_change": 10})
    if step == "expired_committed":
        set_policy(pool)

    def hook(name: str) -> None:
        if name == step:
            raise Crash(name)

    with pytest.raises(Crash):
        retention.apply(pool, store, now=LATER, audit=audit(), hook=hook)
    keep = ("config_change",) if step != "expired_committed" else ()
    survivors = expected_survivors(archived, keep_types=keep)
    with pool.connection() as conn:
        for f in archive.files(conn, states=("verified", "complete")):
            store.verify(f.path, rows=f.rows, sha256=f.sha256)
    assert all_ids(pool, store) >= survivors
    retention.apply(pool, store, now=LATER, audit=audit())
    assert_each_once(pool, store, [e for e in archived if str(e.event_id) in survivors])
    assert not (all_ids(pool, store) & ({str(e.event_id) for e in archived} - survivors))


def test_a_tampered_file_is_reported_not_rewritten(pool, store, archived):
    victim = next(f for f in archive.list_files(pool, states=("complete",)) if f.day in EXPIRED_DAYS)
    overwrite(store, victim.path, read_bytes(store, victim.path) + b"x")
    result = retention.apply(pool, store, now=LATER, audit=audit())
    assert [a.file.archive_id for a in result.problems] == [victim.archive_id]
    assert "SHA-256" in result.problems[0].problem
    assert store.exists(victim.path)


def test_policy_reads_the_retention_setting_with_defaults(pool):
    with pool.connection() as conn:
        assert retention.load_policy(conn) == retention.RetentionPolicy()
    set_policy(pool, hot_days=30, cold_years_by_type={"legal_hold": 30})
    with pool.connection() as conn:
        policy = retention.load_policy(conn)
    assert policy.hot_days == 30 and policy.years_for("legal_hold") == 30 and policy.years_for("x") == 7
