"""The columnstore tier's state on the community edition (migration 0004 sets the policy)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class CompressionStats:
    total_chunks: int
    compressed_chunks: int
    bytes_before: int
    bytes_after: int


def stats(conn: psycopg.Connection) -> CompressionStats | None:
    """How much of ``audit_events`` is compressed; None before any chunk is (only on the timescale edition)."""
    row = conn.execute(
        "SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes, "
        "after_compression_total_bytes FROM hypertable_compression_stats('audit_events')").fetchone()
    if not row or not row[1]:
        return None
    return CompressionStats(*row)
