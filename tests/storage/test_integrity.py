"""Tamper evidence: normal operations verify clean, and every kind of tampering is caught and named.

The attacker here is a database superuser (the test connection): they edit rows and integrity
tables directly, as someone with stolen credentials or disk access would.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from storage.errors import SigningKeyError
from storage.integrity import chain, checkpoints
from storage.timescale import erasure, migrations, removals, sealing, self_audit, verify
from storage.timescale.writer import EventWriter, insert_rows, row_of
from tests.storage.conftest import T0, migrate_up_to


@pytest.fixture
def sealed(pool, make_event, key):
    """Three sealed batches of five events each, the newest covered by a signed checkpoint."""
    batches = []
    for b in range(3):
        events = [make_event(user_id=f"u{b}{i}", metadata={"n": i, "batch": b}) for i in range(5)]
        assert EventWriter(pool).write(events) == [True] * 5
        batches.append(events)
    assert sealing.write_checkpoint(pool, key, now=T0) is not None
    return batches


def kinds(report: verify.VerifyReport) -> set[str]:
    return {p.kind for p in report.problems}


def batch_of(conn, event_id) -> int:
    return conn.execute("SELECT batch_seq FROM audit_events WHERE event_id = %s", (event_id,)).fetchone()[0]


# -- the encoding: SQL and Python agree on what PostgreSQL stores ------------------------------------------

AWKWARD_METADATA = [
    '{"b": -0.0, "a": 1.50, "big": 123456789012345678901234567890, "e": 1e-7, "f": 2.5E+3}',
    '{"zz": {"nested": [1, 2.0, null, true, "x"]}, "a": "é ü 日本 🚀", "quote": "\\"\\\\"}',
    '{}',
    '{"same": 1, "same": 2}',
]


def test_sql_leaf_equals_the_python_reproduction_from_the_parquet_contract(conn):
    """Rows with values a jsonb/inet round trip rewrites hash the same in SQL and from their contract
    encodings (the form the Parquet cold tier stores), also through a pyarrow table."""
    ips = [None, "81.2.69.142", "2001:db8::1", "::ffff:1.2.3.4", "10.1.2.0/24"]
    for i, meta in enumerate(AWKWARD_METADATA):
        conn.execute(
            "INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id, outcome, source, source_ip, "
            "user_agent, resource_id, metadata, received_at) VALUES (%s, %s, 'user_login', %s, 'success', %s, "
            "%s::inet, %s, %s, %s::jsonb, %s)",
            (uuid.uuid4(), T0 - timedelta(microseconds=123_457 * i + 1), f"user-{i}-ø", None if i % 2 else "web",
             ips[i % len(ips)], "agent \x01 with control", "" if i == 2 else None, meta,
             datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC) if i == 3 else T0))
    contract = conn.execute(sql.SQL(
        'SELECT event_id::text AS event_id, "timestamp", event_type, user_id, outcome, source, '
        "source_ip::text AS source_ip, source_country, source_asn, user_agent, resource_id, "
        "metadata::text AS metadata, received_at, {leaf} AS leaf FROM audit_events ORDER BY \"timestamp\""
    ).format(leaf=sealing.leaf_sql()))
    names = [d.name for d in contract.description]
    rows = [dict(zip(names, r, strict=True)) for r in contract.fetchall()]
    assert len(rows) == len(AWKWARD_METADATA)
    stored = {r["metadata"] for r in rows}
    # jsonb rewrote what was sent (key order, -0.0, exponents, duplicate keys) but kept numeric scale:
    # hashing what a client sent, not what is stored, would have raised false alarms.
    assert not stored & set(AWKWARD_METADATA[:2]) and '{"same": 2}' in stored
    assert any('"a": 1.50' in m and "-0.0" not in m for m in stored)
    for r in rows:
        assert chain.leaf(r) == bytes(r["leaf"]), r
    table = pa.table({
        **{n: [r[n] for r in rows] for n in names if n not in ("timestamp", "received_at", "leaf")},
        "timestamp": pa.array([r["timestamp"] for r in rows], pa.timestamp("us", tz="UTC")),
        "received_at": pa.array([r["received_at"] for r in rows], pa.timestamp("us", tz="UTC")),
    })
    assert chain.leaves_from_arrow(table) == [bytes(r["leaf"]) for r in rows]


def test_the_writers_python_leaves_equal_what_verify_recomputes_from_stored_rows(pool, make_event, check, conn):
    """The fast path hashes in Python with the server's own jsonb/inet rendering; every awkward value
    must come out exactly as verify's SQL recomputation from the stored row."""
    awkward = [
        {"f": -0.0, "g": 1.10, "h": 1e-7, "i": 2.5e300, "big": 2**63 - 1, "neg": -(2**63)},
        {"z": {"b": [1, 2.0, None, True]}, "a": "é 日本 🚀 \u0001 \"q\" \\", "": ""},
        {"dup": 1, "long key first": {"x": {}}, "k": []},
    ]
    ips = ["81.2.69.142", "2001:db8::1", "::ffff:1.2.3.4", "2001:db8:0:0:1:0:0:1", None]
    events = [make_event(metadata=awkward[i % 3], source_ip=ips[i % 5], user_agent="ua \t\n ✓",
                         source="s" if i % 2 else None, resource_id="" if i == 4 else f"r{i}")
              for i in range(10)]
    assert EventWriter(pool).write(events) == [True] * 10
    assert conn.execute("SELECT count(DISTINCT batch_seq) FROM audit_events").fetchone()[0] == 1
    report = check()
    assert report.ok and report.events == 10, report.problems


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13])
def test_the_sql_merkle_root_of_the_migration_equals_the_python_one(conn, n):
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(n)]
    got = conn.execute("SELECT integrity_merkle_root(%s::bytea[])", (sorted(leaves),)).fetchone()[0]
    assert bytes(got) == chain.merkle_root(leaves)


