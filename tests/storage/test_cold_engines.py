"""The cold tier is a plain Hive-partitioned Parquet dataset: other engines read it without Auditwatch.

A data team points DuckDB, Polars, Trino or Spark at the archive root; these tests hold the two
engines that run here to the catalogue's own counts.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from storage.cold.store import ColdStore
from storage.timescale import archive
from tests.storage.cold_data import NOW, OLD_DAYS, audit, seed


@pytest.fixture
def archived(pool, tmp_path: Path) -> tuple[Path, list]:
    root = tmp_path / "archive"
    events = seed(pool, per_day=40)
    archive.run(pool, ColdStore(root), now=NOW, hot_days=90, audit=audit())
    cold = [e for e in events if e.timestamp < NOW - timedelta(days=90)]
    assert cold and len(archive.list_files(pool, states=("complete",))) == len(OLD_DAYS)
    return root, cold


def _expected(cold) -> dict[tuple[int, int, int], int]:
    return dict(Counter((e.timestamp.year, e.timestamp.month, e.timestamp.day) for e in cold))


def _duckdb(query: str, *params) -> list[tuple]:
    with duckdb.connect() as con:
        return con.execute(query, list(params)).fetchall()


def test_duckdb_reads_the_archive_as_a_hive_dataset(archived):
    root, cold = archived
    rows = _duckdb("SELECT year, month, day, count(*) FROM read_parquet(?, hive_partitioning = true) "
                   "GROUP BY ALL ORDER BY ALL", f"{root}/**/*.parquet")
    assert {(int(y), int(m), int(d)): n for y, m, d, n in rows} == _expected(cold)
    # Partition pruning: a filter on the directory keys reads only that day's file.
    y, m, d = next(iter(_expected(cold)))
    [(one,)] = _duckdb("SELECT count(*) FROM read_parquet(?, hive_partitioning = true) "
                       "WHERE year = ? AND month = ? AND day = ?", f"{root}/**/*.parquet", y, m, d)
    assert one == _expected(cold)[(y, m, d)]


def test_polars_reads_the_archive_as_a_hive_dataset(archived):
    root, cold = archived
    frame = (pl.scan_parquet(root / "**" / "*.parquet", hive_partitioning=True)
             .group_by("year", "month", "day").agg(pl.len()).collect())
    assert {(int(y), int(m), int(d)): n for y, m, d, n in frame.rows()} == _expected(cold)
    users = (pl.scan_parquet(root / "**" / "*.parquet", hive_partitioning=True)
             .filter(pl.col("user_id") == "alice").select(pl.len()).collect().item())
    assert users == sum(e.user_id == "alice" for e in cold)


def test_a_file_being_written_is_not_part_of_the_dataset(archived):
    root, cold = archived
    # An archive run that crashed mid-write leaves ``*.parquet.tmp``; engines globbing *.parquet skip it.
    some = next(root.rglob("*.parquet"))
    (some.parent / (some.name + ".tmp")).write_bytes(b"half a file")
    assert _duckdb("SELECT count(*) FROM read_parquet(?)", f"{root}/**/*.parquet") == [(len(cold),)]
