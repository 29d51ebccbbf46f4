"""``auditwatch storage ...``: the edition, the rollups and compression."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from auditwatch.cli.context import Context, pass_ctx
from storage.timescale import db


@click.group()
def storage() -> None:
    """Storage tiers: rollups and what this edition offers."""


@storage.command("status")
@pass_ctx
def storage_status(ctx: Context) -> None:
    """The edition, what it offers, and the rollups' state."""
    from storage.timescale import rollups

    with ctx.connect() as conn:
        info = db.server_info(conn)
    click.echo(f"edition:      {info.edition} (TimescaleDB {info.timescaledb_version})")
    if info.edition == "timescale":
        click.echo("rollups:      native continuous aggregates, refreshed by TimescaleDB policies")
        with ctx.connect() as conn:
            stats = conn.execute(
                "SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes, "
                "after_compression_total_bytes FROM hypertable_compression_stats('audit_events')").fetchone()
        if stats and stats[1]:
            click.echo(f"compression:  {stats[1]} of {stats[0]} chunks compressed, "
                       f"{stats[2] / 2**20:,.0f} MiB -> {stats[3] / 2**20:,.0f} MiB (policy: after 7 days)")
        else:
            click.echo("compression:  enabled, policy compresses chunks older than 7 days (none yet)")
    else:
        click.echo("rollups:      tables refreshed by `auditwatch worker` (the Apache edition has no "
                   "continuous aggregates)")
        click.echo("compression:  not available on the Apache edition; install the community edition "
                   "of TimescaleDB for a columnstore tier")
    pool = ctx.pool()
    try:
        for r in rollups.status(pool):
            mark = r.watermark.isoformat() if r.watermark else ("by TimescaleDB" if r.native else "never refreshed")
            click.echo(f"  {r.rollup:10} rows {r.rows:>12,}   materialised up to {mark}")
    finally:
        pool.close()


@storage.command("refresh")
@pass_ctx
def storage_refresh(ctx: Context) -> None:
    """Bring the rollups up to date now (a backfill can take a while; progress is shown)."""
    from storage.timescale import rollups

    pool = ctx.pool()
    try:
        result = rollups.refresh(pool, now=datetime.now(UTC),
                                 progress=lambda lo, hi: click.echo(f"  recomputed {lo:%Y-%m-%d %H:%M} .. "
                                                                    f"{hi:%Y-%m-%d %H:%M}", err=True))
    finally:
        pool.close()
    click.echo(f"rollups current to {result.watermark_1m.isoformat() if result.watermark_1m else '-'}")
