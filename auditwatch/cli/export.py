"""`auditwatch export`: stored events to a file or stdout, as CSV, NDJSON or OCSF 1.1 NDJSON."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime

import click

from auditwatch.cli.archive import _time  # one parser of CLI times (ISO 8601 with a zone)
from auditwatch.cli.context import Context, pass_ctx, whoami
from storage import export as export_mod
from storage import ocsf
from storage.events import Outcome
from storage.timescale import catalog, queries, self_audit
from storage.timescale.queries import EventQuery


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(export_mod.FORMATS), default="ndjson", show_default=True,
              help="ocsf: one OCSF 1.1 event per line, of the class the event-type catalogue gives each type.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-",
              help="A file to write (default: stdout).")
@click.option("--since", help="Only events at or after this ISO 8601 time.")
@click.option("--until", help="Only events before this ISO 8601 time.")
@click.option("--user", "user_id", help="Only this user's events.")
@click.option("--type", "event_types", multiple=True, help="Only these event types (repeatable).")
@click.option("--outcome", type=click.Choice([o.value for o in Outcome]))
@click.option("--max-rows", type=int, default=None, help="Stop after this many events (default: the setting).")
@pass_ctx
def export(ctx: Context, fmt: str, output: str, since: str | None, until: str | None, user_id: str | None,
           event_types: tuple[str, ...], outcome: str | None, max_rows: int | None) -> None:
    """Stream stored events, newest first, as the API's /api/v1/logs/export does (and audited like it)."""
    query = EventQuery(start_time=_time(since, "--since"), end_time=_time(until, "--until"), user_id=user_id,
                       event_types=event_types, outcome=Outcome(outcome) if outcome else None)
    audit = self_audit.auditor(f"cli:{whoami()}", lambda: datetime.now(UTC), source="auditwatch-cli")
    with ctx.pooled() as pool:
        with pool.connection() as conn, conn.transaction():
            self_audit.store(conn, audit("export_requested", {"format": fmt, "filters": query.filters(),
                                                              "route": "cli"}, None))
        types = ocsf.types_from_catalogue(catalog.event_types(pool)) if fmt == "ocsf" else None
        rows = queries.stream(pool, query, max_rows=max_rows or ctx.settings.max_export_rows)
        body = export_mod.lines(rows, fmt, ocsf_types=types)
        with contextlib.ExitStack() as stack:
            out = sys.stdout.buffer if output == "-" else stack.enter_context(open(output, "wb"))
            for chunk in body:
                out.write(chunk.encode() if isinstance(chunk, str) else chunk)
            out.flush()
    if output != "-":
        click.echo(f"wrote {output} ({fmt})", err=True)
