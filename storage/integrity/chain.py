"""The canonical encoding of a stored event, its leaf hash, batch Merkle roots and chain links.

The encoding is defined over what PostgreSQL STORES (see ``LEAF_CONTRACT``), never over Python
values: a jsonb or inet round trip rewrites numbers, key order and addresses, so hashing what a
client sent would raise false alarms. storage/timescale/sealing.py builds the same bytes in SQL
(``leaf_sql``); the tests hold the two equal.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

ENCODING_VERSION = 1
ZERO_HASH = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# timestamptz_send() counts microseconds from 2000-01-01 UTC; the leaf uses that binary form (cheap in SQL).
PG_EPOCH_MICROS = 946_684_800_000_000
_CHAIN_TAG = b"AWCHAIN1"

# How each audit_events column reaches the encoding, as a Parquet (or any other) copy must hold it.
LEAF_CONTRACT: dict[str, str] = {
    "event_id": "uuid: lowercase text or uuid.UUID",
    "timestamp": "timestamptz: microseconds since the Unix epoch (int64) or an aware datetime",
    "event_type": "text",
    "user_id": "text",
    "outcome": "text",
    "source": "text or null",
    "source_ip": "inet: PostgreSQL's source_ip::text (or host(source_ip)) or null",
    "source_country": "text or null",
    "source_asn": "text or null",
    "user_agent": "text or null",
    "resource_id": "text or null",
    "metadata": "jsonb: exactly PostgreSQL's metadata::text",
    "received_at": "timestamptz: as timestamp",
}
TEXT_FIELDS: tuple[str, ...] = (
    "event_type", "user_id", "outcome", "source", "source_ip", "source_country", "source_asn",
    "user_agent", "resource_id", "metadata",
)


def micros(value: int | datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (timestamptz is UTC)")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def canonical_ip(text: str | None) -> str | None:
    """host/masklen, as ``host(source_ip) || '/' || masklen(source_ip)`` prints it."""
    if text is None:
        return None
    if "/" in text:
        return text
    return text + ("/128" if ":" in text else "/32")


_PACK_I = struct.Struct(">i").pack
_PACK_Q = struct.Struct(">q").pack
_PREFIX = b"\x00" + bytes([ENCODING_VERSION])  # the RFC 6962 leaf tag, then the encoding version
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def _pg_micros(value: int | datetime) -> int:
    """timestamptz_send's integer: microseconds since 2000-01-01 UTC (timedelta floor division is exact)."""
    if isinstance(value, int):
        return value - PG_EPOCH_MICROS
    return (value - _PG_EPOCH) // _ONE_US


def leaf_of(event_id: uuid.UUID, timestamp: int | datetime, texts: Sequence[str | None],
            received_at: int | datetime) -> bytes:
    """The leaf hash from the stored values; ``texts`` in ``TEXT_FIELDS`` order, source_ip already as
    ``canonical_ip`` gives it and metadata as PostgreSQL's metadata::text (the hot path of the writer)."""
    parts = [_PREFIX, event_id.bytes, _PACK_Q(_pg_micros(timestamp))]
    for value in texts:
        if value is None:
            parts.append(b"\x00")
        else:
            data = value.encode()
            parts.append(b"\x01" + _PACK_I(len(data)) + data)
    parts.append(_PACK_Q(_pg_micros(received_at)))
    return hashlib.sha256(b"".join(parts)).digest()


