"""``auditwatch report ...``: compliance reports (PDF, HTML, CSV/XLSX) from the command line, each run audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from auditwatch import integrity as signing
from auditwatch.cli.context import Context, pass_ctx, whoami
from auditwatch.cli.integrity import WHEN
from auditwatch.services import cold_store
from reports import engine, registry
from reports.errors import RenderError, ReportError
from reports.model import Params
from reports.source import Source
from storage.dataapi import AuditData
from storage.errors import InvalidFilter, StorageError
from storage.timescale import reports as stored_reports


@click.group(name="report")
def report_group() -> None:
    """Compliance evidence: access review, privileged activity, authentication failures, log integrity ..."""


@report_group.command("list")
def report_list() -> None:
    """The reports this version ships, with the controls each evidences."""
    for d in registry.all_reports():
        click.echo(f"{d.name:20} v{d.version}  {d.title}  [{', '.join(d.controls)}]")


@report_group.command("show")
@click.argument("name")
@click.option("--history", "limit", default=10, show_default=True, help="How many generated runs to list.")
@pass_ctx
def report_show(ctx: Context, name: str, limit: int) -> None:
    """What a report contains, its options, and its last generated runs with their hashes."""
    try:
        d = registry.get(name)
    except ReportError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{d.title} ({d.name}, template version {d.version})")
    click.echo(f"controls: {', '.join(d.controls)}")
    click.echo(f"scopes:   {', '.join(d.scopes)}")
    click.echo(d.purpose)
    for key, value in d.defaults.items():
        click.echo(f"option {key} = {json.dumps(value)}")
    with ctx.pooled() as pool:
        runs = stored_reports.history(pool, name=name, limit=limit)
    if not runs:
        click.echo("never generated")
    for r in runs:
        click.echo(f"{r.generated_at:%Y-%m-%d %H:%M:%S}  {r.report_id}  {r.period_start:%Y-%m-%d}..{r.period_end:%Y-%m-%d}"
                   f"  scope={r.scope}  by={r.generated_by}  sha256={r.sha256[:16]}  {r.location or ''}")


def _options(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"--option {pair!r} must be KEY=VALUE (the value as JSON, e.g. idle_days=30)")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@report_group.command("run")
@click.argument("name", required=False)
@click.option("--from", "start", type=WHEN, help="Start of the period (ISO 8601; UTC if no zone).")
@click.option("--to", "end", type=WHEN, help="End of the period, exclusive.")
@click.option("--scope", help="all (default), user:ID, source:NAME, ip:ADDRESS or alert:FINGERPRINT.")
@click.option("--option", "options", multiple=True, help="A report option KEY=VALUE (`report show NAME` lists them).")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False),
              help="Re-run from a generated report's params.json (same figures while the data is unchanged).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for report.pdf, report.html, the CSV/XLSX appendices and the proof.")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False),
              help="The checkpoint signer's public key file (default: the `.pub` beside the signing key).")
@pass_ctx
def report_run(ctx: Context, name: str | None, start: datetime | None, end: datetime | None, scope: str | None,
               options: tuple[str, ...], params_file: str | None, out_dir: str, public_key: str | None) -> None:
    """Generate a report into --out and keep its hash in the store (the run is itself audited)."""
    try:
        if params_file:
            params = Params.from_json(json.loads(Path(params_file).read_text()))
            definition = registry.get(params.name)
            if params.version != definition.version:
                raise click.UsageError(f"{params_file} was made by version {params.version} of {params.name}; this "
                                       f"Auditwatch ships version {definition.version}, whose figures may differ")
        else:
            if not name or start is None or end is None:
                raise click.UsageError("give NAME, --from and --to (or --params FILE from an earlier run)")
            params = registry.get(name).params(start, end, scope, _options(options))
        trusted = signing.verification_keys(ctx.settings, (), public_key)
    except (ReportError, StorageError) as exc:
        raise click.UsageError(str(exc)) from None
    now = datetime.now(UTC)
    archive = cold_store(ctx.settings)
    with ctx.pooled(usage_errors=(ReportError, InvalidFilter), errors=(StorageError, RenderError)) as pool:
        source = Source(AuditData(pool, read_only=False, cold=archive))
        generated = engine.generate(source, params, out_dir, generated_by=f"cli:{whoami()}", now=now,
                                    trusted_keys=trusted, archive=archive)
        engine.store(pool, generated, source="auditwatch-cli")
    click.echo(f"{generated.pdf}  ({len(generated.files)} files, sha256 {generated.sha256})")
    click.echo(f"integrity: {generated.proof.verdict}")
    for label, value in generated.figures.items():
        click.echo(f"  {label}: {value}")
