"""Tamper evidence against an insider with database write access (issue 14 #2).

Each test is an attack that fooled ``verify`` (or the checkpoint signer) before: a forged removal
record, deleted checkpoints, a chain rewritten before signing, a function shadowing a built-in the
leaf hash calls. The attacker is the test's superuser connection.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from psycopg import sql

from storage.errors import IntegrityError
from storage.integrity import chain, checkpoints
from storage.timescale import sealing, verify
from storage.timescale.writer import EventWriter, insert_rows_sealed, row_of
from tests.storage.conftest import T0, migrate_up_to


@pytest.fixture
def sealed(pool, make_event, key):
    """Three sealed batches (one holds a data_export), the newest covered by a signed checkpoint."""
    batches = []
    for b in range(3):
        events = [make_event(user_id=f"u{b}{i}", event_type="data_export" if b == 1 else "user_login",
                             metadata={"n": i, "batch": b}) for i in range(5)]
        assert EventWriter(pool).write(events) == [True] * 5
        batches.append(events)
    assert sealing.write_checkpoint(pool, key, now=T0) is not None
    return batches


def kinds(report: verify.VerifyReport) -> set[str]:
    return {p.kind for p in report.problems}


def _rewrite_chain_from(conn, event_id) -> None:
    """Edit one row, then recompute its batch root, every later link and the head (a consistent rewrite)."""
    conn.execute("UPDATE audit_events SET outcome = 'failure' WHERE event_id = %s", (event_id,))
    seq = conn.execute("SELECT batch_seq FROM audit_events WHERE event_id = %s", (event_id,)).fetchone()[0]
    leaves = [bytes(r[0]) for r in conn.execute(sql.SQL("SELECT {} FROM audit_events WHERE batch_seq = %s").format(
        sealing.leaf_sql()), (seq,))]
    conn.execute("UPDATE integrity_batches SET root = %s WHERE batch_seq = %s", (chain.merkle_root(leaves), seq))
    prev = chain.ZERO_HASH
    for pos, bseq, kind, n, root, lo, hi, at in conn.execute(
            "SELECT chain_pos, batch_seq, kind, rows, root, lo, hi, sealed_at FROM integrity_batches "
            "ORDER BY chain_pos").fetchall():
        link = chain.chain_link(prev, pos, bseq, kind, n, bytes(root), lo, hi, at)
        conn.execute("UPDATE integrity_batches SET prev_hash = %s, chain_hash = %s WHERE chain_pos = %s",
                     (prev, link, pos))
        prev = link
    conn.execute("UPDATE integrity_head SET chain_hash = %s", (prev,))


# -- forged removal records --------------------------------------------------------------------------------

def test_a_forged_retention_removal_does_not_excuse_a_deleted_export(sealed, check, conn):
    """The issue's reproduction: one INSERT into integrity_removals and a DELETE of a data_export event."""
    victim = sealed[1][2]
    conn.execute("DELETE FROM audit_events WHERE event_id = %s", (victim.event_id,))
    conn.execute("INSERT INTO integrity_removals (lo, hi, reason, rows, removed_by) "
                 "VALUES (%s, %s, 'retention', 1, 'retention')",
                 (victim.timestamp - timedelta(seconds=1), victim.timestamp + timedelta(seconds=1)))
    report = check()
    assert not report.ok and report.expired_batches == 0
    assert {"rows_missing", "removal_forged"} <= kinds(report)


def test_a_removal_forged_with_its_link_recomputed_is_still_unmatched(sealed, check, conn):
    """Even through the chaining function, a removal needs its sealed self-audit record."""
    victim = sealed[1][2]
    conn.execute("DELETE FROM audit_events WHERE event_id = %s", (victim.event_id,))
    conn.execute("SELECT integrity_record_removal(%s, %s, 'retention', 1, NULL, 'retention', gen_random_uuid(), %s)",
                 (victim.timestamp - timedelta(seconds=1), victim.timestamp + timedelta(seconds=1), T0))
    report = check()
    assert {"rows_missing", "removal_unmatched"} <= kinds(report)


