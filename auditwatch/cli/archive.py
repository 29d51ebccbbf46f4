"""`auditwatch archive`, `retention` and `legal-hold`: the cold tier from the command line."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from auditwatch.cli.context import Context, pass_ctx, whoami
from auditwatch.services import cold_store
from storage.cold.errors import ArchiveError
from storage.cold.store import ColdStore
from storage.errors import HoldNotFound, LegalHoldError, StorageError
from storage.timescale import archive, legal_hold, retention, self_audit


def _store(ctx: Context) -> ColdStore:
    try:
        return cold_store(ctx.settings)
    except ArchiveError as exc:
        raise click.UsageError(str(exc)) from None


def _actor() -> str:
    return f"cli:{whoami()}"


def _audit() -> self_audit.Auditor:
    return self_audit.auditor(_actor(), lambda: datetime.now(UTC), source="auditwatch-cli")


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.UsageError(f"{name} {value!r} is not an ISO 8601 time; write e.g. 2024-01-31T00:00:00Z") from None
    if moment.tzinfo is None:
        raise click.UsageError(f"{name} {value!r} has no time zone; add one, e.g. 2024-01-31T00:00:00Z")
    return moment


# -- archive ----------------------------------------------------------------------------------------

@click.group(name="archive")
def archive_group() -> None:
    """The cold tier: Parquet files of chunks past hot retention."""


@archive_group.command("run")
@pass_ctx
def archive_run(ctx: Context) -> None:
    """Archive every chunk past hot retention (skipping held ones), then drop it; safe to rerun."""
    store, now = _store(ctx), datetime.now(UTC)
    with ctx.pooled(errors=(StorageError,)) as pool:
        with pool.connection() as conn:
            policy = retention.load_policy(conn)
        chunks = archive.eligible(pool, now=now, hot_days=policy.hot_days)
        click.echo(f"{len(chunks)} chunk(s) older than {policy.hot_days} days; archive root {store.root}", err=True)
        with click.progressbar(length=len(chunks), label="archiving", file=sys.stderr) as bar:
            result = archive.run(pool, store, now=now, hot_days=policy.hot_days, audit=_audit(),
                                 progress=lambda chunk, outcome: bar.update(1))
    click.echo(f"archived {len(result.archived)} chunk(s), {result.rows:,} rows in {len(result.files)} file(s); "
               f"{len(result.held)} kept hot by legal holds; {result.repaired} leftover(s) repaired")
    for chunk, why in result.skipped:
        click.echo(f"  skipped {chunk}: {why}", err=True)
    if result.skipped:
        sys.exit(2)


@archive_group.command("status")
@pass_ctx
def archive_status(ctx: Context) -> None:
    """What the cold tier holds and what waits to be archived."""
    store, pool = _store(ctx), ctx.pool()
    try:
        s = archive.summary(pool)
        with pool.connection() as conn:
            policy = retention.load_policy(conn)
        waiting = archive.eligible(pool, now=datetime.now(UTC), hot_days=policy.hot_days)
    finally:
        pool.close()
    click.echo(f"archive root:   {store.root}")
    click.echo(f"policy:         hot {policy.hot_days} days, cold {policy.cold_years} years"
               + "".join(f", {t} {y} years" for t, y in sorted(policy.cold_years_by_type.items())))
    click.echo(f"live files:     {s.live_files:,} ({s.live_rows:,} rows, {s.live_bytes / 2**20:,.1f} MiB)")
    click.echo(f"days:           {s.oldest_day or '-'} .. {s.newest_day or '-'}")
    click.echo(f"by state:       {', '.join(f'{k} {v}' for k, v in sorted(s.files_by_state.items())) or '-'}")
    click.echo(f"last archived:  {s.last_completed_at.isoformat() if s.last_completed_at else 'never'}")
    click.echo(f"awaiting:       {len(waiting)} chunk(s) past hot retention")
    click.echo(f"legal holds:    {s.active_holds} active")


# -- retention --------------------------------------------------------------------------------------

@click.group(name="retention")
def retention_group() -> None:
    """Cold retention: delete archived events past their retention (legal holds are honoured)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; change nothing.")
