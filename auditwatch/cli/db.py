"""``auditwatch db ...`` and ``auditwatch migrate``: the embedded database and the schema."""

from __future__ import annotations

import subprocess
import sys

import click
import psycopg

from auditwatch.cli.context import Context, pass_ctx
from storage.errors import StorageError
from storage.timescale import db, migrations, roles


@click.group(name="db")
def db_group() -> None:
    """The embedded, project-local TimescaleDB."""


def _require_embedded(ctx: Context) -> None:
    if not ctx.settings.embedded:
        raise click.UsageError("AUDITWATCH_DATABASE_URL points at an external server; `db up/down` manage only "
                               "the embedded database. Unset it to use the embedded one.")


@db_group.command("up")
@pass_ctx
def db_up(ctx: Context) -> None:
    """Install (if missing), initialise and start the embedded database."""
    _require_embedded(ctx)
    start_database(ctx)


def start_database(ctx: Context) -> None:
    cluster = ctx.cluster()
    click.echo(f"Starting the embedded TimescaleDB in {cluster.pgdata} ...")
    try:
        cluster.up()
    except (StorageError, subprocess.CalledProcessError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Database ready: {cluster.url}")


@db_group.command("down")
@pass_ctx
def db_down(ctx: Context) -> None:
    """Stop the embedded database (its data stays)."""
    _require_embedded(ctx)
    ctx.cluster().down()
    click.echo("Database stopped.")


@db_group.command("status")
@pass_ctx
def db_status(ctx: Context) -> None:
    """Server and TimescaleDB versions, the edition, and where the data lives."""
    if ctx.settings.embedded:
        cluster = ctx.cluster()
        click.echo(f"data directory:      {cluster.pgdata}")
        if not cluster.is_running():
            click.echo("state:               stopped (start it with `auditwatch db up`)")
            sys.exit(1)
    else:
        click.echo("data directory:      (external server)")
    with ctx.connect() as conn:
        info = db.server_info(conn)
        version = migrations.current_version(conn)
    click.echo("state:               running")
    click.echo(f"url:                 {_redact_url(ctx.url)}")
    click.echo(f"server version:      {info.server_version}")
    click.echo(f"timescaledb version: {info.timescaledb_version or 'not installed'}")
    click.echo(f"edition:             {info.edition or 'unknown (extension not loaded)'}")
    click.echo(f"schema version:      {version if version is not None else 'not migrated (run `auditwatch migrate`)'}")


def _redact_url(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    if info.get("password"):
        info["password"] = "***"
    return psycopg.conninfo.make_conninfo(**info) if info.get("password") else url


@click.command()
@pass_ctx
def migrate(ctx: Context) -> None:
    """Apply pending schema migrations (safe to run from several processes at once)."""
    apply_migrations(ctx)


def apply_migrations(ctx: Context) -> None:
    with ctx.connect() as conn:
        try:
            db.require_timescaledb(conn)
            applied = migrations.migrate(conn, chunk_interval=ctx.settings.chunk_interval)
            if ctx.settings.embedded:  # the API's least-privilege role (external servers: README "Database roles")
                roles.apply(conn)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from None
        version = migrations.current_version(conn)
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    click.echo(f"schema at version {version}")
