"""``auditwatch seed-demo``: a labelled demo history for notebooks, evaluation and an empty store."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import click

from auditwatch.cli.context import Context, pass_ctx
from auditwatch.services import Services
from ingest.seed import seed_demo
from storage.errors import StorageError


@click.command(name="seed-demo")
@click.option("--days", type=click.FloatRange(min=1 / 24, max=90), default=3.0, show_default=True,
              help="How much history to generate, ending at --end.")
@click.option("--end", "end_text", metavar="ISO-TIME",
              help="The end of the history (default: the start of the current hour, UTC).")
@click.option("--seed", type=int, default=7, show_default=True, help="The demo generator's seed.")
@click.option("--users", "n_users", type=click.IntRange(min=60), default=300, show_default=True)
@click.option("--service-accounts", type=click.IntRange(min=0), default=8, show_default=True)
@pass_ctx
def seed_demo_command(ctx: Context, days: float, end_text: str | None, seed: int, n_users: int,
                      service_accounts: int) -> None:
    """Load demo traffic with injected, labelled attacks through the ingest pipeline (a backfill).

    Safe to run twice: the generator is seeded, so a rerun reports duplicates and stores nothing new.
    """
    now = datetime.now(UTC)
    if end_text:
        try:
            end = datetime.fromisoformat(end_text)
        except ValueError:
            raise click.UsageError(f"--end {end_text!r} is not an ISO 8601 time such as 2024-05-04T00:00Z") from None
        if end.tzinfo is None:
            raise click.UsageError("--end needs a time zone, e.g. a trailing Z for UTC")
        if end > now:
            raise click.UsageError("--end is in the future; the demo history must end at or before now (R2)")
    else:
        end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    hours = max(1, round((end - start) / timedelta(hours=1)))
    try:
        services = Services.open(ctx.settings.replace(pool_max=4, pool_min=1), url=ctx.url)
        try:
            with click.progressbar(length=hours, label="seeding", file=sys.stderr) as bar:
                done = [start]

                def advance(until: datetime) -> None:
                    bar.update(round((until - done[0]) / timedelta(hours=1)))
                    done[0] = until

                result = seed_demo(services.pool, pipeline=services.pipeline, start=start, end=end, now=now,
                                   seed=seed, users=n_users, service_accounts=service_accounts, progress=advance)
        finally:
            services.close()
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{result.accepted:,} events stored, {result.duplicates:,} already there, "
               f"{result.rejected:,} rejected; {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    click.echo(f"{len(result.incidents)} injected incidents (labels):")
    for incident in result.incidents:
        click.echo(f"  {incident.start:%Y-%m-%d %H:%M}  {incident.scenario:<26} "
                   f"user={incident.user_id or '-'} ip={incident.source_ip or '-'}")
