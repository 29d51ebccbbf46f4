"""Seal in the write transaction, link the chain after (issue 16, migration 0021).

Writers no longer share a lock: each seals its own batch, and a linker appends sealed batches to the chain
after the commit. These tests hold what that must keep: writers do not wait on each other, every sealed
batch ends up linked (by the writer or, before it signs, by the checkpoint job), and a seal that was altered,
deleted, or left unlinked is reported by name. The attacker is the test's superuser connection.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import psycopg

from storage.integrity import chain
from storage.timescale import sealing, verify, verify_seals
from storage.timescale.writer import _COPY_DIRECT_SEALED, _SEALED_TYPES, EventWriter, copy_rows, row_of
from tests.storage.conftest import T0, migrate_up_to


def kinds(report: verify.VerifyReport) -> set[str]:
    return {p.kind for p in report.problems}


def _seal_open(conn: psycopg.Connection, events) -> int:
    """What the writer does inside its transaction (COPY, then seal), left uncommitted; returns the batch_seq."""
    with conn.cursor() as cur:
        batch, leaves = sealing.prepare_batch(cur, events, [orjson.dumps(e.metadata).decode() for e in events])
        copy_rows(cur, _COPY_DIRECT_SEALED, [(*row_of(e), batch) for e in events], _SEALED_TYPES)
        sealing.seal_prepared(cur, batch, events, leaves)
    return batch


def _positions(conn) -> dict[int, int]:
    return dict(conn.execute("SELECT batch_seq, chain_pos FROM integrity_batches").fetchall())


def test_two_writers_seal_concurrently_without_waiting_and_both_are_linked(pool, db_url, make_event, check, conn):
    """Writer A seals first (the older batch_seq) and keeps its transaction open; writer B commits meanwhile.
    Before 0021, A's seal held the chain's head until A committed, so B waited for it."""
    EventWriter(pool).write([make_event()])  # the chunk exists: creating it would make B wait on A (TimescaleDB)
    a_events = [make_event(user_id=f"a{i}") for i in range(3)]
    b_events = [make_event(user_id=f"b{i}") for i in range(4)]
    with psycopg.connect(db_url) as a:
        a_seq = _seal_open(a, a_events)
        done = threading.Event()
        result: list = []

        def write_b() -> None:
            result.append(EventWriter(pool).write(b_events))
            done.set()

        thread = threading.Thread(target=write_b, daemon=True)
        thread.start()
        finished = done.wait(60)  # a liveness check: under the old design B blocks until A commits
        a.commit()
        thread.join(60)
        assert finished, "writer B waited for writer A's open transaction"
        assert result == [[True] * 4]
        b_seq = conn.execute("SELECT batch_seq FROM audit_events WHERE event_id = %s",
                             (b_events[0].event_id,)).fetchone()[0]
        assert a_seq < b_seq
        assert a_seq not in _positions(conn)  # committed after B linked: not linked yet
        sealing.link_committed(a)  # what A's writer does after its commit
    positions = _positions(conn)
    assert positions[b_seq] < positions[a_seq]  # linked in commit order; seq order only among what is committed
    report = check()
    assert report.ok, report.problems
    assert report.events == 8 and report.chain_length == 3


def test_the_checkpoint_links_what_no_writer_linked_before_it_signs(pool, db_url, make_event, key, check, conn):
    EventWriter(pool).write([make_event()])
    with psycopg.connect(db_url) as a:
        seq = _seal_open(a, [make_event(), make_event()])
        a.commit()  # ... and the writer died before linking
    cp = sealing.write_checkpoint(pool, key, now=T0)
    assert cp is not None and cp.chain_pos == 2 and cp.events == 3
    assert _positions(conn)[seq] == 2
    report = check()
    assert report.ok and report.checkpoints == 1, report.problems


def test_a_batch_never_linked_is_reported_after_the_grace_period(pool, db_url, make_event, check, conn):
    EventWriter(pool).write([make_event()])
    events = [make_event(), make_event()]
    with psycopg.connect(db_url) as a:
        seq = _seal_open(a, events)
        a.commit()
    sealed_at = conn.execute("SELECT sealed_at FROM integrity_seals WHERE batch_seq = %s", (seq,)).fetchone()[0]
    early = check(now=sealed_at + timedelta(minutes=1))
    assert early.ok, early.problems  # its rows are neither forged nor of an unknown batch
    assert any("sealed but not linked" in n for n in early.notes)
    late = check(now=sealed_at + verify_seals.LINK_GRACE + timedelta(minutes=1))
    assert kinds(late) == {"batch_unlinked"}, late.problems
    assert f"batch_seq {seq} (2 events" in late.problems[0].message
    # twice the checkpoint interval is allowed when that is longer
    assert check(now=sealed_at + timedelta(hours=1), checkpoint_every=timedelta(hours=1)).ok


def test_a_seal_altered_before_linking_is_caught(pool, db_url, make_event, check, conn):
    EventWriter(pool).write([make_event()])
    events = [make_event(), make_event()]
    with psycopg.connect(db_url) as a:
        seq = _seal_open(a, events)
        a.commit()
    conn.execute("UPDATE integrity_seals SET root = %s WHERE batch_seq = %s", (chain.ZERO_HASH, seq))
    with psycopg.connect(db_url) as c:
        sealing.link_committed(c)
    report = check()
    assert kinds(report) == {"content_changed"}, report.problems
    assert report.problems[0].chain_pos == _positions(conn)[seq]


def test_a_seal_altered_or_deleted_after_linking_is_caught(pool, make_event, check, conn):
    for _ in range(3):
        EventWriter(pool).write([make_event(), make_event()])
    seqs = sorted(_positions(conn), key=_positions(conn).get)
    assert conn.execute("SELECT count(*) FROM integrity_seals WHERE linked_pos IS NULL").fetchone()[0] == 0
    conn.execute("UPDATE integrity_seals SET root = %s WHERE batch_seq = %s", (chain.ZERO_HASH, seqs[0]))
    conn.execute("DELETE FROM integrity_seals WHERE batch_seq = %s", (seqs[1],))
    report = check()
    assert kinds(report) == {"seal_altered", "seal_missing"}, report.problems
    altered = next(p for p in report.problems if p.kind == "seal_altered")
    assert altered.chain_pos == 1 and "(root)" in altered.message


def test_a_link_deleted_with_the_head_rewound_is_caught_by_its_seal(pool, make_event, check, conn):
    """The newest links, no checkpoint over them: the chain alone cannot tell a cut-off tail from a short one."""
    for _ in range(3):
        EventWriter(pool).write([make_event()])
    last = conn.execute("SELECT batch_seq FROM integrity_batches WHERE chain_pos = 3").fetchone()[0]
    conn.execute("DELETE FROM audit_events WHERE batch_seq = %s", (last,))
    conn.execute("DELETE FROM integrity_batches WHERE chain_pos = 3")
    conn.execute("UPDATE integrity_head SET chain_pos = 2, events = 2, chain_hash = (SELECT chain_hash FROM "
                 "integrity_batches WHERE chain_pos = 2)")
    report = check()
    assert kinds(report) == {"link_missing"}, report.problems
    assert report.problems[0].chain_pos == 3 and "linked at chain position 3" in report.problems[0].message


def test_rows_claiming_a_batch_with_no_seal_are_forged(pool, make_event, check, conn):
    EventWriter(pool).write([make_event()])
    forged = make_event()
    conn.execute("INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id, batch_seq) "
                 "VALUES (%s, %s, 'user_login', 'mallory', nextval('integrity_batch_seq'))",
                 (forged.event_id, forged.timestamp))
    report = check()
    assert kinds(report) == {"unknown_batch"}, report.problems
    assert "nor sealed and waiting" in report.problems[0].message


def test_a_rolled_back_seal_leaves_a_gap_in_batch_seq_that_nothing_waits_for(pool, db_url, make_event, check, conn):
    with psycopg.connect(db_url) as a:
        gap = _seal_open(a, [make_event()])
        a.rollback()
    EventWriter(pool).write([make_event()])
    assert gap not in _positions(conn) and len(_positions(conn)) == 1
    assert check().ok


def test_a_store_sealed_before_0021_keeps_verifying(empty_db_url, make_event, key, old_writes):
    from storage.integrity import checkpoints
    from storage.timescale import db, migrations
    from storage.timescale.writer import insert_rows_sealed

    with psycopg.connect(empty_db_url, autocommit=True) as c:
        migrate_up_to(c, 20)
        for i in range(3):  # sealed and linked at once, as every writer did then
            with old_writes(), c.transaction():
                insert_rows_sealed(c, [row_of(make_event(user_id=f"old{i}{j}")) for j in range(2)])
        migrations.migrate(c)
        assert c.execute("SELECT array_agg(linked_pos ORDER BY linked_pos) FROM integrity_seals").fetchone()[0] == [
            1, 2, 3]
    old = db.open_pool(empty_db_url, min_size=1, max_size=2)
    try:
        EventWriter(old).write([make_event(), make_event()])
        assert sealing.write_checkpoint(old, key, now=T0).chain_pos == 4
        report = verify.verify(old, trusted_keys=[checkpoints.public_bytes(key)])
        assert report.ok and report.events == 8 and report.chain_length == 4, report.problems
    finally:
        old.close()


def test_the_batch_leaf_encoding_is_byte_identical_to_the_reference():
    """``chain.leaves_of`` (the writer's columnar hot path) against ``chain.leaf_of``, on values that repeat, are
    missing, non-ASCII, empty, and timestamps of other zones and the same instant."""
    import random
    import uuid
    from datetime import UTC, datetime, timezone

    rng = random.Random(16)
    zone = timezone(timedelta(hours=-7))
    texts = [None, "", "a", "ü→日本", "x" * 300, "user_login", "10.0.0.1/32", "::1/128", '{"k": [1, 2.5, null]}']
    rows = []
    for i in range(500):
        at = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**12))
        rows.append((uuid.UUID(int=rng.getrandbits(128)), at if i % 3 else at.astimezone(zone),
                     tuple(rng.choice(texts) for _ in chain.TEXT_FIELDS),
                     datetime(2024, 5, 2, tzinfo=UTC) if i % 2 else at))
    expected = [chain.leaf_of(*r) for r in rows]
    columns = [[r[2][k] for r in rows] for k in range(len(chain.TEXT_FIELDS))]
    got = chain.leaves_of([r[0] for r in rows], [r[1] for r in rows], columns, [r[3] for r in rows])
    assert got == expected and len(set(got)) == len(rows)


_METADATA = [
    {}, {"b": 1, "a": 2, "aa": [], "é": {}, "z": None}, {"k": "line\nbreak\ttab \"quoted\" back\\slash \x01\x1f\x7f"},
    {"emoji": "😀 \u2028 日本", "ключ": "значение", "nested": {"list": [1, -2, True, False, None, "x", [[]]]}},
    {"big": 2**62, "neg": -(2**62), "zero": 0}, {"bbb": 1, "aaa": 2, "ab": 3, "b": 4, "Ab": 5, "": 6},
    {"minus_zero": -0.0, "exp": 1e-7, "int_float": 3.0, "mixed": [1, 2.25, "s"]},
]


def test_the_writers_leaves_for_awkward_metadata_and_addresses_are_the_ones_verify_recomputes(pool, make_event, check):
    """The fast path hashes in Python from the server's rendering of jsonb and inet; verify hashes the stored
    rows in SQL. Key order, escapes, numbers and address forms must come out the same both ways."""
    ips = ["10.1.2.3", "255.255.255.255", "0.0.0.0", "2001:db8::1", "::ffff:1.2.3.4", "1:0:2:3:4:5:6:7", None]
    events = [make_event(metadata=m, source_ip=ip) for m in _METADATA for ip in ips]
    assert EventWriter(pool).write(events) == [True] * len(events)
    report = check()
    assert report.ok and report.events == len(events), report.problems
