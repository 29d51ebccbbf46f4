"""Storage-layer errors, each saying what to do about it."""

from __future__ import annotations


class StorageError(RuntimeError):
    """Base class for storage problems."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached or started."""

    retry_after = 5  # seconds a client should wait before retrying (HTTP Retry-After)


class DatabaseDown(DatabaseUnavailable):
    """The database stopped answering: requests fail at once until a probe reaches it again."""

    retry_after = 1


class ReplicaDown(DatabaseDown):
    """The read replica stopped answering: reads fail at once (503) until it is back; writes are not affected."""

    retry_after = 5


class WriteTimeout(DatabaseUnavailable):
    """Events were not committed in time and were withdrawn before any transaction took them."""

    retry_after = 1


class WriteBacklogFull(DatabaseUnavailable):
    """More events wait to be committed than the writer holds in memory (the database is slow or down)."""

    retry_after = 1


class ExtensionMissing(StorageError):
    """PostgreSQL is there but the timescaledb extension is not installed."""


class MigrationError(StorageError):
    """A schema migration failed; the database is left at the last good version."""


class InvalidCursor(ValueError):
    """A pagination cursor that this server did not issue, or that was altered."""


class TooManyRows(StorageError):
    """A bulk read would return more rows than the caller allowed."""


class InvalidFilter(ValueError):
    """A filter of the data API that cannot be used as given."""


class IntegrityError(StorageError):
    """Tamper-evidence machinery cannot do its job as configured."""


class SigningKeyError(IntegrityError):
    """The checkpoint signing key is missing, malformed or unsafe."""


class LegalHoldError(ValueError):
    """A legal hold that cannot be placed or released as asked."""


class HoldNotFound(LegalHoldError):
    """No legal hold has this id."""


class ErasureHeld(LegalHoldError):
    """An erasure refused because a legal hold keeps the event."""