def test_editing_or_deleting_a_signed_removal_record_is_detected(pool, make_event, key, check, conn):
    from storage.timescale import removals, self_audit

    old = [make_event(timestamp=T0 - timedelta(days=100, minutes=i)) for i in range(3)]
    EventWriter(pool).write(old)
    lo, hi = T0 - timedelta(days=101), T0 - timedelta(days=90)
    conn.execute("DELETE FROM audit_events WHERE \"timestamp\" < %s", (hi,))  # the archiver's drop
    with pool.connection() as tx:
        removals.record_removal(tx, lo, hi, reason="archive", rows=3, removed_by="archiver",
                                 record=self_audit.record("events_archived", "archiver", now=T0, resource_id="c1"),
                                 archive_ref="c1")
    sealing.write_checkpoint(pool, key, now=T0)
    lawful = check()
    assert lawful.ok and lawful.unchecked_batches == 1, lawful.problems
    conn.execute("UPDATE integrity_removals SET reason = 'retention'")
    assert {"removal_altered", "rows_missing"} <= kinds(check())
    conn.execute("DELETE FROM integrity_removals")
    assert "removal_truncated" in kinds(check())


def test_a_retention_removal_never_excuses_rows_that_were_not_archived_first(pool, make_event, check, conn):
    """Retention removes cold files only: a matched retention record over hot rows is not lawful for them."""
    from storage.timescale import removals, self_audit

    old = [make_event(timestamp=T0 - timedelta(days=100, minutes=i)) for i in range(3)]
    EventWriter(pool).write(old)
    conn.execute("DELETE FROM audit_events WHERE \"timestamp\" < %s", (T0 - timedelta(days=90),))
    with pool.connection() as tx:
        removals.record_removal(tx, T0 - timedelta(days=101), T0 - timedelta(days=90), reason="retention", rows=3,
                                 removed_by="retention", record=self_audit.record("events_expired", "retention",
                                                                                  now=T0, resource_id="f"),
                                 archive_ref="f")
    report = check()
    assert {"rows_missing", "removal_unarchived"} <= kinds(report)


# -- checkpoint continuity -----------------------------------------------------------------------------------

def test_deleting_every_checkpoint_fails_verify(sealed, check, conn):
    conn.execute("DELETE FROM integrity_checkpoints")
    report = check()
    assert "checkpoints_missing" in kinds(report)


def test_a_chain_older_than_the_checkpoint_interval_without_checkpoints_fails(pool, make_event, check, conn):
    EventWriter(pool).write([make_event()])
    young = check(checkpoint_every=timedelta(minutes=5))
    assert young.ok and "no signed checkpoint yet" in young.notes[0]
    sealed_at = conn.execute("SELECT sealed_at FROM integrity_batches").fetchone()[0]
    report = check(checkpoint_every=timedelta(minutes=5), now=sealed_at + timedelta(hours=1))
    assert "checkpoints_missing" in kinds(report)


def test_the_signer_refuses_a_chain_rewritten_since_its_last_checkpoint(sealed, pool, make_event, key, conn):
    _rewrite_chain_from(conn, sealed[0][0].event_id)
    EventWriter(pool).write([make_event()])
    with pytest.raises(IntegrityError, match="does not continue"):
        sealing.write_checkpoint(pool, key, now=T0 + timedelta(minutes=5))
    assert len(sealing.list_checkpoints(pool)) == 1


def test_the_signer_refuses_a_chain_whose_new_links_were_forged(sealed, pool, make_event, key, conn):
    EventWriter(pool).write([make_event()])
    conn.execute("UPDATE integrity_batches SET rows = rows + 1 WHERE chain_pos = 4")
    with pytest.raises(IntegrityError, match="batch #4"):
        sealing.write_checkpoint(pool, key, now=T0 + timedelta(minutes=5))


def test_the_signer_refuses_when_the_signed_batch_was_deleted(sealed, pool, make_event, key, conn):
    conn.execute("DELETE FROM integrity_batches WHERE chain_pos = 3")
    with pytest.raises(IntegrityError, match="batch #3 is missing"):
        sealing.write_checkpoint(pool, key, now=T0 + timedelta(minutes=5), force=True)


