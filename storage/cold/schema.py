"""How audit_events columns are encoded in Parquet, so stored values round-trip exactly.

The contract (shared with the integrity verifier): every column of audit_events as it is at export
time, in table order; timestamptz as timestamp[us, UTC]; uuid as its lower-case canonical text;
inet as PostgreSQL's ``host()``; jsonb as PostgreSQL's own ``::text`` output; text as string; bigint
as int64. Any other type is carried as PostgreSQL's text output, so a new column never breaks export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import pyarrow as pa

FORMAT_VERSION = "1"
METADATA_KEY = b"auditwatch.archive"

_ARROW = {
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "boolean": pa.bool_(),
    "double precision": pa.float64(),
    "real": pa.float32(),
    "bytea": pa.binary(),
}


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str  # format_type() of the column, e.g. 'timestamp with time zone'

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW.get(self.pg_type, pa.string())

    @property
    def as_epoch_micros(self) -> bool:
        """Timestamps travel from the database as integer microseconds (exact, and cheap to convert)."""
        return self.pg_type == "timestamp with time zone"


def arrow_schema(columns: Sequence[Column], extra: dict[str, object] | None = None) -> pa.Schema:
    """The file schema, with the column list and PostgreSQL types in its key-value metadata."""
    meta = {"version": FORMAT_VERSION, "columns": [[c.name, c.pg_type] for c in columns], **(extra or {})}
    return pa.schema([pa.field(c.name, c.arrow_type) for c in columns],
                     metadata={METADATA_KEY: orjson.dumps(meta)})


def record_batch(columns: Sequence[Column], schema: pa.Schema, rows: Sequence[tuple]) -> pa.RecordBatch:
    """One Arrow batch from database rows (as selected by the archive's export statement)."""
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = []
    for column, data in zip(columns, values, strict=True):
        if column.as_epoch_micros:
            arrays.append(pa.array(data, pa.int64()).cast(column.arrow_type))
        else:
            arrays.append(pa.array(data, column.arrow_type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
