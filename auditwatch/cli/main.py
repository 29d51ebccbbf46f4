"""The root ``auditwatch`` group: loads the settings into the Context and gathers every command group."""

from __future__ import annotations

import os

import click

from auditwatch import settings as settings_mod
from auditwatch.cli import (
    access,
    alerts,
    analytics,
    archive,
    db,
    demo,
    export,
    gdpr,
    ingest,
    integrity,
    notebooks,
    report,
    rules,
    run,
    storage,
)
from auditwatch.cli.context import Context
from auditwatch.settings import SettingsError


@click.group()
@click.option("--config", type=click.Path(dir_okay=False), envvar="AUDITWATCH_CONFIG",
              help="A TOML settings file (default: ./auditwatch.toml if present).")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Logs as text or as JSON lines (default: the log_format setting, text).")
@click.pass_context
def main(ctx: click.Context, config: str | None, log_format: str | None) -> None:
    """Auditwatch: audit logging and security analytics on TimescaleDB."""
    if log_format:
        os.environ["AUDITWATCH_LOG_FORMAT"] = log_format  # the processes `up` starts inherit it
    try:
        ctx.obj = Context(settings_mod.load(config_file=config or "auto"))
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


for _command in (db.db_group, db.migrate, run.serve, run.worker, run.up, storage.storage, access.keys, access.users,
                 demo.demo, export.export, archive.archive_group, archive.retention_group, archive.hold_group,
                 integrity.verify, integrity.integrity_group, alerts.alerts, rules.rules_group, *analytics.COMMANDS,
                 *ingest.COMMANDS, notebooks.seed_demo_command, report.report_group,
                 gdpr.gdpr_group, gdpr.phi_group):
    main.add_command(_command)
