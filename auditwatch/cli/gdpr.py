"""``auditwatch gdpr ...`` and ``auditwatch phi reveal``: data subject access exports, the four-eyes erasure
workflow with its signed certificate, and the audited PHI reveal. Each step is audited as ``cli:<login>``;
the approver must be another login than the requester."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import click

from auditwatch import privacy
from auditwatch.cli.context import Context, cli_auditor, pass_ctx, whoami
from auditwatch.cli.integrity import WHEN
from auditwatch.services import cold_store
from ingest.phi import PhiKeyError
from reports.errors import RenderError
from reports.library import gdpr_access, gdpr_certificate
from storage.errors import StorageError
from storage.integrity import checkpoints
from storage.timescale import gdpr
from storage.timescale.archive import ArchiveBusy


@click.group(name="gdpr")
def gdpr_group() -> None:
    """Data subjects (GDPR Art. 15, 17): access exports and erasure requests with four eyes."""


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise click.UsageError(f"{raw!r} is not a request id (a UUID); `auditwatch gdpr list` shows them") from None


def _show(req: gdpr.ErasureRequest) -> None:
    click.echo(f"{req.request_id}  {req.state:9}  subject={req.subject}  basis={req.lawful_basis!r}")
    for s in req.steps:
        click.echo(f"  {s.at:%Y-%m-%d %H:%M:%S}  {s.step:9}  by {s.actor}{'  ' + s.note if s.note else ''}")


@gdpr_group.command("access")
@click.argument("subject")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for export.json, cover.html, cover.pdf and SHA256SUMS.")
@click.option("--from", "start", type=WHEN, help="Only events from this time (default: all).")
@click.option("--to", "end", type=WHEN, help="Only events before this time (default: all).")
@pass_ctx
def access(ctx: Context, subject: str, out_dir: str, start: datetime | None, end: datetime | None) -> None:
    """Every event about or by SUBJECT, both tiers, as JSON with a cover letter (the export is audited)."""
    if start and end and start >= end:
        raise click.UsageError("--from must be before --to")
    with ctx.pooled(errors=(StorageError, RenderError)) as pool:
        export = privacy.access_export(pool, cold_store(ctx.settings), ctx.settings, subject, cli_auditor(),
                                       requested_by=f"cli:{whoami()}", now=datetime.now(UTC), start=start, end=end)
        files = gdpr_access.write(export, out_dir)
    click.echo(f"{Path(out_dir) / 'export.json'}: {export.counts['events']} event(s) of {subject} "
               f"(sha256 {files['export.json']})")
    for event_type, n in export.counts["by_event_type"].items():
        click.echo(f"  {event_type}: {n}")
    click.echo(f"integrity: {export.proof.verdict if export.proof else 'no events, nothing to prove'}")


@gdpr_group.command("request")
@click.argument("subject")
@click.option("--basis", "lawful_basis", required=True,
              help="The lawful basis, e.g. 'GDPR Art. 17(1)(a): no longer necessary; ticket DPO-42'.")
@click.option("--note", help="Anything the approver should know.")
@pass_ctx
def request(ctx: Context, subject: str, lawful_basis: str, note: str | None) -> None:
    """Request the erasure of SUBJECT's events; another admin approves it (`gdpr approve`)."""
    with ctx.pooled(errors=(StorageError,)) as pool:
        req = gdpr.request(pool, subject, lawful_basis, cli_auditor(), note=note)
    _show(req)
    click.echo(f"next: another admin runs `auditwatch gdpr approve {req.request_id}`")


@gdpr_group.command("approve")
@click.argument("request_id")
@click.option("--note")
@pass_ctx
def approve(ctx: Context, request_id: str, note: str | None) -> None:
    """Approve a request (you must not be its requester)."""
    with ctx.pooled(usage_errors=(gdpr.ErasureRequestError,), errors=(StorageError,)) as pool:
        req = gdpr.approve(pool, _uuid(request_id), cli_auditor(), note=note)
    _show(req)
    click.echo(f"next: `auditwatch gdpr execute {req.request_id} --out DIR`")