@pass_ctx
def retention_run(ctx: Context, dry_run: bool) -> None:
    """Delete (or rewrite without) archived events past cold retention."""
    store, now = _store(ctx), datetime.now(UTC)
    with ctx.pooled(errors=(StorageError,)) as pool:
        plan = retention.plan(pool, store, now=now)
        if dry_run:
            _show_plan(plan)
            return
        with click.progressbar(length=len(plan.actions), label="expiring", file=sys.stderr) as bar:
            result = retention.apply(pool, store, now=now, audit=_audit(), progress=lambda action: bar.update(1))
    click.echo(f"deleted {len(result.deleted)} file(s), rewrote {len(result.rewritten)} without expired types: "
               f"{result.rows:,} rows removed; {len(result.held)} file(s) kept by legal holds")
    for action in result.problems:
        click.echo(f"  not done: {action.file.path}: {action.problem or 'legal holds changed; rerun'}", err=True)
    if result.problems:
        sys.exit(2)


def _show_plan(plan: retention.RetentionPlan) -> None:
    click.echo(f"dry run at {plan.now.isoformat()}: policy cold {plan.policy.cold_years} years"
               + "".join(f", {t} {y}" for t, y in sorted(plan.policy.cold_years_by_type.items())))
    if not plan.actions:
        click.echo("nothing has outlived its retention")
        return
    for a in plan.actions:
        types = ", ".join(f"{t} {n}" for t, n in sorted(a.expired_by_type.items()))
        held = f", {a.held_rows} held" if a.held_rows else ""
        click.echo(f"  {a.file.day}  {a.action:8} {a.expired_rows:>8,} rows ({types or '-'}){held}, "
                   f"{a.kept_rows:,} kept  {a.file.path}")
    click.echo(f"would remove {plan.rows:,} rows")


# -- legal holds ------------------------------------------------------------------------------------

@click.group(name="legal-hold")
def hold_group() -> None:
    """Legal holds: keep matching events from archiving-away and deletion (audited)."""


@hold_group.command("add")
@click.option("--reason", required=True, help="Why the hold is placed (recorded and audited).")
@click.option("--case", "case_id", help="Hold events whose metadata.case_id is this.")
@click.option("--user", "user_id", help="Hold this user's events.")
@click.option("--start", help="Hold events at or after this time (ISO 8601 with a zone).")
@click.option("--end", help="Hold events before this time (ISO 8601 with a zone).")
@pass_ctx
def hold_add(ctx: Context, reason: str, case_id: str | None, user_id: str | None, start: str | None,
             end: str | None) -> None:
    """Place a hold; criteria are ANDed and at least one is needed."""
    start_time, end_time = _time(start, "--start"), _time(end, "--end")
    with ctx.pooled(usage_errors=(LegalHoldError,)) as pool:
        hold = legal_hold.place(pool, reason=reason, created_by=_actor(), audit=_audit(), case_id=case_id,
                                user_id=user_id, start_time=start_time, end_time=end_time)
    click.echo(f"placed legal hold {hold.hold_id}: {hold.scope()}")


@hold_group.command("list")
@click.option("--all", "include_released", is_flag=True, help="Include released holds.")
@pass_ctx
def hold_list(ctx: Context, include_released: bool) -> None:
    with ctx.pooled() as pool:
        holds = legal_hold.list_holds(pool, include_released=include_released)
    if not holds:
        click.echo("no legal holds" + ("" if include_released else " in force"))
    for h in holds:
        state = "active" if h.active else f"released {h.released_at:%Y-%m-%d} by {h.released_by}"
        click.echo(f"{h.hold_id:>5}  {state:30} {h.scope()}  — {h.reason} ({h.created_by}, {h.created_at:%Y-%m-%d})")


@hold_group.command("release")
@click.argument("hold_id", type=int)
@click.option("--reason", required=True, help="Why the hold is released (recorded and audited).")
@pass_ctx
def hold_release(ctx: Context, hold_id: int, reason: str) -> None:
    with ctx.pooled(usage_errors=(HoldNotFound, LegalHoldError)) as pool:
        hold = legal_hold.release(pool, hold_id, released_by=_actor(), reason=reason, audit=_audit())
    click.echo(f"released legal hold {hold.hold_id} ({hold.scope()})")