def test_merkle_root_follows_rfc_6962():
    a, b, c = (hashlib.sha256(x).digest() for x in (b"a", b"b", b"c"))
    node = lambda x, y: hashlib.sha256(b"\x01" + x + y).digest()  # noqa: E731
    s = sorted([a, b, c])
    assert chain.merkle_root([c, a, b]) == node(node(s[0], s[1]), s[2])
    assert chain.merkle_root([]) == hashlib.sha256(b"").digest()


# -- normal operations verify clean ----------------------------------------------------------------------

def test_writes_with_duplicates_concurrent_writers_and_erasure_verify_clean(pool, make_event, check, key, conn):
    first = [make_event() for _ in range(20)]
    EventWriter(pool).write(first)
    # A retried request (duplicates of sealed rows) plus new events, and a key repeated within one batch.
    repeat = make_event()
    statuses = EventWriter(pool).write(first[:5] + [make_event(), repeat, repeat])
    assert statuses == [False] * 5 + [True, True, False]
    assert EventWriter(pool).write(first[:3]) == [False] * 3  # all duplicates: no batch appended

    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            w = EventWriter(pool)
            for i in range(6):
                w.write([make_event(user_id=f"t{t}", metadata={"i": i, "x": -0.0, "y": 1.10}) for _ in range(7)])
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

    def audit(erased):
        return make_event(event_type="event_erased", user_id="apikey:dpo", resource_id=str(erased[0].event_id))

    assert len(erasure.erase_event(pool, first[7].event_id, audit)) == 1
    sealing.write_checkpoint(pool, key, now=T0)

    report = check()
    assert report.ok, report.problems
    stored = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    assert report.events == stored == 20 + 2 + 6 * 6 * 7 + 1 - 1
    assert report.erased == 1
    assert report.chain_length == 1 + 1 + 36 + 1
    assert report.checkpoints == 1 and report.notes == []
    assert conn.execute("SELECT count(*) FROM audit_events WHERE batch_seq IS NULL").fetchone()[0] == 0


def test_unsealed_writer_is_the_off_switch_and_verify_names_its_rows(pool, make_event, check):
    EventWriter(pool, sealed=False).write([make_event()])
    report = check()
    assert kinds(report) == {"unsealed_row"}


def test_a_partial_window_recomputes_only_the_batches_it_overlaps(pool, make_event, check, conn):
    old = [make_event(timestamp=T0 - timedelta(days=3, minutes=i)) for i in range(4)]
    new = [make_event(timestamp=T0 - timedelta(minutes=i)) for i in range(4)]
    EventWriter(pool).write(old)
    EventWriter(pool).write(new)
    conn.execute("UPDATE audit_events SET user_id = 'mallory' WHERE event_id = %s", (old[0].event_id,))
    recent = check(since=T0 - timedelta(days=1))
    assert recent.ok and recent.batches == 1 and recent.events == 4
    assert kinds(check(until=T0 - timedelta(days=1))) == {"content_changed"}


