"""``auditwatch verify`` and ``auditwatch integrity ...``: tamper evidence from the command line."""

from __future__ import annotations

import base64
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import psycopg

from auditwatch import integrity as keys
from auditwatch.cli.context import Context, pass_ctx
from auditwatch.services import cold_store
from storage.errors import StorageError
from storage.integrity import checkpoints
from storage.timescale import sealing
from storage.timescale import verify as verification  # this module's own `verify` is the command


class _When(click.ParamType):
    name = "timestamp"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time, e.g. 2024-05-01 or 2024-05-01T12:00:00+00:00", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


WHEN = _When()


def _signing_key(ctx: Context):
    """The signing key, saying so when a project-local one is generated now."""
    path = keys.key_path(ctx.settings)
    fresh = not ctx.settings.integrity_signing_key and not path.exists()
    try:
        key = keys.signing_key(ctx.settings)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    if fresh:
        click.echo(f"generated a new integrity signing key at {path} (mode 0600). Back it up; for production set "
                   "AUDITWATCH_INTEGRITY_SIGNING_KEY or AUDITWATCH_INTEGRITY_SIGNING_KEY_FILE "
                   "(`auditwatch integrity keygen`).", err=True)
    return key


class _Progress:
    """A progress bar that learns its length from the first report."""

    def __init__(self) -> None:
        self.bar = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=max(total, 1), label="verifying", file=sys.stderr,
                                         show_pos=True, item_show_func=None)
            self.bar.__enter__()
        step = min(done, self.bar.length) - self.shown
        if step > 0:
            self.bar.update(step)
            self.shown += step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.command()
@click.option("--since", type=WHEN, help="Check the batches holding events from this time (ISO 8601; UTC if no zone).")
@click.option("--until", type=WHEN, help="... up to this time (exclusive).")
@click.option("--anchors", type=click.Path(exists=True, dir_okay=False),
              help="Checkpoints exported earlier (`integrity export-checkpoints`), kept off this machine.")
@click.option("--trust", multiple=True, help="Another trusted public key (base64), e.g. a rotated-out one.")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False),
              help="The signer's public key file (default: the `.pub` beside the signing key, if present).")
@pass_ctx
def verify(ctx: Context, since: datetime | None, until: datetime | None, anchors: str | None,
           trust: tuple[str, ...], public_key: str | None) -> None:
    """Recompute the hash chain, signed checkpoints and every batch of events; report the first broken link.

    Needs only public keys: the private signing key is neither read nor created.
    Exit status 0: intact. 1: tampering found (each problem says what and where).
    """
    if since and until and since >= until:
        raise click.UsageError("--since must be before --until")
    try:
        trusted = keys.verification_keys(ctx.settings, trust, public_key)
        exported = []
        if anchors:
            exported = [checkpoints.from_json_line(line) for line in Path(anchors).read_bytes().splitlines()
                        if line.strip()]
    except StorageError as exc:
        raise click.UsageError(str(exc)) from None
    pool = ctx.pool()
    progress = _Progress()
    try:
        cold = verification.cold_reader(pool, cold_store(ctx.settings))
        report = verification.verify(pool, trusted_keys=trusted, since=since, until=until, anchors=exported,
                                     progress=progress, cold=cold, now=datetime.now(UTC),
                                     checkpoint_every=timedelta(seconds=ctx.settings.integrity_checkpoint_seconds))
    except psycopg.errors.UndefinedTable as exc:
        raise click.ClickException(f"the database has no integrity tables ({exc.diag.message_primary}); "
                                   "run `auditwatch migrate`") from None
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
        pool.close()
    click.echo(f"chain:       {report.chain_length:,} batches linked")
    click.echo(f"checked:     {report.batches:,} batches, {report.events:,} events hashed, "
               f"{report.erased:,} lawful erasures, {report.expired_batches:,} batches expired by retention")
    click.echo(f"checkpoints: {report.checkpoints:,} signatures valid")
    for note in report.notes:
        click.echo(f"note:        {note}")
    if report.ok:
        click.secho("OK: no tampering found", fg="green", bold=True)
        return
    first = report.first
    click.secho(f"TAMPERING DETECTED: {len(report.problems) + report.suppressed} problem(s)", fg="red", bold=True,
                err=True)
    click.echo(f"first broken link [{first.kind}]: {first.message}", err=True)
    for p in report.problems[1:20]:
        click.echo(f"  [{p.kind}] {p.message}", err=True)
    if len(report.problems) + report.suppressed > 20:
        click.echo(f"  ... and {len(report.problems) + report.suppressed - 20} more", err=True)
    click.echo("Treat the database as compromised from the first broken link on: compare with a backup and "
               "with checkpoints exported off this machine.", err=True)
    sys.exit(1)


@click.group(name="integrity")
def integrity_group() -> None:
    """Signed checkpoints of the hash chain, and their key."""


@integrity_group.command("checkpoint")
@click.option("--force", is_flag=True, help="Sign even if nothing was sealed since the last checkpoint.")
@pass_ctx
def checkpoint(ctx: Context, force: bool) -> None:
    """Sign the chain head now (the worker does this every integrity_checkpoint_seconds)."""
    key = _signing_key(ctx)
    with ctx.pooled(errors=(StorageError,)) as pool:
        cp = sealing.write_checkpoint(pool, key, now=datetime.now(UTC), force=force,
                                      trusted=keys.trusted_keys(ctx.settings))
    if cp is None:
        click.echo("nothing sealed since the last checkpoint; use --force to sign again")
        return
    click.echo(f"signed checkpoint at chain position {cp.chain_pos} ({cp.events:,} events), "
               f"hash {cp.chain_hash.hex()[:16]}...")


@integrity_group.command("export-checkpoints")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@pass_ctx
def export_checkpoints(ctx: Context, path: str) -> None:
    """Write every signed checkpoint as JSON lines (`-` for stdout), to keep off this machine."""
    with ctx.pooled() as pool:
        found = sealing.list_checkpoints(pool)
    data = b"".join(cp.to_json_line() for cp in found)
    if path == "-":
        sys.stdout.buffer.write(data)
    else:
        Path(path).write_bytes(data)
    click.echo(f"exported {len(found)} checkpoints" + (f" to {path}" if path != "-" else ""), err=True)


@integrity_group.command("keygen")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the private key to this file (mode 0600).")
def keygen(out: str | None) -> None:
    """Make an Ed25519 signing key: the private part for settings, the public part for verifiers."""
    key = checkpoints.generate()
    public = checkpoints.public_bytes(key)
    if out:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise click.UsageError(f"{out} exists; choose another path (a key is never overwritten)") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(checkpoints.to_base64(key) + "\n")
        pub = checkpoints.public_path(Path(out))
        checkpoints.write_public(pub, key)
        click.echo(f"private key written to {out}; set AUDITWATCH_INTEGRITY_SIGNING_KEY_FILE={out}", err=True)
        click.echo(f"public key written to {pub} (for `verify --public-key {pub}`)", err=True)
    else:
        click.echo("private key (set AUDITWATCH_INTEGRITY_SIGNING_KEY to it; keep it secret):", err=True)
        click.echo(checkpoints.to_base64(key))
    click.echo(f"public key (give verifiers; `verify --trust`): {base64.b64encode(public).decode()}", err=True)
