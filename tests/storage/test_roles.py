"""Append-only enforced by the database: the application role can add events but not change or delete one.

Roles are cluster-wide, so each test makes its own app role (roles.sql with another name) and drops it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest

from storage.integrity import checkpoints
from storage.timescale import erasure, sealing, verify
from storage.timescale.writer import EventWriter
from tests.storage.conftest import T0


def _refused(pool, statement: str, params=()) -> str:
    with pool.connection() as c, pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
        c.execute(statement, params)
    return caught.value.sqlstate


def test_the_app_role_appends_but_cannot_update_or_delete_an_event(app_pool, pool, make_event):
    events = [make_event(metadata={"n": i}) for i in range(5)]
    assert EventWriter(app_pool).write(events[:4]) == [True] * 4  # COPY, sealed (integrity_seal), then linked
    assert EventWriter(app_pool).write(events[2:]) == [False, False, True]  # the staging table's ON CONFLICT
    victim = events[0].event_id
    assert _refused(app_pool, "UPDATE audit_events SET user_id = 'mallory' WHERE event_id = %s", (victim,)) == "42501"
    assert _refused(app_pool, "DELETE FROM audit_events WHERE event_id = %s", (victim,)) == "42501"
    assert _refused(app_pool, "TRUNCATE audit_events") == "42501"
    # Nor the integrity tables behind verify's back: no forged removal, no edited link, no deleted checkpoint.
    assert _refused(app_pool, "INSERT INTO integrity_removals (lo, hi, reason, rows, removed_by) "
                              "VALUES (now(), now() + interval '1 day', 'retention', 1, 'x')") == "42501"
    assert _refused(app_pool, "SELECT integrity_record_removal(now(), now() + interval '1 day', 'retention', 1, "
                              "NULL, 'x', gen_random_uuid(), now())") == "42501"
    assert _refused(app_pool, "UPDATE integrity_batches SET rows = rows + 1") == "42501"
    assert _refused(app_pool, "DELETE FROM integrity_checkpoints") == "42501"
    # the seals the writers make (migration 0021) only through integrity_seal: never edited, deleted or made linked
    assert _refused(app_pool, "UPDATE integrity_seals SET root = '\\x00'") == "42501"
    assert _refused(app_pool, "UPDATE integrity_seals SET linked_pos = NULL") == "42501"
    assert _refused(app_pool, "DELETE FROM integrity_seals") == "42501"
    assert _refused(app_pool, "CREATE FUNCTION public.convert_to(t text, e text) RETURNS bytea LANGUAGE sql "
                              "AS 'SELECT NULL::bytea'") == "42501"
    with app_pool.connection() as c:  # ... while reading, and the platform's own tables, stay open to it
        assert c.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 5
        c.execute("INSERT INTO settings (key, value, updated_by) VALUES ('t', '{}', 'tests') "
                  "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
    key = checkpoints.generate()
    sealing.write_checkpoint(pool, key, now=T0)  # the owner signs
    report = verify.verify(pool, trusted_keys=[checkpoints.public_bytes(key)])
    assert report.ok and report.events == 5, report.problems


def test_erasure_works_for_the_app_role_through_its_function_and_verifies(app_pool, pool, make_event):
    events = [make_event() for _ in range(4)]
    EventWriter(app_pool).write(events)

    def audit(erased):
        return make_event(event_type="event_erased", user_id="apikey:dpo", resource_id=str(erased[0].event_id),
                          timestamp=T0 + timedelta(minutes=1))

    assert len(erasure.erase_event(app_pool, events[1].event_id, audit)) == 1
    report = verify.verify(pool, trusted_keys=[])
    assert report.ok and report.erased == 1 and report.events == 4, report.problems


def test_the_erase_function_cannot_delete_without_the_sealed_erasure_record(app_pool, pool, make_event):
    events = [make_event() for _ in range(2)]
    EventWriter(app_pool).write(events)
    with app_pool.connection() as c:
        rows = erasure.rows_to_erase(c, events[0].event_id)
        c.commit()
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="no event_erased record"):
            with c.transaction():
                erasure.erase_rows(c, events[0].event_id, rows, erasure_event_id=uuid.uuid4(), erased_by="mallory",
                                   erased_at=T0)
    with pool.connection() as c:
        assert c.execute("SELECT count(*) FROM audit_events WHERE event_id = %s",
                         (events[0].event_id,)).fetchone()[0] == 1


def test_archiving_and_retention_still_work_as_the_owner(app_pool, pool, tmp_path):
    import random

    from storage.cold.store import ColdStore
    from storage.timescale import archive, retention
    from tests.storage.cold_data import NOW, OLD_DAYS, audit, event

    rng = random.Random(5)
    old = [event((NOW - timedelta(days=d)).replace(hour=2) + timedelta(minutes=5 * i), rng=rng)
           for d in OLD_DAYS[:2] for i in range(6)]
    EventWriter(app_pool).write(old)
    store = ColdStore(tmp_path / "archive")
    assert archive.run(pool, store, now=NOW, hot_days=90, audit=audit()).rows == len(old)
    later = (NOW - timedelta(days=97)).replace(year=NOW.year + 7)
    assert retention.apply(pool, store, now=later, audit=audit()).rows == len(old)
    report = verify.verify(pool, trusted_keys=[], cold=verify.cold_reader(pool, store))
    assert report.ok and report.expired_batches >= 1, report.problems