# -- tampering: each is detected, with a message that says what and where ------------------------------

def test_updating_a_field_is_detected(sealed, check, conn):
    target = sealed[1][2]
    conn.execute("UPDATE audit_events SET user_id = 'someone-else' WHERE event_id = %s", (target.event_id,))
    report = check()
    assert kinds(report) == {"content_changed"}
    assert report.first.chain_pos == 2
    assert "batch #2" in report.first.message and "altered" in report.first.message


def test_editing_metadata_even_to_an_equal_looking_value_is_detected(sealed, check, conn):
    conn.execute("UPDATE audit_events SET metadata = metadata || '{\"n\": 1.0}' WHERE event_id = %s",
                 (sealed[0][1].event_id,))
    assert kinds(check()) == {"content_changed"}


def test_deleting_a_row_is_detected(sealed, check, conn):
    conn.execute("DELETE FROM audit_events WHERE event_id = %s", (sealed[0][3].event_id,))
    report = check()
    assert kinds(report) == {"rows_missing"}
    assert "batch #1" in report.first.message and "1 were deleted" in report.first.message


def test_inserting_a_forged_row_without_a_batch_is_detected(sealed, check, conn):
    forged = uuid.uuid4()
    conn.execute("INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id) "
                 "VALUES (%s, %s, 'user_login', 'alice')", (forged, T0 - timedelta(minutes=1)))
    report = check()
    assert kinds(report) == {"unsealed_row"}
    assert str(forged) in report.first.message and "forged" in report.first.message


def test_inserting_a_forged_row_into_a_sealed_batch_is_detected(sealed, check, conn):
    seq = batch_of(conn, sealed[2][0].event_id)
    conn.execute("INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id, batch_seq) "
                 "VALUES (%s, %s, 'user_login', 'alice', %s)", (uuid.uuid4(), sealed[2][0].timestamp, seq))
    report = check()
    assert kinds(report) == {"rows_added"}
    assert "batch #3" in report.first.message


def test_inserting_a_forged_row_with_an_invented_batch_is_detected(sealed, check, conn):
    conn.execute("INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id, batch_seq) "
                 "VALUES (%s, %s, 'user_login', 'alice', 999999)", (uuid.uuid4(), T0))
    assert kinds(check()) == {"unknown_batch"}


def test_swapping_values_between_rows_is_detected(sealed, check, conn):
    a, b = sealed[0][0], sealed[0][1]
    conn.execute("UPDATE audit_events SET user_id = CASE event_id WHEN %s THEN %s ELSE %s END "
                 "WHERE event_id IN (%s, %s)", (a.event_id, b.user_id, a.user_id, a.event_id, b.event_id))
    assert kinds(check()) == {"content_changed"}


def test_moving_a_row_to_another_batch_is_detected(sealed, check, conn):
    other = batch_of(conn, sealed[2][0].event_id)
    conn.execute("UPDATE audit_events SET batch_seq = %s WHERE event_id = %s", (other, sealed[0][0].event_id))
    report = check()
    assert {"rows_missing", "rows_added"} <= kinds(report)
    assert report.first.chain_pos == 1


def test_changing_an_event_time_is_detected(sealed, check, conn):
    conn.execute("UPDATE audit_events SET \"timestamp\" = \"timestamp\" - interval '1 hour' WHERE event_id = %s",
                 (sealed[1][0].event_id,))
    report = check()
    assert "row_outside_batch" in kinds(report)
    assert str(sealed[1][0].event_id) in " ".join(p.message for p in report.problems)


def test_truncating_the_newest_rows_is_detected(sealed, check, conn):
    conn.execute("DELETE FROM audit_events WHERE event_id = ANY(%s)", ([e.event_id for e in sealed[2]],))
    report = check()
    assert kinds(report) == {"rows_missing"}
    assert "batch #3" in report.first.message and "only 0 of its events remain" in report.first.message


