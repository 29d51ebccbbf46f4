"""verify's columnar reader: the binary COPY records it parses, and the rows it files in bulk exactly
where the per-row checks (``_Verifier.add_row``) would."""

from __future__ import annotations

import bisect
import random
import struct
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from storage.timescale import verify_rows


def _copy(rows: list[tuple]) -> bytes:
    out = [b"PGCOPY\n\xff\r\n\x00", struct.pack(">ii", 0, 0)]
    for unsealed, seq, at, eid, leaf in rows:
        out.append(struct.pack(">h", 5))
        out.append(struct.pack(">iB", 1, unsealed))
        out.append(struct.pack(">iq", 8, seq))
        out.append(struct.pack(">iq", 8, at))
        out.append(struct.pack(">i", 16) + eid if eid is not None else struct.pack(">i", -1))
        out.append(struct.pack(">i", 32) + leaf)
    out.append(struct.pack(">h", -1))
    return b"".join(out)


def test_parse_reads_fixed_width_records_and_gives_them_back_as_the_row_reader_did():
    eid = uuid.uuid4()
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    leaf = bytes(range(32))
    rows = verify_rows.parse(_copy([(0, 7, verify_rows.pg_micros(at), eid.bytes, leaf),
                                    (1, 0, verify_rows.pg_micros(at) + 1, eid.bytes, b"\x00" * 32)]))
    assert rows is not None and len(rows) == 2
    assert rows.row(0) == (7, eid, at, leaf)
    assert rows.row(1) == (None, eid, at + timedelta(microseconds=1), b"\x00" * 32)  # trailing zeros kept
    assert rows.leaves(np.array([1, 0])) == [b"\x00" * 32, leaf]


def test_parse_gives_up_on_a_null_so_that_the_per_row_reader_reports_it():
    good = (0, 7, 0, uuid.uuid4().bytes, bytes(32))
    assert verify_rows.parse(_copy([good, (0, 7, 0, None, bytes(32))])) is None
    assert verify_rows.parse(_copy([])) is not None
    assert verify_rows.parse(b"not a copy stream") is None


def test_classify_files_each_row_where_the_per_row_checks_would():
    rng = random.Random(17)
    # scope batches by seq (some seqs not in scope), legacy batches by time without overlap
    seqs = np.array([2, 3, 5, 8], dtype=np.int64)
    lo = np.array([100, 200, 300, 400], dtype=np.int64)
    hi = np.array([150, 260, 300, 480], dtype=np.int64)
    legacy_lo = np.array([0, 50, 600], dtype=np.int64)
    legacy_hi = np.array([40, 90, 700], dtype=np.int64)
    n = 5000
    unsealed = np.array([rng.random() < 0.4 for _ in range(n)])
    seq = np.array([0 if u else rng.choice([1, 2, 3, 4, 5, 8, 9]) for u in unsealed], dtype=np.int64)
    at = np.array([rng.randrange(-10, 720) for _ in range(n)], dtype=np.int64)
    empty = np.zeros(n, dtype="V16")
    rows = verify_rows.Rows(unsealed=unsealed, seq=seq, at=at, event_id=empty, leaf=np.zeros(n, dtype="V32"))
    got = verify_rows.classify(rows, seqs, lo, hi, legacy_lo, legacy_hi)

    expected_fast, expected_batch, expected_slow, expected_unsealed = [], [], [], []
    for k in range(n):
        if unsealed[k]:
            i = bisect.bisect_right(list(legacy_lo), at[k]) - 1
            if i >= 0 and legacy_hi[i] >= at[k]:
                expected_fast.append(k)
                expected_batch.append(len(seqs) + i)
            else:
                expected_unsealed.append(k)
        elif seq[k] in seqs and lo[list(seqs).index(seq[k])] <= at[k] <= hi[list(seqs).index(seq[k])]:
            expected_fast.append(k)
            expected_batch.append(list(seqs).index(seq[k]))
        else:
            expected_slow.append(k)
    assert got.fast.tolist() == expected_fast
    assert got.batch.tolist() == expected_batch
    assert got.slow.tolist() == expected_slow
    assert got.unsealed.tolist() == expected_unsealed
    assert expected_fast and expected_slow and expected_unsealed  # every path was exercised


def test_classify_with_no_batches_in_scope():
    rows = verify_rows.Rows(unsealed=np.array([True, False]), seq=np.array([0, 4]), at=np.array([1, 2]),
                            event_id=np.zeros(2, dtype="V16"), leaf=np.zeros(2, dtype="V32"))
    none = np.array([], dtype=np.int64)
    got = verify_rows.classify(rows, none, none, none, none, none)
    assert got.fast.tolist() == [] and got.slow.tolist() == [1] and got.unsealed.tolist() == [0]
