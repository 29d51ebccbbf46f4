"""``auditwatch storage ...``: the edition, the rollups and compression."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from auditwatch.cli.context import Context, pass_ctx
from auditwatch.cli.integrity import WHEN
from storage.timescale import compression, db, rollups


@click.group()
def storage() -> None:
    """Storage tiers: rollups and what this edition offers."""


@storage.command("status")
@pass_ctx
def storage_status(ctx: Context) -> None:
    """The edition, what it offers, and the rollups' state."""
    with ctx.connect() as conn:
        info = db.server_info(conn)
    click.echo(f"edition:      {info.edition} (TimescaleDB {info.timescaledb_version})")
    if info.edition == "timescale":
        click.echo("rollups:      native continuous aggregates, refreshed by TimescaleDB policies")
        with ctx.connect() as conn:
            stats = compression.stats(conn)
        if stats:
            click.echo(f"compression:  {stats.compressed_chunks} of {stats.total_chunks} chunks compressed, "
                       f"{stats.bytes_before / 2**20:,.0f} MiB -> {stats.bytes_after / 2**20:,.0f} MiB "
                       "(policy: after 7 days)")
        else:
            click.echo("compression:  enabled, policy compresses chunks older than 7 days (none yet)")
    else:
        click.echo("rollups:      tables refreshed by `auditwatch worker` (the Apache edition has no "
                   "continuous aggregates)")
        click.echo("compression:  not available on the Apache edition; install the community edition "
                   "of TimescaleDB for a columnstore tier")
    with ctx.pooled() as pool:
        for r in rollups.status(pool):
            mark = r.watermark.isoformat() if r.watermark else ("by TimescaleDB" if r.native else "never refreshed")
            click.echo(f"  {r.rollup:10} rows {r.rows:>12,}   materialised up to {mark}")


@storage.command("refresh")
@click.option("--since", type=WHEN, default=None,
              help="Also recompute every rollup from the start of this hour, whole hours from the raw events, "
                   "e.g. 2024-05-01T12:00:00+00:00 (Apache edition; on the community edition TimescaleDB keeps "
                   "its aggregates itself, and this changes nothing).")
@pass_ctx
def storage_refresh(ctx: Context, since: datetime | None) -> None:
    """Bring the rollups up to date now (a backfill can take a while; progress is shown).

    With --since, rebuild them from then: the mend for rollups believed wrong, since a late event in an earlier
    hour only adds its minute's difference to that hour."""
    now = datetime.now(UTC)
    if since is not None and since >= now:
        raise click.BadParameter(f"{since.isoformat()} is not in the past; give the time the rollups should be "
                                 "rebuilt from", param_hint="--since")
    with ctx.pooled() as pool:
        result = rollups.refresh(pool, now=now, since=since,
                                 progress=lambda lo, hi: click.echo(f"  recomputed {lo:%Y-%m-%d %H:%M} .. "
                                                                    f"{hi:%Y-%m-%d %H:%M}", err=True))
    click.echo(f"rollups current to {result.watermark_1m.isoformat() if result.watermark_1m else '-'}")