def _truncate_newest_batch(conn, events) -> None:
    """What a careful attacker does: delete the rows, their batch and its seal, and roll the head back."""
    seq = batch_of(conn, events[0].event_id)
    conn.execute("DELETE FROM audit_events WHERE batch_seq = %s", (seq,))
    conn.execute("DELETE FROM integrity_batches WHERE batch_seq = %s", (seq,))
    conn.execute("DELETE FROM integrity_seals WHERE batch_seq = %s", (seq,))  # else verify_seals names it
    conn.execute("UPDATE integrity_head SET chain_pos = b.chain_pos, chain_hash = b.chain_hash, "
                 "events = (SELECT sum(rows) FROM integrity_batches) FROM "
                 "(SELECT chain_pos, chain_hash FROM integrity_batches ORDER BY chain_pos DESC LIMIT 1) b")


def test_truncating_the_newest_batches_is_caught_by_the_checkpoint(sealed, check, conn):
    _truncate_newest_batch(conn, sealed[2])
    report = check()
    assert kinds(report) == {"truncated"}
    assert "covers 3 batches (15 events)" in report.first.message and "ends at #2" in report.first.message


def test_truncating_batches_and_deleting_checkpoints_is_caught_by_exported_anchors(sealed, pool, check, conn):
    exported = [checkpoints.from_json_line(cp.to_json_line()) for cp in sealing.list_checkpoints(pool)]
    _truncate_newest_batch(conn, sealed[2])
    conn.execute("DELETE FROM integrity_checkpoints")
    alone = check()
    assert kinds(alone) == {"checkpoints_missing"}  # the database keeps count of the checkpoints it signed
    report = check(anchors=exported)
    assert {"truncated", "checkpoint_missing"} <= kinds(report)


def test_without_any_checkpoint_verify_says_truncation_would_go_unnoticed(pool, make_event, check):
    EventWriter(pool).write([make_event()])
    report = check()
    assert report.ok and "no signed checkpoint yet" in report.notes[0]


def test_deleting_an_integrity_batches_row_is_detected(sealed, check, conn):
    conn.execute("DELETE FROM integrity_batches WHERE chain_pos = 2")
    report = check()
    assert {"batch_missing", "unknown_batch"} <= kinds(report)
    assert report.first.kind == "batch_missing" and "positions 2..2 are missing" in report.first.message


def test_altering_an_integrity_batches_row_is_detected(sealed, check, conn):
    conn.execute("UPDATE integrity_batches SET rows = rows + 1 WHERE chain_pos = 1")
    report = check()
    assert "batch_altered" in kinds(report) and report.first.chain_pos == 1


def test_rewriting_history_consistently_is_caught_only_by_the_signed_checkpoint(sealed, check, conn):
    """The attacker edits a row, recomputes that batch's root and every later link and the head."""
    conn.execute("UPDATE audit_events SET outcome = 'failure' WHERE event_id = %s", (sealed[0][0].event_id,))
    seq = batch_of(conn, sealed[0][0].event_id)
    leaves = [bytes(r[0]) for r in conn.execute(sql.SQL("SELECT {} FROM audit_events WHERE batch_seq = %s").format(
        sealing.leaf_sql()), (seq,))]
    conn.execute("UPDATE integrity_batches SET root = %s WHERE batch_seq = %s", (chain.merkle_root(leaves), seq))
    conn.execute("UPDATE integrity_seals SET root = %s WHERE batch_seq = %s", (chain.merkle_root(leaves), seq))
    prev = chain.ZERO_HASH
    for pos, bseq, kind, n, root, lo, hi, at in conn.execute(
            "SELECT chain_pos, batch_seq, kind, rows, root, lo, hi, sealed_at FROM integrity_batches "
            "ORDER BY chain_pos").fetchall():
        link = chain.chain_link(prev, pos, bseq, kind, n, bytes(root), lo, hi, at)
        conn.execute("UPDATE integrity_batches SET prev_hash = %s, chain_hash = %s WHERE chain_pos = %s",
                     (prev, link, pos))
        prev = link
    conn.execute("UPDATE integrity_head SET chain_hash = %s", (prev,))
    report = check()
    assert kinds(report) == {"rewritten"}
    assert "no longer has the signed hash" in report.first.message


