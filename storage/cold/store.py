"""Parquet files under an archive root, written atomically and checked against their catalogue row."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storage.cold.errors import ArchiveCorrupt, ArchiveError, UnsafeArchivePath
from storage.cold.layout import DEFAULT_LAYOUT, Layout
from storage.cold.remote import ObjectStoreOptions, options_from, split_url

Hook = Callable[[str], None]
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class WrittenFile:
    path: str  # relative to the archive root
    rows: int
    bytes: int
    sha256: str


def _no_hook(step: str) -> None:
    """Production runs pass no hook; tests pass one that fails at a chosen step."""


class ColdStore:
    """An archive root: a local directory (the default) or an object-store URL (s3://, gs://, ...).

    S3-protocol stores (AWS, MinIO, Ceph, R2) take their endpoint, region, addressing style and
    credentials from ``options`` and from the URL's query string (see storage.cold.remote); the same
    settings reach pyarrow, which writes, lists and checks files, and Polars, which scans them.
    """

    def __init__(self, root: str | Path, *, options: ObjectStoreOptions | Mapping[str, Any] | None = None) -> None:
        text = str(root)
        if not text:
            raise ArchiveError("the archive root is empty; set `archive_url` (a directory or a URL such as s3://bucket/audit)")
        from_url = ObjectStoreOptions()
        if "://" not in text:
            text = str(Path(text).expanduser().resolve())
        elif urlsplit(text).scheme.lower() == "s3":
            text, from_url = split_url(text)
        self.options = from_url.merged(options_from(options))
        self.storage_options: dict[str, str] | None = None
        try:
            parts = urlsplit(text)
            if parts.scheme.lower() == "s3":
                bucket_and_prefix = (parts.netloc + parts.path).strip("/")
                text = f"s3://{bucket_and_prefix}"
                if not parts.netloc:
                    raise ArchiveError(f"the archive URL {text!r} names no bucket; write s3://bucket/prefix")
                self.fs, self.base = self.options.arrow_s3(), bucket_and_prefix
                self.storage_options = self.options.polars()
            else:
                # Other object stores (gs://, ...) keep pyarrow's own URL options; file URIs drop them.
                self.fs, self.base = pafs.FileSystem.from_uri(text)
                text = urlsplit(text)._replace(query="", fragment="").geturl()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise ArchiveError(f"cannot open the archive root {text!r} ({exc}); use a directory or a URL "
                               "pyarrow understands, such as s3://bucket/prefix") from None
        self.root = text  # without the query string: safe to show, and the base of every file's URI
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.base = self.base.rstrip("/")

    def full_path(self, path: str) -> str:
        """Where a catalogued path lives; refuses one that would leave the root (see ``check_path``)."""
        return f"{self.base}/{self.check_path(path)}"

    def check_path(self, path: str) -> str:
        """``path`` if it is a plain relative path under the root, else UnsafeArchivePath.

        Paths come from the catalogue (log_archives.path), which someone with database write access can
        edit: an absolute path, a ``..`` step, a drive or URL prefix, or a symbolic link out of the root
        would make the archiver read, overwrite or delete files elsewhere.
        """
        why = None
        if not isinstance(path, str) or not path:
            why = "it is empty"
        elif "\0" in path or "\\" in path or ":" in path:
            why = "it contains a NUL, a backslash or a colon (a drive or URL prefix)"
        elif path.startswith("/") or path.startswith("~"):
            why = "it is absolute"
        elif any(part in ("", ".", "..") for part in path.split("/")):
            why = "it has an empty, '.' or '..' step"
        elif self.local:
            root = os.path.realpath(self.base)
            if os.path.commonpath([root, os.path.realpath(os.path.join(root, path))]) != root:
                why = "it resolves outside the root through a symbolic link"
        if why:
            raise UnsafeArchivePath(f"archive path {path!r} from the catalogue (log_archives.path) is refused: {why}. "
                                    f"Archive paths are relative to the archive root {self.root}; the catalogue row "
                                    "was altered: restore it from a backup, or mark the row failed")
        return path

    def uri(self, path: str) -> str:
        """A location Polars can scan (with ``storage_options``)."""
        if self.local:
            return self.full_path(path)
        return f"{self.root.rstrip('/')}/{path}"

    # -- writing --------------------------------------------------------------------------------------

    def write(self, path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], *,
              hook: Hook = _no_hook, layout: Layout = DEFAULT_LAYOUT) -> WrittenFile:
        """Write a zstd Parquet file to ``path.tmp``, make it durable, then rename it into place.

        A crash before the rename leaves only the ``.tmp`` file, which no reader or catalogue row
        points at; after it the file is whole. The batches must already be in ``layout.order``.
        """
        final, temp = self.full_path(path), self.full_path(path) + ".tmp"
        rows = 0
        if self.local:
            Path(final).parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as fh:
                rows = self._write_parquet(fh, schema, batches, hook, layout)
                fh.flush()
                os.fsync(fh.fileno())
            hook("file_written")
            os.replace(temp, final)
            self._fsync_dir(Path(final).parent)
        else:
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
            with self.fs.open_output_stream(temp) as out:
                rows = self._write_parquet(out, schema, batches, hook, layout)
            hook("file_written")
            self.fs.move(temp, final)
        hook("file_renamed")
        digest, size = self.digest(path)
        return WrittenFile(path, rows, size, digest)

    @staticmethod
    def _write_parquet(sink, schema: pa.Schema, batches: Iterable[pa.RecordBatch], hook: Hook,
                       layout: Layout) -> int:
        """Full row groups whatever the batch size (each write call would otherwise close one)."""
        rows = 0
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        with pq.ParquetWriter(sink, schema, **layout.writer_options(schema)) as writer:
            for batch in batches:
                pending.append(batch)
                pending_rows += batch.num_rows
                rows += batch.num_rows
                if pending_rows >= layout.row_group_rows:
                    table = pa.Table.from_batches(pending, schema=schema)
                    full = pending_rows - pending_rows % layout.row_group_rows
                    writer.write_table(table.slice(0, full), row_group_size=layout.row_group_rows)
                    pending = table.slice(full).to_batches()
                    pending_rows -= full
                hook("batch_written")
            if pending_rows:
                writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=layout.row_group_rows)
        return rows

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- reading and checking ---------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(self.full_path(path)).type == pafs.FileType.File

    def digest(self, path: str) -> tuple[str, int]:
        """SHA-256 (hex) and size of a file."""
        sha = hashlib.sha256()
        size = 0
        with self.fs.open_input_stream(self.full_path(path)) as fh:
            while block := fh.read(_READ_BLOCK):
                sha.update(block)
                size += len(block)
        return sha.hexdigest(), size

    def verify(self, path: str, *, rows: int, sha256: str) -> None:
        """Raise ArchiveCorrupt unless the file is there, whole, and exactly what the catalogue says."""
        if not self.exists(path):
            raise ArchiveCorrupt(f"archive file {path} is missing under {self.root}; restore it from a backup "
                                 "(its catalogue row holds the expected SHA-256)")
        digest, _ = self.digest(path)
        if digest != sha256:
            raise ArchiveCorrupt(f"archive file {path} has SHA-256 {digest}, the catalogue recorded {sha256}: "
                                 "it was altered or truncated; restore it from a backup")
        try:
            with self.fs.open_input_file(self.full_path(path)) as fh:
                parquet = pq.ParquetFile(fh)
                found = parquet.metadata.num_rows
                decoded = sum(b.num_rows for b in parquet.iter_batches(batch_size=64 * 1024))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ArchiveCorrupt(f"archive file {path} is not readable Parquet ({exc})") from None
        if found != rows or decoded != rows:
            raise ArchiveCorrupt(f"archive file {path} holds {decoded} rows, the catalogue recorded {rows}")

    def read(self, path: str) -> pa.Table:
        with self.fs.open_input_file(self.full_path(path)) as fh:
            return pq.read_table(fh)

    def scan(self, paths: Sequence[str]) -> pl.LazyFrame:
        """A lazy frame over the given files; filters push down to row-group statistics."""
        return pl.scan_parquet([self.uri(p) for p in paths], hive_partitioning=False,
                               storage_options=self.storage_options)

    def remove(self, path: str) -> bool:
        """Delete a file (and a leftover ``.tmp`` twin); False if there was nothing to delete."""
        removed = False
        for candidate in (self.full_path(path), self.full_path(path) + ".tmp"):
            if self.fs.get_file_info(candidate).type == pafs.FileType.File:
                self.fs.delete_file(candidate)
                removed = True
        return removed

    def listing(self) -> dict[str, int]:
        """Every file under the root (catalogued or not, ``.tmp`` leftovers included): path → bytes."""
        selector = pafs.FileSelector(self.base, recursive=True, allow_not_found=True)
        prefix = self.base + "/"
        return {info.path[len(prefix):]: info.size or 0 for info in self.fs.get_file_info(selector)
                if info.type == pafs.FileType.File and info.path.startswith(prefix)}

    def total_bytes(self) -> int:
        """Bytes of every file under the root (catalogued or not), for status reports."""
        return sum(self.listing().values())
