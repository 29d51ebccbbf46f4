"""Cold-tier errors, each saying what to do about it."""

from __future__ import annotations

from storage.errors import StorageError


class ArchiveError(StorageError):
    """The archive root cannot be used as configured."""


class ArchiveCorrupt(ArchiveError):
    """An archive file does not match its catalogue row (missing, truncated or altered)."""


class UnsafeArchivePath(ArchiveCorrupt):
    """A catalogued archive path that would leave the archive root (absolute, ``..``, a link out)."""