def _encode_text(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    data = value.encode()
    return b"\x01" + _PACK_I(len(data)) + data


def _encode_column(column: Sequence[str | None], repeats: bool) -> list[bytes]:
    """One text field of a batch, encoded as ``leaf_of`` does. When its values repeat (types, users, sources,
    addresses, agents), each distinct value is encoded once and the column is mapped in C."""
    if repeats:
        distinct = set(column)
        if 2 * len(distinct) <= len(column):
            table = {v: _encode_text(v) for v in distinct}
            return list(map(table.__getitem__, column))
    return [b"\x00" if v is None else b"\x01" + _PACK_I(len(d := v.encode())) + d for v in column]


# The fields whose values are mostly unique per event: a table of distinct values would not pay.
_UNIQUE_FIELDS = frozenset({"resource_id", "metadata"})


def leaves_of(event_ids: Sequence[uuid.UUID], timestamps: Sequence[datetime], columns: Sequence[Sequence[str | None]],
              received_at: Sequence[datetime]) -> list[bytes]:
    """``leaf_of`` for a batch given as columns (``columns`` in ``TEXT_FIELDS`` order, as ``leaf_of``'s texts),
    byte for byte: each field is encoded column by column, then each row is one join and one hash (the
    writer's hot path, with a fraction of ``leaf_of``'s Python calls per row)."""
    epoch, one = _PG_EPOCH, _ONE_US
    parts: list[list[bytes]] = [[_PREFIX + u.bytes for u in event_ids], [_PACK_Q((t - epoch) // one) for t in timestamps]]
    for name, column in zip(TEXT_FIELDS, columns, strict=True):
        parts.append(_encode_column(column, name not in _UNIQUE_FIELDS))
    stamps = {t: _PACK_Q((t - epoch) // one) for t in set(received_at)}  # mostly one per batch
    parts.append(list(map(stamps.__getitem__, received_at)))
    sha = hashlib.sha256
    join = b"".join
    return [sha(join(row)).digest() for row in zip(*parts, strict=True)]


def leaf(row: Mapping[str, object]) -> bytes:
    """RFC 6962 leaf hash of one stored row, given as ``LEAF_CONTRACT`` describes."""
    event_id = row["event_id"]
    uid = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(str(event_id))
    texts = [canonical_ip(row.get(n)) if n == "source_ip" else row.get(n) for n in TEXT_FIELDS]  # type: ignore[arg-type]
    return leaf_of(uid, row["timestamp"], texts, row["received_at"])  # type: ignore[arg-type]


def leaves_from_arrow(table) -> list[bytes]:
    """Leaf hashes of the rows of a pyarrow Table (or RecordBatch) laid out as ``LEAF_CONTRACT`` says."""
    import pyarrow as pa

    columns = {}
    for name in ("timestamp", "received_at"):
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        columns[name] = col.to_pylist()
    for name in ("event_id", *TEXT_FIELDS):
        columns[name] = table.column(name).to_pylist()
    names = list(columns)
    return [leaf(dict(zip(names, values, strict=True))) for values in zip(*columns.values(), strict=True)]


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash over the leaves in bytewise order (the set of rows, not their order)."""
    level = sorted(leaves)
    if not level:
        return hashlib.sha256(b"").digest()
    sha = hashlib.sha256
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def chain_link(prev_hash: bytes, chain_pos: int, batch_seq: int, kind: str, rows: int, root: bytes,
               lo: int | datetime, hi: int | datetime, sealed_at: int | datetime) -> bytes:
    """The chain hash of one batch, as integrity_append() computes it."""
    kind_bytes = kind.encode()
    return hashlib.sha256(b"".join((
        _CHAIN_TAG, prev_hash, struct.pack(">qq", chain_pos, batch_seq),
        struct.pack(">i", len(kind_bytes)), kind_bytes, struct.pack(">q", rows), root,
        struct.pack(">qqq", micros(lo), micros(hi), micros(sealed_at)),
    ))).digest()


_REMOVAL_TAG = b"AWRMVL01"


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def removal_link(prev_hash: bytes, chain_pos: int, lo: int | datetime, hi: int | datetime, reason: str, rows: int,
                 archive_ref: str | None, removed_by: str, removed_at: int | datetime,
                 audit_event_id: uuid.UUID | None, audit_event_at: int | datetime | None) -> bytes:
    """The chain hash of one removal record, as integrity_removal_link() computes it (migration 0011)."""
    return hashlib.sha256(b"".join((
        _REMOVAL_TAG, prev_hash, struct.pack(">qqq", chain_pos, micros(lo), micros(hi)), _text(reason),
        struct.pack(">q", rows), b"\x00" if archive_ref is None else b"\x01" + _text(archive_ref),
        _text(removed_by), struct.pack(">q", micros(removed_at)),
        b"\x00" if audit_event_id is None else b"\x01" + audit_event_id.bytes,
        b"\x00" if audit_event_at is None else b"\x01" + struct.pack(">q", micros(audit_event_at)),
    ))).digest()
