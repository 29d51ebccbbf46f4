"""Sizing an OTLP request before decoding it: a small gzip can inflate to millions of tiny records, so
records (protobuf) and objects (JSON) are counted first, at a cost bounded by the record limit."""

from __future__ import annotations


class TooManyRecords(ValueError):
    """More log records (or JSON objects) in one request than the server takes; checked before decoding."""


# Objects a JSON body may hold per allowed record, counted before it is parsed: 1 KB of gzip can inflate
# to millions of `{}`, each a Python dict once parsed. An attribute is two objects ({key, value} and its
# AnyValue), so a full batch of `max_records` may average about 10 attributes a record; exporters send far
# smaller batches (the SDK's default is 512), and a refusal says to lower the batch size. Worst case
# parsed: 240,000 small dicts, about 26 MB.
JSON_OBJECTS_PER_RECORD = 24


def _varint(raw: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(raw) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = raw[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(raw: bytes, start: int, end: int, budget: list[int]):
    """(field number, wire type, payload start, payload end) of each field in raw[start:end], skipping values."""
    at = start
    while at < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise TooManyRecords("too many protobuf fields for the record limit")
        tag, at = _varint(raw, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, at = _varint(raw, at)
            yield number, wire, at, at
        elif wire == 2:
            length, at = _varint(raw, at)
            if at + length > end:
                raise ValueError("a length-delimited field runs past its message")
            yield number, wire, at, at + length
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
            yield number, wire, at, at
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def count_protobuf_records(raw: bytes, limit: int) -> int:
    """Log records in an ExportLogsServiceRequest, read off the wire without decoding it.

    ``TooManyRecords`` as soon as there are more than ``limit``, so the count costs at most a few
    field headers per allowed record, whatever the body holds.
    """
    budget, count = [limit * 8 + 64], 0
    for number, wire, lo, hi in _fields(raw, 0, len(raw), budget):
        if number != 1 or wire != 2:  # resource_logs
            continue
        for number2, wire2, lo2, hi2 in _fields(raw, lo, hi, budget):
            if number2 != 2 or wire2 != 2:  # scope_logs
                continue
            for number3, wire3, _, _ in _fields(raw, lo2, hi2, budget):
                if number3 == 2 and wire3 == 2:  # log_records
                    count += 1
                    if count > limit:
                        raise TooManyRecords(f"more than {limit} log records")
    return count