def test_a_forged_or_edited_checkpoint_is_detected(sealed, pool, check, conn):
    conn.execute("UPDATE integrity_checkpoints SET events = events + 1")
    assert "checkpoint_invalid" in kinds(check())
    conn.execute("UPDATE integrity_checkpoints SET events = events - 1, signature = %s", (bytes(64),))
    report = check()
    assert kinds(report) == {"checkpoint_invalid"} and "signature" in report.first.message


def test_checkpoints_signed_by_an_untrusted_key_are_rejected(sealed, pool):
    report = verify.verify(pool, trusted_keys=[checkpoints.public_bytes(checkpoints.generate())])
    assert kinds(report) == {"checkpoint_invalid"} and "untrusted key" in report.first.message


def test_deleting_a_middle_checkpoint_breaks_the_checkpoint_chain(sealed, pool, make_event, key, check, conn):
    for _ in range(2):
        EventWriter(pool).write([make_event()])
        sealing.write_checkpoint(pool, key, now=T0)
    conn.execute("DELETE FROM integrity_checkpoints WHERE id = (SELECT min(id) + 1 FROM integrity_checkpoints)")
    assert kinds(check()) == {"checkpoint_chain", "checkpoints_missing"}


def test_a_deletion_disguised_as_erasure_is_detected(sealed, check, conn):
    victim = sealed[1][4]
    conn.execute("SET session_replication_role = replica")  # a superuser skips the deferred record check
    row = conn.execute(sql.SQL("DELETE FROM audit_events WHERE event_id = %s RETURNING batch_seq, {}").format(
        sealing.leaf_sql()), (victim.event_id,)).fetchone()
    conn.execute("INSERT INTO integrity_tombstones VALUES (%s, %s, %s, %s, %s, 'dpo', now())",
                 (victim.event_id, victim.timestamp, row[0], row[1], uuid.uuid4()))
    report = check()
    assert kinds(report) == {"tombstone_forged"} and str(victim.event_id) in report.first.message


# -- lawful removal of whole ranges ------------------------------------------------------------------------

def test_recorded_retention_is_lawful_and_unrecorded_removal_is_not(pool, make_event, check, conn):
    old = [make_event(timestamp=T0 - timedelta(days=100, minutes=i)) for i in range(3)]
    EventWriter(pool).write(old)
    EventWriter(pool).write([make_event()])
    conn.execute("DELETE FROM audit_events WHERE \"timestamp\" < %s", (T0 - timedelta(days=90),))
    assert kinds(check()) == {"rows_missing"}
    lo, hi = T0 - timedelta(days=101), T0 - timedelta(days=90)
    with psycopg.connect(conn.info.dsn) as tx:  # retention removes archived rows: archived first, then expired
        removals.record_removal(tx, lo, hi, reason="archive", rows=3, removed_by="archiver", archive_ref="c",
                                 record=self_audit.record("events_archived", "archiver", now=T0, resource_id="c"))
        removals.record_removal(tx, lo, hi, reason="retention", rows=3, removed_by="retention-job", archive_ref="f",
                                 record=self_audit.record("events_expired", "retention", now=T0, resource_id="f"))
    report = check(cold=lambda a, b: [])
    assert report.ok and report.expired_batches == 1, report.problems


def test_archived_ranges_are_verified_from_the_cold_rows(pool, make_event, check, conn):
    old = [make_event(timestamp=T0 - timedelta(days=100, minutes=i), metadata={"v": 1.50}) for i in range(3)]
    EventWriter(pool).write(old)
    lo, hi = T0 - timedelta(days=101), T0 - timedelta(days=90)
    # What the archiver would write to Parquet, per the contract, before dropping the chunk.
    cold = conn.execute(
        'SELECT event_id::text, "timestamp", event_type, user_id, outcome, source, source_ip::text, '
        "source_country, source_asn, user_agent, resource_id, metadata::text, received_at, batch_seq "
        'FROM audit_events WHERE "timestamp" >= %s AND "timestamp" < %s', (lo, hi)).fetchall()
    names = ["event_id", "timestamp", "event_type", "user_id", "outcome", "source", "source_ip", "source_country",
             "source_asn", "user_agent", "resource_id", "metadata", "received_at", "batch_seq"]
    columns = {n: [r[i] for r in cold] for i, n in enumerate(names)}
    for n in ("timestamp", "received_at"):
        columns[n] = pa.array(columns[n], pa.timestamp("us", tz="UTC"))
    table = pa.table(columns)
    conn.execute("DELETE FROM audit_events WHERE \"timestamp\" < %s", (hi,))
    with psycopg.connect(conn.info.dsn) as tx:
        removals.record_removal(tx, lo, hi, reason="archive", rows=3, removed_by="archiver",
                                 archive_ref="year=2024/month=01", record=self_audit.record(
                                     "events_archived", "archiver", now=T0, resource_id="year=2024/month=01"))
    unread = check()
    assert unread.ok and unread.unchecked_batches == 1 and "no cold-tier reader" in " ".join(unread.notes)
    good = check(cold=lambda a, b: [table])
    assert good.ok, good.problems
    tampered = table.set_column(3, "user_id", pa.array(["mallory"] * 3))
    assert kinds(check(cold=lambda a, b: [tampered])) == {"content_changed"}
    assert kinds(check(cold=lambda a, b: [table.slice(0, 2)])) == {"rows_missing"}