def test_the_signer_refuses_when_every_checkpoint_was_deleted(sealed, pool, key, conn):
    conn.execute("DELETE FROM integrity_checkpoints")
    with pytest.raises(IntegrityError, match="checkpoints were deleted"):
        sealing.write_checkpoint(pool, key, now=T0 + timedelta(minutes=5), force=True)


# -- a pinned search_path ------------------------------------------------------------------------------------

def test_a_function_shadowing_a_builtin_cannot_hide_an_edit(sealed, check, conn):
    """public.convert_to(text, text) beats pg_catalog.convert_to(text, name) for an unknown literal: the
    attacker's version hashes 'mallory' as 'u00', so an unqualified leaf hash would not see the edit."""
    conn.execute("""CREATE FUNCTION public.convert_to(t text, enc text) RETURNS bytea LANGUAGE sql IMMUTABLE
                    AS $$ SELECT pg_catalog.convert_to(CASE WHEN t = 'mallory' THEN 'u00' ELSE t END,
                                                       enc::pg_catalog.name) $$""")
    conn.execute("UPDATE audit_events SET user_id = 'mallory' WHERE event_id = %s", (sealed[0][0].event_id,))
    report = check()
    assert kinds(report) == {"content_changed"} and report.first.chain_pos == 1


def test_integrity_functions_pin_their_search_path(conn):
    rows = conn.execute("SELECT proname, proconfig FROM pg_proc WHERE proname LIKE 'integrity%'").fetchall()
    assert {name for name, _ in rows} >= {"integrity_append", "integrity_merkle_root", "integrity_record_removal"}
    for name, config in rows:
        assert config and any(c.startswith("search_path=pg_catalog") for c in config), (name, config)


# -- removals recorded before migration 0011 -------------------------------------------------------------------

def test_removals_recorded_before_the_chain_are_adopted_with_their_records(empty_db_url, make_event, key,
                                                                          old_writes):
    import psycopg

    from storage.timescale import db, migrations, self_audit

    with psycopg.connect(empty_db_url, autocommit=True) as c:
        migrate_up_to(c, 10)  # removal records not yet chained
    legacy = db.open_pool(empty_db_url, min_size=1, max_size=2)
    try:
        archived = [make_event(timestamp=T0 - timedelta(days=100, minutes=i)) for i in range(3)]
        deleted = [make_event(timestamp=T0 - timedelta(days=50, minutes=i)) for i in range(2)]
        # Sealed as a writer on the 0010 schema did: linked at once, through integrity_append (today's writer
        # seals through integrity_seal, migration 0021).
        for batch in (archived, deleted):
            with old_writes(), legacy.connection() as c:
                insert_rows_sealed(c, [row_of(e) for e in batch])
        with old_writes(), legacy.connection() as c:  # what the archiver did before 0011: a row and its record
            c.execute("DELETE FROM audit_events WHERE \"timestamp\" < %s", (T0 - timedelta(days=40),))
            c.execute("INSERT INTO integrity_removals (lo, hi, reason, rows, archive_ref, removed_by) "
                      "VALUES (%s, %s, 'archive', 3, 'chunk_1', 'archiver')",
                      (T0 - timedelta(days=101), T0 - timedelta(days=90)))
            self_audit.store(c, self_audit.record("events_archived", "worker", now=T0, resource_id="chunk_1"))
            # ... and one typed in by hand to hide the two deleted rows
            c.execute("INSERT INTO integrity_removals (lo, hi, reason, rows, archive_ref, removed_by) "
                      "VALUES (%s, %s, 'archive', 2, 'chunk_2', 'archiver')",
                      (T0 - timedelta(days=51), T0 - timedelta(days=49)))
        with psycopg.connect(empty_db_url) as c:
            migrations.migrate(c)
        report = verify.verify(legacy, trusted_keys=[checkpoints.public_bytes(key)])
        assert kinds(report) == {"removal_unmatched", "rows_missing"}, report.problems
        unmatched = [p.message for p in report.problems if p.kind == "removal_unmatched"]
        assert len(unmatched) == 1 and unmatched[0].startswith("removal record #2 (archive")
        assert report.unchecked_batches == 1  # the adopted archive removal, matched by its record
        assert sealing.write_checkpoint(legacy, key, now=T0) is not None  # the adopted chain continues
    finally:
        legacy.close()
