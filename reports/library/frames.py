"""Polars steps the reports share: metadata fields, the hour of day, counting."""

from __future__ import annotations

import polars as pl


def meta(field: str, column: str = "metadata") -> pl.Expr:
    """A top-level metadata field as text (the stored metadata is JSON text)."""
    return pl.col(column).str.json_path_match(f"$.{field}").alias(field)


def count(frame: pl.DataFrame, condition: pl.Expr | None = None) -> int:
    return int(frame.height if condition is None else frame.filter(condition).height)


def hour() -> pl.Expr:
    return pl.col("timestamp").dt.hour().alias("hour_utc")