@gdpr_group.command("execute")
@click.argument("request_id")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write certificate.json, .html and .pdf here too.")
@pass_ctx
def execute(ctx: Context, request_id: str, out_dir: str | None) -> None:
    """Erase an approved request's events in both tiers and issue its signed certificate."""
    with ctx.pooled(usage_errors=(gdpr.ErasureRequestError,), errors=(StorageError, ArchiveBusy, RenderError)) \
            as pool:
        done = privacy.execute(pool, cold_store(ctx.settings), ctx.settings, _uuid(request_id), cli_auditor(),
                               clock=lambda: datetime.now(UTC))
    cert = done.signed["certificate"]
    click.echo(f"erased {cert['erased']['count']} event(s), kept {cert['kept']['count']} "
               f"({', '.join(f'{k}: {v}' for k, v in cert['kept']['by_reason'].items()) or 'none'})")
    if out_dir:
        gdpr_certificate.write(done.signed, out_dir)
        click.echo(f"certificate: {Path(out_dir) / 'certificate.pdf'} and certificate.json")


@gdpr_group.command("list")
@click.option("--subject")
@pass_ctx
def list_requests(ctx: Context, subject: str | None) -> None:
    """Erasure requests, newest first, with their steps."""
    with ctx.pooled(errors=(StorageError,)) as pool:
        found = gdpr.list_requests(pool, subject=subject)
    if not found:
        click.echo("no erasure requests")
    for req in found:
        _show(req)


@gdpr_group.command("certificate")
@click.argument("request_id")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@pass_ctx
def certificate(ctx: Context, request_id: str, out_dir: str) -> None:
    """Write an executed request's signed certificate (JSON, HTML, PDF)."""
    with ctx.pooled(usage_errors=(gdpr.ErasureRequestError,), errors=(StorageError,)) as pool:
        req = gdpr.get(pool, _uuid(request_id))
    executed = req.by("executed")
    if executed is None or executed.certificate is None:
        raise click.UsageError(f"request {request_id} is {req.state}; it has a certificate once executed")
    gdpr_certificate.write(executed.certificate, out_dir)
    click.echo(f"{Path(out_dir) / 'certificate.json'} and certificate.pdf")


@gdpr_group.command("verify-certificate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", "public_key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The signer's public key file (the .pub beside the integrity signing key).")
def verify_certificate(path: str, public_key: str) -> None:
    """Check an erasure certificate with the public key alone. Exit 0: valid; 1: altered or another signer."""
    try:
        signed = json.loads(Path(path).read_text())
        keys = checkpoints.load_public(Path(public_key))
    except (ValueError, StorageError) as exc:
        raise click.UsageError(f"{exc}") from None
    try:
        cert = gdpr_certificate.verify(signed, keys)
    except gdpr_certificate.CertificateInvalid as exc:
        click.echo(f"INVALID: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(f"VALID: erasure of {cert['request']['subject']} (request {cert['request']['request_id']}), "
               f"{cert['erased']['count']} erased, {cert['kept']['count']} kept, executed {cert['executed_at']}")


@click.group(name="phi")
def phi_group() -> None:
    """Tokenised PHI (R11): reveal a token's value (audited)."""


@phi_group.command("reveal")
@click.argument("token")
@click.option("--reason", required=True, help="Why the value is needed (kept in the phi_revealed record).")
@pass_ctx
def reveal(ctx: Context, token: str, reason: str) -> None:
    """Print the value behind TOKEN (the CLI runs as the database owner: an admin's tool)."""
    with ctx.pooled(usage_errors=(privacy.UnknownToken, PhiKeyError), errors=(StorageError,)) as pool:
        value = privacy.reveal(pool, privacy.phi_key(ctx.settings), token, cli_auditor(), reason=reason)
    click.echo(json.dumps(value, ensure_ascii=False))
