"""Stored events as export files: CSV (spreadsheet-safe), NDJSON and OCSF NDJSON, streamed in chunks.

The API's ``/api/v1/logs/export`` and the dashboard's export link both write through here, so an
export reads the same whichever door it was asked at.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from storage.events import COLUMNS, EventRecord
from storage.ocsf import OcsfType, to_ocsf

CHUNK_CHARS = 64 * 1024
# A leading one of these makes a spreadsheet read the cell as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def dumps(body: Any) -> bytes:
    """JSON bytes; falls back to the standard library for integers beyond 64 bits.

    jsonb keeps any number, and a stored event's metadata read back may hold an integer orjson
    refuses to write; one such event must not make every read of the log fail.
    """
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formula injection in an exported cell."""
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        return "'" + value
    return value


def csv_lines(rows: Iterable[EventRecord]) -> Iterator[str]:
    """A header and one row per event, metadata as JSON, in chunks of about 64 KiB."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for event in rows:
        data = event.to_json()
        data["metadata"] = dumps(event.metadata).decode()
        writer.writerow([csv_safe(data[c]) for c in COLUMNS])
        if buffer.tell() > CHUNK_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def ndjson_lines(rows: Iterable[EventRecord]) -> Iterator[bytes]:
    """One JSON object per line, per event."""
    return (dumps(event.to_json()) + b"\n" for event in rows)


def ocsf_lines(rows: Iterable[EventRecord], types: Mapping[str, OcsfType]) -> Iterator[bytes]:
    """One OCSF 1.1 event per line, of the class the catalogue gives the event's type."""
    return (dumps(to_ocsf(event, types.get(event.event_type))) + b"\n" for event in rows)


FORMATS = ("csv", "ndjson", "ocsf")
MIMETYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson", "ocsf": "application/x-ndjson"}
EXTENSIONS = {"csv": "csv", "ndjson": "ndjson", "ocsf": "ocsf.ndjson"}


def lines(rows: Iterable[EventRecord], fmt: str, *,
          ocsf_types: Mapping[str, OcsfType] | None = None) -> Iterator[str] | Iterator[bytes]:
    """The export body in ``fmt`` (``csv``, ``ndjson`` or ``ocsf``, which needs the catalogue's ``ocsf_types``)."""
    if fmt == "csv":
        return csv_lines(rows)
    if fmt == "ocsf":
        return ocsf_lines(rows, ocsf_types or {})
    return ndjson_lines(rows)
