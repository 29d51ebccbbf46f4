"""Archive paths come from the catalogue, which an insider can edit: none may lead outside the root
(issue 14 #13)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.cold.errors import ArchiveCorrupt, UnsafeArchivePath
from storage.cold.store import ColdStore
from storage.timescale import archive, verify
from tests.storage.cold_data import NOW, audit, seed


@pytest.fixture
def store(tmp_path: Path) -> ColdStore:
    return ColdStore(tmp_path / "archive")


@pytest.mark.parametrize("path", [
    "../outside.parquet", "year=2024/../../outside.parquet", "/etc/passwd", "~/x.parquet", "", "a//b.parquet",
    "./a.parquet", "year=2024/./a.parquet", "C:/x.parquet", "s3://other-bucket/x.parquet", "a\\..\\b.parquet",
    "a\0b.parquet", "year=2024/..",
])
def test_unsafe_paths_are_refused_with_a_clear_error(store, path):
    with pytest.raises(UnsafeArchivePath) as refused:
        store.full_path(path)
    assert "log_archives.path" in str(refused.value) and "relative to the archive root" in str(refused.value)
    for call in (store.exists, store.digest, store.read, store.remove):
        with pytest.raises(UnsafeArchivePath):
            call(path)
    assert issubclass(UnsafeArchivePath, ArchiveCorrupt)  # verify reports it as a bad archive file


def test_plain_relative_paths_are_accepted(store):
    path = "year=2024/month=05/day=01/events-20240501T000000-7.parquet"
    assert store.full_path(path) == f"{store.base}/{path}"


def test_a_symbolic_link_out_of_the_root_is_refused(store, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.parquet").write_bytes(b"not yours")
    Path(store.base).mkdir(parents=True)
    os.symlink(outside, Path(store.base) / "year=2024")
    with pytest.raises(UnsafeArchivePath, match="symbolic link"):
        store.remove("year=2024/secret.parquet")
    assert (outside / "secret.parquet").exists()


def test_a_catalogue_row_pointing_outside_is_reported_by_verify_and_never_deleted(pool, store, tmp_path, conn):
    seed(pool, days=(100, 99), per_day=5, recent=2)
    assert archive.run(pool, store, now=NOW, hot_days=90, audit=audit()).rows == 10
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(b"someone else's file")
    first = archive.list_files(pool, states=("complete",))[0]
    conn.execute("UPDATE log_archives SET path = '../victim.parquet' WHERE archive_id = %s", (first.archive_id,))
    problems = [p for p in verify.cold_reader(pool, store)(first.range_start, first.range_end)
                if isinstance(p, verify.Problem)]
    assert [p.kind for p in problems] == ["archive_file"] and "refused" in problems[0].message

    # The archiver's repair deletes the files of failed rows: a tampered one must not reach outside.
    conn.execute("UPDATE log_archives SET state = 'failed' WHERE archive_id = %s", (first.archive_id,))
    with pytest.raises(UnsafeArchivePath):
        archive.run(pool, store, now=NOW, hot_days=90, audit=audit())
    assert victim.read_bytes() == b"someone else's file"
