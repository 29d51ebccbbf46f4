"""The archive's physical layout: row order and encodings change bytes, never values or types."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from storage.cold.layout import CLUSTERED, DEFAULT_LAYOUT, TIME_ORDER
from storage.timescale import archive, db, migrations, retention
from storage.timescale.retention import RetentionPolicy
from tests.storage.cold_data import NOW, audit, event, seed, write

# Byte order differs from a linguistic collation: upper case and digits sort before lower case,
# and 'é' after 'z'. The files must follow byte order, as Parquet statistics and Polars compare.
USERS = ("alice", "Zed", "émile", "bob", "42", "zoé")
TYPES = ("user_login", "file_download", "data_export")


def _mixed_day(pool, n: int = 300) -> list:
    rng = random.Random(5)
    day = (NOW - timedelta(days=120)).replace(hour=0, minute=0)
    events = [event(day + timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(10**6)), rng=rng,
                    user_id=rng.choice(USERS), event_type=rng.choice(TYPES)) for _ in range(n)]
    write(pool, events)
    return events


def _file(pool, store) -> tuple[pq.ParquetFile, pl.DataFrame]:
    [f] = archive.list_files(pool, states=("complete",))
    with store.fs.open_input_file(store.full_path(f.path)) as fh:
        parquet = pq.ParquetFile(pa.BufferReader(fh.read()))
    return parquet, store.scan([f.path]).collect()


def _byte_order(frame: pl.DataFrame, order) -> list[tuple]:
    """Rows sorted in Python by the UTF-8 bytes of text keys (independent of Polars and PostgreSQL)."""
    rows = frame.select(list(order)).rows()
    return sorted(rows, key=lambda r: tuple(v.encode() if isinstance(v, str) else v for v in r))


@pytest.fixture
def linguistic_db_url(server_url: str, empty_db_url: str) -> str:
    """A migrated database whose default collation is linguistic (ICU), as an en_US database would have.

    Built as a database rather than by altering audit_events' column: the community edition's
    continuous aggregates read user_id, and PostgreSQL refuses to change the type of a column a view uses.
    """
    name = psycopg.conninfo.conninfo_to_dict(empty_db_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu "
                              "ICU_LOCALE 'und' LOCALE 'C.UTF-8'").format(sql.Identifier(name)))
    with psycopg.connect(empty_db_url) as conn:
        migrations.migrate(conn)
    return empty_db_url


def test_rows_are_clustered_by_type_and_user_in_byte_order_and_the_file_says_so(linguistic_db_url, store):
    # A linguistic collation on the column must not leak into the file.
    pool = db.open_pool(linguistic_db_url, min_size=1, max_size=4, name="tests-icu")
    try:
        _clustered_in_byte_order(pool, store)
    finally:
        pool.close()


def _clustered_in_byte_order(pool, store) -> None:
    events = _mixed_day(pool)
    with pool.connection() as conn:
        linguistic = [r[0] for r in conn.execute("SELECT DISTINCT user_id FROM audit_events ORDER BY 1").fetchall()]
    assert linguistic != sorted(linguistic, key=str.encode)  # the collation really differs from byte order
    archive.run(pool, store, now=NOW, hot_days=90, audit=audit(), batch_rows=37)
    parquet, frame = _file(pool, store)

    assert DEFAULT_LAYOUT is CLUSTERED
    assert frame.height == len(events)
    assert frame.select(list(CLUSTERED.order)).rows() == _byte_order(frame, CLUSTERED.order)
    names = parquet.schema_arrow.names
    group = parquet.metadata.row_group(0)
    assert [(names[c.column_index], c.descending) for c in group.sorting_columns] == [
        (name, False) for name in CLUSTERED.order]
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert "DELTA_BINARY_PACKED" in encodings["timestamp"] and "DELTA_BINARY_PACKED" in encodings["received_at"]
    assert "DELTA_LENGTH_BYTE_ARRAY" in encodings["event_id"]
    assert "RLE_DICTIONARY" in encodings["user_id"] and "RLE_DICTIONARY" in encodings["metadata"]
    # The values are the events themselves, whatever the order.
    assert sorted(frame.get_column("event_id").to_list()) == sorted(str(e.event_id) for e in events)
    assert str(parquet.schema_arrow.field("timestamp").type) == "timestamp[us, tz=UTC]"


def test_small_batches_still_make_full_row_groups(pool, store):
    _mixed_day(pool, n=250)
    small = dataclasses.replace(CLUSTERED, row_group_rows=100)
    archive.run(pool, store, now=NOW, hot_days=90, audit=audit(), batch_rows=33, layout=small)
    parquet, frame = _file(pool, store)
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)] == [100, 100, 50]
    assert frame.select(list(CLUSTERED.order)).rows() == _byte_order(frame, CLUSTERED.order)


def test_the_time_order_layout_still_writes_what_archives_were_before(pool, store):
    _mixed_day(pool, n=120)
    archive.run(pool, store, now=NOW, hot_days=90, audit=audit(), layout=TIME_ORDER)
    parquet, frame = _file(pool, store)
    assert frame.select(list(TIME_ORDER.order)).rows() == _byte_order(frame, TIME_ORDER.order)
    group = parquet.metadata.row_group(0)
    assert all("RLE_DICTIONARY" in group.column(i).encodings for i in range(group.num_columns))


def test_a_retention_rewrite_keeps_the_layout_and_moves_old_files_to_it(pool, store):
    seed(pool, days=(400,), per_day=60, recent=0)
    archive.run(pool, store, now=NOW, hot_days=90, audit=audit(), layout=TIME_ORDER)
    policy = RetentionPolicy(hot_days=90, cold_years=7, cold_years_by_type={"user_login": 1})
    result = retention.apply(pool, store, now=NOW, audit=audit(), policy=policy)
    assert len(result.rewritten) == 1
    parquet, frame = _file(pool, store)
    assert frame.height and "user_login" not in frame.get_column("event_type").to_list()
    assert frame.select(list(CLUSTERED.order)).rows() == _byte_order(frame, CLUSTERED.order)
    names = parquet.schema_arrow.names
    assert [names[c.column_index] for c in parquet.metadata.row_group(0).sorting_columns] == list(CLUSTERED.order)