# -- rows that existed before migration 0005 ---------------------------------------------------------------

def test_rows_from_before_the_migration_are_adopted_and_verifiable(empty_db_url, make_event, key, old_writes):
    from storage.timescale import db

    with psycopg.connect(empty_db_url, autocommit=True) as c:
        migrate_up_to(c, 4)
        events = [make_event(timestamp=T0 - timedelta(hours=9 * i), metadata={"x": -0.0, "n": i}) for i in range(8)]
        with old_writes(), c.cursor() as cur:
            insert_rows(cur, [row_of(e) for e in events])
        migrations.migrate(c)
        # one legacy batch per day of event time: the events span four days
        assert c.execute("SELECT count(*) FROM integrity_batches WHERE kind = 'legacy'").fetchone()[0] == 4
    legacy_pool = db.open_pool(empty_db_url, min_size=1, max_size=2)
    try:
        trusted = [checkpoints.public_bytes(key)]
        EventWriter(legacy_pool).write([make_event()])
        report = verify.verify(legacy_pool, trusted_keys=trusted)
        assert report.ok and report.events == 9, report.problems

        def audit(erased):
            return make_event(event_type="event_erased", user_id="dpo")

        erasure.erase_event(legacy_pool, events[2].event_id, audit)
        report = verify.verify(legacy_pool, trusted_keys=trusted)
        assert report.ok and report.erased == 1, report.problems
        with psycopg.connect(empty_db_url, autocommit=True) as c:
            c.execute("UPDATE audit_events SET resource_id = 'x' WHERE event_id = %s", (events[5].event_id,))
        assert kinds(verify.verify(legacy_pool, trusted_keys=trusted)) == {"content_changed"}
    finally:
        legacy_pool.close()


# -- checkpoints and keys -----------------------------------------------------------------------------------

def test_checkpoints_are_idempotent_and_chained(pool, make_event, key):
    assert sealing.write_checkpoint(pool, key, now=T0) is not None  # the empty chain, once
    assert sealing.write_checkpoint(pool, key, now=T0) is None
    EventWriter(pool).write([make_event(), make_event()])
    sealing.checkpoint_job(pool, key=key, now=T0 + timedelta(minutes=5))
    sealing.checkpoint_job(pool, key=key, now=T0 + timedelta(minutes=10))
    first, second = sealing.list_checkpoints(pool)
    assert (second.chain_pos, second.events) == (1, 2)
    assert second.previous == first.digest
    assert checkpoints.check(second, frozenset([checkpoints.public_bytes(key)])) is None
    assert checkpoints.from_json_line(second.to_json_line()) == second


def test_the_key_file_is_created_private_once_and_refused_when_readable_by_others(tmp_path):
    path = tmp_path / "integrity" / "signing.key"
    key, created = checkpoints.load_or_create(path)
    assert created and path.stat().st_mode & 0o777 == 0o600
    again, created_again = checkpoints.load_or_create(path)
    assert not created_again and checkpoints.public_bytes(again) == checkpoints.public_bytes(key)
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        checkpoints.load(path)
    with pytest.raises(SigningKeyError, match="keygen"):
        checkpoints.from_base64("not a key")
    with pytest.raises(SigningKeyError, match="export-checkpoints"):
        checkpoints.from_json_line(b'{"payload": 1}')


# -- the Parquet cold tier ---------------------------------------------------------------------------------

