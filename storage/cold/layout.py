"""How rows sit inside an archive file: their order and each column's Parquet encoding.

The layout changes bytes and read speed, never values: the columns, their Arrow types and the
text forms of storage.cold.schema stay the same, and readers sort what they read. ``bench/cold.py``
measures both layouts below on the same data; the figures in bench/README.md justify the default.

- Rows are clustered by (event_type, user_id), then time: one user's events of one kind sit
  together, so the columns that follow the user (address, agent, country, metadata shape) repeat
  and compress, and row-group statistics on user_id and event_type prune investigations.
- Timestamps and integers are DELTA_BINARY_PACKED: a dictionary of nearly unique values is pure
  overhead, while increasing times within a cluster delta to a few bytes.
- uuid text is DELTA_LENGTH_BYTE_ARRAY: every value is unique and 36 bytes long, so the lengths
  vanish and zstd sees one stream of hex digits.
- Everything else is dictionary-encoded (pyarrow falls back to plain when a dictionary outgrows
  its page), then zstd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from storage.cold.schema import METADATA_KEY


@dataclass(frozen=True)
class Layout:
    name: str
    order: tuple[str, ...]  # rows are sorted by these (ascending; text by bytes, uuid as its text)
    compression_level: int = 9
    row_group_rows: int = 128 * 1024
    typed_encodings: bool = True  # delta for times and integers, delta-length for uuid; else dictionary everywhere

    def sorting_columns(self, schema: pa.Schema) -> list[pq.SortingColumn]:
        """The order as Parquet records it (row-group metadata), for readers that can use it."""
        return [pq.SortingColumn(schema.get_field_index(name)) for name in self.order if name in schema.names]

    def writer_options(self, schema: pa.Schema) -> dict[str, Any]:
        """Keyword arguments for pyarrow's ParquetWriter."""
        options: dict[str, Any] = {"compression": "zstd", "compression_level": self.compression_level,
                                   "write_statistics": True, "sorting_columns": self.sorting_columns(schema)}
        if not self.typed_encodings:
            return {**options, "use_dictionary": True}
        pg_types = _pg_types(schema)
        encodings = {}
        for field in schema:
            if pa.types.is_timestamp(field.type) or pa.types.is_integer(field.type):
                encodings[field.name] = "DELTA_BINARY_PACKED"
            elif pg_types.get(field.name) == "uuid":
                encodings[field.name] = "DELTA_LENGTH_BYTE_ARRAY"
        dictionary = [f.name for f in schema if f.name not in encodings]
        return {**options, "use_dictionary": dictionary, "column_encoding": encodings}


def _pg_types(schema: pa.Schema) -> dict[str, str]:
    """Column name → PostgreSQL type, from the file's own metadata (absent: {})."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return {}
    return {name: pg_type for name, pg_type in orjson.loads(raw).get("columns", [])}


# What archives were before layouts: time order, dictionary everywhere, zstd level 6 (the benchmark's baseline).
TIME_ORDER = Layout("time", ("timestamp", "event_id"), compression_level=6, typed_encodings=False)
CLUSTERED = Layout("clustered", ("event_type", "user_id", "timestamp", "event_id"))
DEFAULT_LAYOUT = CLUSTERED
LAYOUTS = {layout.name: layout for layout in (TIME_ORDER, CLUSTERED)}
