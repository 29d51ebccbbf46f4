"""Polars steps the reports share: metadata fields, the hour of day, counting."""

from __future__ import annotations

import re

import polars as pl

_PLAIN = re.compile(r"[A-Za-z0-9_]+")


def meta(field: str, column: str = "metadata") -> pl.Expr:
    """A top-level metadata field as text (the stored metadata is JSON text).

    JSON is parsed only where the key can be: in rows whose text holds ``"field"``. A plain key is always
    written so (PostgreSQL's jsonb text and orjson escape only quotes, backslashes and control characters),
    so the other rows cannot match ``$.field`` and are null without parsing: at 10 M events most rows lack
    most of the keys a report looks for, and parsing each row once per key was most of a build.
    """
    path = f"$.{field}"
    if not _PLAIN.fullmatch(field):
        return pl.col(column).str.json_path_match(path).alias(field)
    needle = f'"{field}"'

    def extract(text: pl.Series) -> pl.Series:
        holds = text.str.contains(needle, literal=True).fill_null(False)
        found = pl.repeat(None, text.len(), dtype=pl.String, eager=True).alias(field)
        if holds.any():
            found = found.scatter(holds.arg_true(), text.filter(holds).str.json_path_match(path))
        return found

    return pl.col(column).map_batches(extract, return_dtype=pl.String).alias(field)


def count(frame: pl.DataFrame, condition: pl.Expr | None = None) -> int:
    return int(frame.height if condition is None else frame.filter(condition).height)


def hour() -> pl.Expr:
    return pl.col("timestamp").dt.hour().alias("hour_utc")
