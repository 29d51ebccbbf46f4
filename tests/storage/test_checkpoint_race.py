"""The signer and concurrent writes (found by tests/faults): a batch sealed between reading the chain head
and walking the links since the last checkpoint must not make the worker refuse to sign a valid chain."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.timescale import sealing
from storage.timescale.writer import EventWriter


def test_a_batch_sealed_after_the_head_was_read_is_left_for_the_next_checkpoint(pool, make_event, key):
    writer = EventWriter(pool)
    writer.write([make_event()])
    first = sealing.write_checkpoint(pool, key, now=datetime.now(UTC))
    writer.write([make_event()])
    with pool.connection() as conn:
        head_pos, head_hash, _ = sealing.head(conn)
    writer.write([make_event(), make_event()])  # another writer commits while the signer is mid-walk
    with pool.connection() as conn:
        sealing._check_batches_continue(conn, first, head_pos, bytes(head_hash))  # no IntegrityError
    # The next checkpoint covers everything, and still continues the first.
    second = sealing.write_checkpoint(pool, key, now=datetime.now(UTC))
    assert second is not None and second.chain_pos == head_pos + 1 > first.chain_pos
