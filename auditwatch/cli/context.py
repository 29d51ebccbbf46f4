"""The state every command gets: settings and the database they point at.

Command modules import this and nothing else from the CLI, so no module circles back to the root group.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import click
import psycopg

from auditwatch.services import database_url
from auditwatch.settings import Settings
from storage.errors import StorageError
from storage.timescale import db, self_audit
from storage.timescale.cluster import LocalCluster


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def url(self) -> str:
        return database_url(self.settings)

    def cluster(self) -> LocalCluster:
        return LocalCluster(self.settings.resolved_data_dir(), port=self.settings.db_port)

    def connect(self) -> psycopg.Connection:
        try:
            return db.connect(self.url, autocommit=True)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from None

    def pool(self):
        try:
            return db.open_pool(self.url, min_size=1, max_size=4)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from None

    @contextlib.contextmanager
    def pooled(self, *, usage_errors: tuple[type[Exception], ...] = (),
               errors: tuple[type[Exception], ...] = ()) -> Iterator:
        """A pool for one command, closed after it.

        ``usage_errors`` become a UsageError (the user can fix the call), ``errors`` a ClickException,
        each with the domain error's own message.
        """
        pool = self.pool()
        try:
            yield pool
        except usage_errors as exc:
            raise click.UsageError(str(exc)) from None
        except errors as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            pool.close()


pass_ctx = click.make_pass_decorator(Context)


def whoami() -> str:
    try:
        return os.getlogin()
    except OSError:
        return str(os.getuid())


def cli_auditor() -> self_audit.Auditor:
    """The builder of this CLI user's audit records, for changes stored with their record in one transaction."""
    return self_audit.auditor(f"cli:{whoami()}", lambda: datetime.now(UTC), source="auditwatch-cli")

