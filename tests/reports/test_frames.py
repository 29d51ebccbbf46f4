"""meta() parses only the rows that can hold the key, and gives exactly what json_path_match gives on every row."""

from __future__ import annotations

import polars as pl
import pytest

from reports.library.frames import meta

TEXTS = [
    '{"dataset": "crm", "rows": 12}',
    '{"rows": 1.50, "dataset": null}',
    '{"name": "k1", "username": "alice"}',
    '{"username": "bob"}',                           # a longer key that ends like the one looked for
    '{"note": "the \\"dataset\\" key"}',               # the key's name inside a value, escaped quotes
    '{"detail": "dataset"}',                          # the key's name as a value
    '{"dataset": {"name": "hr", "tags": [1, "x"]}}',  # a nested object is returned as JSON text
    '{"dataset": ["a", "b"], "rows": true}',
    '{"dataset": "", "rows": -0.0}',
    '{"dataset": "é \\u00e9 \\n"}',
    '{"outer": {"dataset": "nested, not top level"}}',
    '{}',
    None,
    '[1, 2]',
    'null',
    '"dataset"',
]


@pytest.mark.parametrize("field", ["dataset", "rows", "name", "username", "missing"])
def test_meta_is_json_path_match(field: str) -> None:
    frame = pl.DataFrame({"metadata": TEXTS}, schema={"metadata": pl.String})
    expected = frame.select(pl.col("metadata").str.json_path_match(f"$.{field}").alias(field))
    got = frame.select(meta(field))
    assert got.schema == expected.schema
    assert got[field].to_list() == expected[field].to_list()


def test_meta_on_no_rows_and_on_rows_without_the_key() -> None:
    empty = pl.DataFrame({"metadata": []}, schema={"metadata": pl.String})
    assert empty.select(meta("dataset")).schema == pl.Schema({"dataset": pl.String})
    none = pl.DataFrame({"metadata": ['{"a": 1}', None]})
    assert none.select(meta("dataset"))["dataset"].to_list() == [None, None]


def test_meta_found_values() -> None:
    frame = pl.DataFrame({"metadata": TEXTS[:3]})
    assert frame.select(meta("dataset"))["dataset"].to_list() == ["crm", None, None]
    assert frame.select(meta("rows"))["rows"].to_list() == ["12", "1.5", None]
