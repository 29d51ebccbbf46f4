"""copy_frame drains the COPY itself (past psycopg's per-row read): rows, types, errors and the connection after."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import psycopg
import pytest
from psycopg import sql

from storage.timescale.db import copy_frame

SCHEMA = {"n": pl.Int64(), "label": pl.String(), "at": pl.Datetime("us", "UTC")}
ROWS = sql.SQL("SELECT g, CASE WHEN g %% 3 = 0 THEN NULL ELSE 'row ' || g || ', \"quoted\"' END, "
               "(extract(epoch FROM %s::timestamptz + g * interval '1 second') * 1000000)::bigint "
               "FROM generate_series(1, %s) AS g")


def test_every_row_by_position_with_times_in_utc(conn: psycopg.Connection) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    frame = copy_frame(conn, ROWS, [start, 200_000], SCHEMA)
    assert frame.schema == pl.Schema(SCHEMA)
    assert frame.height == 200_000
    assert frame["n"].to_list() == list(range(1, 200_001))
    assert frame["label"][0] == 'row 1, "quoted"' and frame["label"][2] is None
    assert frame["at"][-1] == datetime(2026, 1, 3, 7, 33, 20, tzinfo=UTC)
    # the connection is usable afterwards, in the same transaction state as after any statement
    assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42


def test_empty_result_is_an_empty_frame_of_the_schema(conn: psycopg.Connection) -> None:
    frame = copy_frame(conn, ROWS, [datetime(2026, 1, 1, tzinfo=UTC), 0], SCHEMA)
    assert frame.height == 0 and frame.schema == pl.Schema(SCHEMA)


def test_an_error_in_the_middle_of_the_stream_is_raised_and_the_connection_recovers(
        conn: psycopg.Connection) -> None:
    failing = sql.SQL("SELECT g, 'x', 1 / (50000 - g) FROM generate_series(1, 100000) AS g")
    with pytest.raises(psycopg.errors.DivisionByZero):
        copy_frame(conn, failing, [], SCHEMA)
    conn.rollback()
    assert copy_frame(conn, ROWS, [datetime(2026, 1, 1, tzinfo=UTC), 3], SCHEMA).height == 3
