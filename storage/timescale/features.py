"""Events and peer groups for the analytics jobs, read with COPY straight into Polars (not row by row)."""

from __future__ import annotations

import io
from datetime import datetime

import polars as pl
from psycopg import sql
from psycopg_pool import ConnectionPool

# The analytics events frame: the ingest columns, metadata as JSON text, times as UTC microseconds.
_COPY_EVENTS = sql.SQL("""
    COPY (
        SELECT event_id::text AS event_id,
               (extract(epoch FROM "timestamp") * 1000000)::bigint AS ts_us,
               event_type, user_id, outcome, host(source_ip) AS source_ip, source_country, source_asn,
               user_agent, resource_id, metadata::text AS metadata
        FROM audit_events
        WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s
        ORDER BY "timestamp"
    ) TO STDOUT (FORMAT CSV, HEADER)
""")
_SCHEMA = {"event_id": pl.String, "ts_us": pl.Int64, "event_type": pl.String, "user_id": pl.String,
           "outcome": pl.String, "source_ip": pl.String, "source_country": pl.String, "source_asn": pl.String,
           "user_agent": pl.String, "resource_id": pl.String, "metadata": pl.String}


def events_frame(pool: ConnectionPool, start: datetime, end: datetime) -> pl.DataFrame:
    """Every event with ``start <= timestamp < end`` as a Polars frame (``analytics.events`` columns)."""
    buffer = io.BytesIO()
    with pool.connection() as conn, conn.cursor() as cur, cur.copy(_COPY_EVENTS, {"start": start, "end": end}) as copy:
        for block in copy:
            buffer.write(block)
    if buffer.tell() == 0:
        frame = pl.DataFrame(schema=_SCHEMA)
    else:
        frame = pl.read_csv(buffer.getvalue(), schema=_SCHEMA)
    return frame.with_columns(
        pl.from_epoch("ts_us", time_unit="us").dt.replace_time_zone("UTC").alias("timestamp")
    ).drop("ts_us")


def peer_groups(pool: ConnectionPool) -> dict[str, str]:
    """User id → peer group: the registered department, else the account kind (human, service, apikey)."""
    with pool.connection() as conn:
        rows = conn.execute("SELECT user_id, coalesce(department, kind) FROM users").fetchall()
    return {user_id: group for user_id, group in rows}
