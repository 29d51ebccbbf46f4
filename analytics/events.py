"""The events frame every detector reads, and readers that build it from files.

The columns are the ingest schema (``storage.events.COLUMNS``) with ``metadata`` kept as JSON
text, so a frame read from TimescaleDB (COPY → Arrow) and one read from an NDJSON file are the
same thing to the feature code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
from psycopg_pool import ConnectionPool

from analytics.errors import MalformedInput, MissingColumns
from storage.timescale import queries
from storage.timescale.queries import EventQuery

TS = pl.Datetime("us", "UTC")
SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String,
    "timestamp": TS,
    "event_type": pl.String,
    "user_id": pl.String,
    "outcome": pl.String,
    "source_ip": pl.String,
    "source_country": pl.String,
    "source_asn": pl.String,
    "user_agent": pl.String,
    "resource_id": pl.String,
    "metadata": pl.String,
}
REQUIRED = ("timestamp", "event_type", "user_id")
MAX_LINE_BYTES = 1 << 20


def normalize(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Any events frame → the canonical columns and types (missing optional columns become null)."""
    lf = frame.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise MissingColumns(f"the events frame lacks {', '.join(missing)}; every event needs a timestamp, "
                             "an event_type and a user_id")
    exprs = []
    for name, dtype in SCHEMA.items():
        if name not in names:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
        elif name == "timestamp":
            ts = lf.collect_schema()["timestamp"]
            if ts == pl.String:
                exprs.append(pl.col("timestamp").str.to_datetime(time_zone="UTC", time_unit="us").alias(name))
            elif isinstance(ts, pl.Datetime) and ts.time_zone is None:
                exprs.append(pl.col("timestamp").dt.replace_time_zone("UTC").dt.cast_time_unit("us"))
            else:
                exprs.append(pl.col("timestamp").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
        else:
            exprs.append(pl.col(name).cast(dtype))
    out = lf.select(exprs)
    if "event_id" not in names:  # events without ids (e.g. parsed logs) get stable ones from their position
        out = out.with_row_index("_row").with_columns(
            pl.format("00000000-0000-4000-8000-{}", pl.col("_row").cast(pl.String).str.zfill(12)).alias("event_id")
        ).drop("_row")
    return out.with_columns(pl.col("outcome").fill_null("unknown"))


def stored_once(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """The events as ingest stores them (R5): one of each ``event_id`` and ``timestamp``, the first in the file
    (a shipper's retry, a file concatenated twice); and how many repeats were left out. Events without an id
    are all kept."""
    if "event_id" not in frame.columns or frame.is_empty():
        return frame, 0
    keyed = pl.col("event_id").is_not_null()
    kept = frame.filter(~keyed | pl.struct("event_id", "timestamp").is_first_distinct())
    return kept, frame.height - kept.height


def _event_row(line_no: int, raw: bytes) -> dict:
    if len(raw) > MAX_LINE_BYTES:
        raise MalformedInput(line_no, f"the line is over {MAX_LINE_BYTES} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedInput(line_no, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise MalformedInput(line_no, "expected a JSON object (one event per line)")
    for name in REQUIRED:
        if not isinstance(obj.get(name), str) or not obj[name]:
            raise MalformedInput(line_no, f"`{name}` is missing or not a string")
    try:
        ts = datetime.fromisoformat(obj["timestamp"])
    except ValueError:
        raise MalformedInput(line_no, "`timestamp` is not ISO 8601") from None
    if ts.tzinfo is None:
        raise MalformedInput(line_no, "`timestamp` has no time zone; add Z or +00:00")
    row = {name: obj.get(name) for name in SCHEMA}
    row["timestamp"] = ts.astimezone(UTC)
    for name in ("event_id", "outcome", "source_ip", "source_country", "source_asn", "user_agent", "resource_id"):
        if row[name] is not None and not isinstance(row[name], str):
            raise MalformedInput(line_no, f"`{name}` must be a string")
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise MalformedInput(line_no, "`metadata` must be a JSON object")
    row["metadata"] = orjson.dumps(metadata).decode() if metadata else None
    return row


def read_ndjson(path: Path | str, *, on_error: str = "stop", errors: list[MalformedInput] | None = None,
                progress: Callable[[int], None] | None = None, chunk: int = 50_000) -> pl.DataFrame:
    """Events from an NDJSON file; a malformed line stops the read (``on_error="stop"``) or is skipped.

    Skipped lines are appended to ``errors`` so the caller can report them with their line numbers.
    """
    if on_error not in ("stop", "skip"):
        raise ValueError("on_error must be 'stop' or 'skip'")
    frames: list[pl.DataFrame] = []
    rows: list[dict] = []
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if progress:
                progress(len(raw))
            if not raw.strip():
                continue
            try:
                rows.append(_event_row(line_no, raw))
            except MalformedInput as exc:
                if on_error == "stop":
                    raise
                if errors is not None:
                    errors.append(exc)
                continue
            if len(rows) >= chunk:
                frames.append(pl.DataFrame(rows, schema=SCHEMA))
                rows = []
    if rows or not frames:
        frames.append(pl.DataFrame(rows, schema=SCHEMA))
    return normalize(pl.concat(frames)).collect()


def from_records(records: Iterable[dict]) -> pl.DataFrame:
    """Events from dicts shaped like the ingest API's (e.g. a generator's output)."""
    rows = [_event_row(i, orjson.dumps(r)) for i, r in enumerate(records, start=1)]
    return normalize(pl.DataFrame(rows, schema=SCHEMA)).collect()


def read_series_csv(path: Path | str, *, on_error: str = "stop", errors: list[MalformedInput] | None = None,
                    progress: Callable[[int], None] | None = None) -> pl.DataFrame:
    """A ``timestamp,value`` CSV (header required) as a frame sorted by time."""
    if on_error not in ("stop", "skip"):
        raise ValueError("on_error must be 'stop' or 'skip'")
    stamps: list[datetime] = []
    values: list[float] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
        if [h.strip().lower() for h in header.split(",")] != ["timestamp", "value"]:
            raise MalformedInput(1, "the header must be exactly `timestamp,value`")
        for line_no, line in enumerate(handle, start=2):
            if progress:
                progress(len(line))
            if not line.strip():
                continue
            try:
                stamp, value = _series_row(line_no, line)
            except MalformedInput as exc:
                if on_error == "stop":
                    raise
                if errors is not None:
                    errors.append(exc)
                continue
            stamps.append(stamp)
            values.append(value)
    frame = pl.DataFrame({"timestamp": stamps, "value": values}, schema={"timestamp": TS, "value": pl.Float64})
    return frame.sort("timestamp", maintain_order=True)


def _series_row(line_no: int, line: str) -> tuple[datetime, float]:
    parts = line.rstrip("\r\n").split(",")
    if len(parts) != 2:
        raise MalformedInput(line_no, f"expected 2 fields (timestamp,value), found {len(parts)}")
    try:
        stamp = datetime.fromisoformat(parts[0].strip())
    except ValueError:
        raise MalformedInput(line_no, f"`{parts[0].strip()[:40]}` is not an ISO 8601 timestamp") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    try:
        value = float(parts[1])
    except ValueError:
        raise MalformedInput(line_no, f"`{parts[1].strip()[:40]}` is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise MalformedInput(line_no, "the value is not a finite number")
    return stamp.astimezone(UTC), value


def to_records(frame: pl.DataFrame) -> list:
    """Storage ``EventRecord``s from an events frame (to load generated data into TimescaleDB)."""
    import uuid

    from storage.events import EventRecord, Outcome

    out = []
    for row in normalize(frame).collect().iter_rows(named=True):
        out.append(EventRecord(
            event_id=uuid.UUID(row["event_id"]), timestamp=row["timestamp"], event_type=row["event_type"],
            user_id=row["user_id"], received_at=row["timestamp"], outcome=Outcome(row["outcome"]),
            source_ip=row["source_ip"], source_country=row["source_country"], source_asn=row["source_asn"],
            user_agent=row["user_agent"], resource_id=row["resource_id"],
            metadata=orjson.loads(row["metadata"]) if row["metadata"] else {}))
    return out


def write_ndjson(frame: pl.DataFrame, path: Path | str, *, progress: Callable[[int], None] | None = None,
                 chunk: int = 200_000) -> int:
    """An events frame as NDJSON in the ingest schema (what ``read_ndjson`` reads back); returns the lines.

    ``metadata`` (JSON text in the frame) is written as the JSON object it holds.
    """
    events = normalize(frame).collect()
    fields = [pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")]
    fields += [pl.col(n) for n in SCHEMA if n not in ("timestamp", "metadata")]
    encoded = pl.struct(*fields).struct.json_encode()
    line = (pl.when(pl.col("metadata").is_not_null() & (pl.col("metadata") != "{}"))
            .then(pl.concat_str([encoded.str.head(-1), pl.lit(',"metadata":'), pl.col("metadata"), pl.lit("}")]))
            .otherwise(encoded))
    with open(path, "wb") as handle:
        for offset in range(0, events.height, chunk):
            lines = events.slice(offset, chunk).select(line.alias("line"))["line"]
            handle.write(("\n".join(lines) + "\n").encode())
            if progress:
                progress(min(offset + chunk, events.height))
    return events.height


def read(pool: ConnectionPool, start: datetime, end: datetime, *, event_types: tuple[str, ...] = ()) -> pl.DataFrame:
    """Events with ``start <= timestamp < end`` (of ``event_types``, when given) from the store, in ``SCHEMA``:
    the one read path of the scoring jobs, the backtests and the notebooks' tuning helpers."""
    query = EventQuery(start_time=start, end_time=end, event_types=tuple(event_types))
    return queries.events_frame(pool, query, columns=list(SCHEMA))