@pytest.fixture
def cold(pool, store, key):
    """Sealed events on five old days archived to Parquet (chunks dropped), a checkpoint, and a reader.

    Once on local disk and once on a real S3 server (the ``store`` fixture)."""
    import random

    from storage.timescale import archive
    from tests.storage.cold_data import NOW, OLD_DAYS, audit, event

    rng = random.Random(3)
    events = [event((NOW - timedelta(days=d)).replace(hour=1) + timedelta(minutes=7 * i), rng=rng)
              for d in OLD_DAYS for i in range(8)] + [event(NOW - timedelta(hours=2), rng=rng)]
    for i in range(0, len(events), 10):
        EventWriter(pool).write(events[i:i + 10])
    result = archive.run(pool, store, now=NOW, hot_days=90, audit=audit())
    assert result.rows == 8 * len(OLD_DAYS)
    sealing.write_checkpoint(pool, key, now=NOW)
    return store, verify.cold_reader(pool, store), archive.list_files(pool, states=("complete",))


def _replace_parquet(store, path: str, table: pa.Table) -> bytes:
    """Rewrite an archive file behind the archiver's back; returns the new bytes."""
    from tests.storage.cold_data import overwrite

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    overwrite(store, path, data)
    return data


def test_archived_events_verify_from_parquet_and_their_files_are_checked(cold, check, conn):
    store, reader, files = cold
    report = check(cold=reader)
    assert report.ok, report.problems
    assert report.events == conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] + 8 * 5
    assert conn.execute("SELECT count(*) FROM integrity_removals WHERE reason = 'archive'").fetchone()[0] == 5


def test_editing_a_parquet_file_is_detected(cold, check):
    store, reader, files = cold
    table = store.read(files[1].path)
    edited = table.set_column(table.schema.get_field_index("user_id"), "user_id",
                              pa.array(["mallory"] * table.num_rows))
    _replace_parquet(store, files[1].path, edited)
    report = check(cold=reader)
    assert report.first.kind == "archive_file" and "SHA-256" in report.first.message
    assert files[1].path in report.first.message


def test_editing_a_parquet_file_and_its_catalogue_row_is_still_detected(cold, check, conn):
    store, reader, files = cold
    table = store.read(files[1].path)
    data = _replace_parquet(store, files[1].path, table.set_column(
        table.schema.get_field_index("outcome"), "outcome", pa.array(["success"] * table.num_rows)))
    conn.execute("UPDATE log_archives SET sha256 = %s, bytes = %s WHERE archive_id = %s",
                 (hashlib.sha256(data).hexdigest(), len(data), files[1].archive_id))
    assert "content_changed" in kinds(check(cold=reader))


def test_deleting_a_parquet_file_is_detected(cold, check):
    store, reader, files = cold
    store.fs.delete_file(store.full_path(files[2].path))
    report = check(cold=reader)
    assert "archive_file" in kinds(report) and "missing" in report.first.message
    assert "archive_incomplete" in kinds(report)


def test_dropping_a_catalogue_row_is_detected(cold, check, conn):
    store, reader, files = cold
    conn.execute("DELETE FROM log_archives WHERE archive_id = %s", (files[3].archive_id,))
    report = check(cold=reader)
    assert {"archive_incomplete", "rows_missing"} <= kinds(report)
    assert "log_archives row was removed" in " ".join(p.message for p in report.problems)


@pytest.mark.parametrize("keep_config_changes", [False, True])
def test_cold_retention_is_lawful_whether_files_are_deleted_or_rewritten(cold, check, pool, keep_config_changes):
    from storage.timescale import catalog, retention
    from tests.storage.cold_data import NOW, audit

    store, reader, files = cold
    if keep_config_changes:  # some event types outlive the others: files are rewritten, not deleted
        catalog.put_setting(pool, "retention", {"hot_days": 90, "cold_years": 7,
                                                "cold_years_by_type": {"config_change": 10}}, "tests")
    later = (NOW - timedelta(days=97)).replace(year=NOW.year + 7)
    result = retention.apply(pool, store, now=later, audit=audit())
    assert (len(result.rewritten), len(result.deleted)) == ((3, 0) if keep_config_changes else (0, 3))
    report = check(cold=reader)
    assert report.ok, report.problems
    assert report.expired_batches >= 1
