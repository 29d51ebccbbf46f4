"""Ingest from the shell: ``auditwatch ingest FILE``, ``syslog``, ``writer`` and ``deadletters``."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import orjson

from auditwatch import health, logs
from auditwatch.cli import shutdown
from auditwatch.cli.context import Context, pass_ctx, whoami
from auditwatch.server import settle
from auditwatch.services import Services, bus_config
from ingest.errors import IngestError
from ingest.stopsignals import ignore_stop_signals, stop_on_signals
from storage.errors import StorageError


def _services(ctx: Context) -> Services:
    try:
        return Services.open(ctx.settings, url=ctx.url)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("ingest")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=False))
@click.option("--register-users", is_flag=True, help="Register unknown users instead of rejecting their events.")
@click.option("--batch-size", default=5000, show_default=True)
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False),
              help="Write rejected lines' errors here as NDJSON (default: print the first 20).")
@pass_ctx
def ingest_file(ctx: Context, path: str, register_users: bool, batch_size: int, errors_path: str | None) -> None:
    """Bulk-load events from an NDJSON file or a JSON array, through the same validation.

    A backfill: R2's clock window into the past does not apply, and neither does R6.
    """
    from ingest.errors import EventRejected
    from ingest.pipeline import RequestContext

    settings = ctx.settings.replace(pool_max=4)
    try:
        services = Services.open(settings, url=ctx.url)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    req = RequestContext(principal=f"cli:{whoami()}", backfill=True, rate_limited=False,
                         register_users=register_users or None, source=None)
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    shown = 0
    error_file = open(errors_path, "wb") if errors_path else None  # noqa: SIM115
    size = Path(path).stat().st_size

    def flush(batch: list, first_line: int) -> None:
        nonlocal shown
        result = services.pipeline.ingest([item for _, item in batch], req)
        totals["accepted"] += result.accepted
        totals["duplicates"] += result.duplicates
        totals["rejected"] += result.rejected
        for r in result.results:
            if r.error is None:
                continue
            line = batch[r.index][0]
            record = {"line": line, "event_id": r.event_id, **r.error.to_json()}
            if error_file:
                error_file.write(orjson.dumps(record) + b"\n")
            elif shown < 20:
                click.echo(f"\nline {line}: {r.error.code} ({r.error.field}): {r.error.message}", err=True)
                shown += 1

    try:
        with open(path, "rb") as fh, click.progressbar(length=size, label="ingesting", file=sys.stderr) as bar:
            head = fh.read(1)
            fh.seek(0)
            batch: list = []
            if head == b"[":
                try:
                    items = orjson.loads(fh.read())
                except orjson.JSONDecodeError as exc:
                    raise click.ClickException(f"{path} is not valid JSON: {exc}") from None
                if not isinstance(items, list):
                    raise click.ClickException(f"{path}: a JSON file must hold an array of events")
                for i in range(0, len(items), batch_size):
                    flush([(n + 1, it) for n, it in enumerate(items[i:i + batch_size], start=i)], i + 1)
                bar.update(size)
            else:
                for number, line in enumerate(fh, start=1):
                    bar.update(len(line))
                    if not line.strip():
                        continue
                    try:
                        batch.append((number, orjson.loads(line)))
                    except orjson.JSONDecodeError as exc:
                        batch.append((number, EventRejected("malformed_json", f"not valid JSON: {exc}")))
                    if len(batch) >= batch_size:
                        flush(batch, batch[0][0])
                        batch = []
                if batch:
                    flush(batch, batch[0][0])
    finally:
        services.close()
        if error_file:
            error_file.close()
    click.echo(f"accepted {totals['accepted']}, duplicates {totals['duplicates']}, rejected {totals['rejected']}")
    if totals["rejected"]:
        sys.exit(2)


@click.command("syslog")
@click.option("--host", help="Address to listen on (default from settings: 127.0.0.1).")
@click.option("--udp-port", type=int, help="UDP port (default 5514; 0 turns UDP off).")
@click.option("--tcp-port", type=int, help="TCP port (default 5514; 0 turns TCP off).")
@click.option("--tls-port", type=int, help="TLS port (default off; needs syslog_tls_cert and syslog_tls_key).")
@click.option("--processes", type=click.IntRange(1, 64),
              help="Store processes (default from settings: 1). 2 or more parse and write in worker processes "
                   "while this one reads the sockets: more lines/s on a machine with cores to spare.")
@pass_ctx
def syslog(ctx: Context, host: str | None, udp_port: int | None, tcp_port: int | None, tls_port: int | None,
           processes: int | None) -> None:
    """Receive syslog (RFC 5424/3164 over UDP, TCP and TLS) and store it as audit events."""
    shutdown.dump_stacks_on_signal()
    from ingest.metrics import SyslogCollector
    from ingest.syslog.header import SyslogError
    from ingest.syslog.ingestor import SyslogIngestor, parse_zones
    from ingest.syslog.listener import ListenerConfig, SyslogListener, run_forever, server_ssl_context

    s = ctx.settings.replace(**{k: v for k, v in {"syslog_host": host, "syslog_udp_port": udp_port,
                                                  "syslog_tcp_port": tcp_port, "syslog_tls_port": tls_port,
                                                  "syslog_processes": processes}.items()
                                if v is not None})
    ssl_context = None
    if s.syslog_tls_port:
        if not (s.syslog_tls_cert and s.syslog_tls_key):
            raise click.UsageError("a TLS port needs AUDITWATCH_SYSLOG_TLS_CERT and AUDITWATCH_SYSLOG_TLS_KEY "
                                   "(PEM files)")
        try:
            ssl_context = server_ssl_context(s.syslog_tls_cert, s.syslog_tls_key)
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"cannot load the TLS certificate or key: {exc}") from None
    if not (s.syslog_udp_port or s.syslog_tcp_port or s.syslog_tls_port):
        raise click.UsageError("every syslog port is 0: set at least one of --udp-port, --tcp-port, --tls-port")
    try:
        zones = parse_zones(s.syslog_source_zones)
    except SyslogError as exc:
        raise click.UsageError(f"syslog_source_zones: {exc.message}") from None
    logs.configure(s.log_format)
    services = _services(ctx.__class__(s))
    try:
        ingestor = SyslogIngestor(services.pipeline, services.pool, zone=s.syslog_zone, zones=zones,
                                  unknown_users=s.syslog_unknown_users)  # type: ignore[arg-type]
    except SyslogError as exc:
        services.close()
        raise click.UsageError(f"syslog_zone: {exc.message}") from None
    config = ListenerConfig(
        host=s.syslog_host, udp_port=s.syslog_udp_port or None, tcp_port=s.syslog_tcp_port or None,
        tls_port=s.syslog_tls_port or None, ssl_context=ssl_context, max_message_bytes=s.syslog_max_message_bytes,
        queue_lines=s.syslog_queue_lines, max_connections=s.syslog_max_connections)
    path = "JetStream bus" if services.bus else "database"
    counted: Any = ingestor
    if s.syslog_processes > 1:  # the ingestor above only checked the zones; each worker builds its own
        from auditwatch import syslog_workers

        counted = syslog_workers.Totals()
        listener = SyslogListener(
            replace(config, store_batches=2 * s.syslog_processes), syslog_workers.handle,
            fallback=syslog_workers.fallback, stored=counted.add,
            executor=lambda: syslog_workers.pool(s, ctx.url, zones))
        path += f" ({s.syslog_processes} store processes)"
    else:
        listener = SyslogListener(config, ingestor, fallback=ingestor.raw)

    last: list[str] = []

    def report(stats) -> None:
        line = (f"syslog {stats.ports} → {path}: received {stats.received}, stored {counted.totals['created']}, "
                f"duplicates {counted.totals['duplicate']}, refused {counted.totals['rejected']}, "
                f"dropped (UDP, queue full) {stats.dropped}, dropped (UDP, kernel buffer full) "
                f"{stats.udp_kernel_dropped}, oversized {stats.oversized}")
        if last != [line]:  # progress when something moved, not the same line every few seconds
            click.echo(line, err=True)
            last[:] = [line]

    stop_ops = health.serve_ops(s.ops_host, s.syslog_ops_port, pool=services.pool, bus=services.bus,
                                collectors=(SyslogCollector(listener),), extra={"listening": listener.not_listening})
    settle(services.pipeline)
    try:
        run_forever(listener, report=report)
    except OSError as exc:
        raise click.ClickException(f"cannot listen: {exc} (is the port in use? set AUDITWATCH_SYSLOG_UDP_PORT / "
                                   "AUDITWATCH_SYSLOG_TCP_PORT)") from None
    finally:
        stop_ops()
        services.close()
        ignore_stop_signals()  # a late SIGTERM or Ctrl-C must not kill the exit (ingest/stopsignals.py)


@click.command("writer")
@pass_ctx
def writer(ctx: Context) -> None:
    """Consume the JetStream bus into TimescaleDB (run any number of these)."""
    shutdown.dump_stacks_on_signal()
    from ingest.bus import BusClient, BusWriter
    from ingest.metrics import WriterCollector
    from storage.timescale import db
    from storage.timescale.writer import EventWriter

    config = bus_config(ctx.settings)
    if config is None:
        raise click.UsageError("no bus configured: set AUDITWATCH_BUS_URL=nats://host:4222 (without a bus the "
                               "API and syslog nodes write to the database themselves)")
    logs.configure(ctx.settings.log_format)
    try:
        pool = db.open_pool(ctx.url, min_size=1, max_size=4, name="writer")
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    bus_writer = BusWriter(config, EventWriter(pool))
    ops_bus = BusClient(config)  # /readyz's bus check
    stop_ops = health.serve_ops(ctx.settings.ops_host, ctx.settings.writer_ops_port, pool=pool,
                                bus=ops_bus, collectors=(WriterCollector(bus_writer),))
    settle()
    last = [0]

    def progress(stats) -> None:
        if stats.stored + stats.duplicates - last[0] >= 10_000 or stats.batches % 100 == 0:
            last[0] = stats.stored + stats.duplicates
            click.echo(f"writer: stored {stats.stored}, duplicates {stats.duplicates}, retried {stats.retried}, "
                       f"dead-lettered {stats.dead_lettered}", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        click.echo(f"writer: consuming {config.stream} from {config.url}", err=True)
        await bus_writer.run(stop, on_batch=progress)

    try:
        asyncio.run(main())
    except OSError as exc:
        raise click.ClickException(f"cannot reach the bus at {config.url}: {exc}") from None
    finally:
        stop_ops()
        ops_bus.close()
        pool.close()
        ignore_stop_signals()  # a supervisor's late SIGTERM must not kill the exit (ingest/stopsignals.py)
    progress(bus_writer.stats)


@click.group("deadletters")
def deadletters() -> None:
    """Bus messages that failed to store 3 times (R10): list and replay."""


def _dead_letters(ctx: Context):
    from ingest.bus import BusClient, DeadLetters

    config = bus_config(ctx.settings)
    if config is None:
        raise click.UsageError("no bus configured: set AUDITWATCH_BUS_URL (dead letters exist only with a bus)")
    return DeadLetters(BusClient(config))


@deadletters.command("list")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_ctx
def deadletters_list(ctx: Context, limit: int, as_json: bool) -> None:
    letters = _dead_letters(ctx)
    try:
        found = letters.list(limit=limit)
    except IngestError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        letters.close()
    for d in found:
        if as_json:
            click.echo(orjson.dumps(d.to_json()).decode())
        else:
            what = (f"{d.event['event_type']} {d.event['event_id']}" if d.event else f"undecodable: {d.raw!r:.60}")
            click.echo(f"{d.seq:>8}  {d.time:%Y-%m-%d %H:%M:%S}  x{d.deliveries}  {what}  — {d.error}")
    if not as_json:
        click.echo(f"{len(found)} dead letter(s)", err=True)


@deadletters.command("replay")
@click.argument("seqs", nargs=-1, type=int)
@pass_ctx
def deadletters_replay(ctx: Context, seqs: tuple[int, ...]) -> None:
    """Put dead letters (all, or these sequence numbers) back on the bus for the writers."""
    letters = _dead_letters(ctx)
    try:
        total = len(seqs) if seqs else len(letters.list(limit=1_000_000))
        with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
            done = letters.replay(list(seqs) if seqs else None, progress=bar.update)
    except IngestError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        letters.close()
    click.echo(f"replayed {done} dead letter(s)")


COMMANDS = (ingest_file, syslog, writer, deadletters)
