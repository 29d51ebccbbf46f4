"""``auditwatch serve``, ``worker`` and ``up``: running the platform."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from auditwatch.cli import shutdown
from auditwatch.cli.context import Context, pass_ctx
from auditwatch.cli.db import apply_migrations, start_database
from auditwatch.cli.foreground import foreground_group
from storage.auth import Role
from storage.errors import StorageError
from storage.timescale import catalog


@click.command()
@click.option("--host", help="Address to listen on (default from settings: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8000).")
@click.option("--workers", type=int, help="Worker processes.")
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API with gunicorn."""
    from auditwatch.server import serve as run

    shutdown.dump_stacks_on_signal()  # inherited by the workers gunicorn forks
    changes = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    run(ctx.settings.replace(**changes))


@click.command()
@pass_ctx
def worker(ctx: Context) -> None:
    """Run the scheduled jobs (rollup refresh on the Apache edition)."""
    from auditwatch.worker import run

    shutdown.dump_stacks_on_signal()
    try:
        run(ctx.settings)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option("--no-demo", is_flag=True, help="Do not start the demo traffic producer.")
@click.option("--keep-db", is_flag=True, help="Leave the embedded database running on exit.")
@pass_ctx
def up(ctx: Context, no_demo: bool, keep_db: bool) -> None:
    """Bring the platform up: database, schema, API server and demo traffic."""
    # Ctrl-C then reaches this process group only, not `make`: `make up` ends with status 0.
    with foreground_group():
        _up(ctx, no_demo, keep_db)


def _up(ctx: Context, no_demo: bool, keep_db: bool) -> None:
    from auditwatch.alerting import receiver_settings

    settings = ctx.settings
    if settings.embedded:
        start_database(ctx)
    apply_migrations(ctx)
    keyfile = settings.resolved_data_dir() / "demo-keys.json"
    admin_key, system_key = _demo_keys(ctx, keyfile)
    base = f"http://{settings.host}:{settings.port}"
    env = {**os.environ, "AUDITWATCH_DEMO_KEY": system_key, "AUDITWATCH_DEMO_ADMIN_KEY": admin_key}
    shutdown.become_subreaper()  # after the database: its postmaster is not ours to stop (shutdown.py)
    server = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "serve"], env=env)
    children = [server, subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "worker"], env=env),
                subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "syslog"], env=env)]
    try:
        _wait_healthy(base, server)
        if not no_demo:
            children.append(subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "demo", "--url", base], env=env))
        click.secho("\nAuditwatch is up.", bold=True)
        click.echo(f"  API:        {base}/api/v1/logs   (OpenAPI: {base}/api/v1/openapi.json)")
        click.echo(f"  dashboard:  {base}/dashboard/   (sign in with the admin key)")
        click.echo(f"  admin key:  {admin_key}")
        click.echo(f"  keys file:  {keyfile}")
        click.echo(f"  syslog:     udp/tcp {settings.syslog_host}:{settings.syslog_udp_port}   (try: logger --server "
                   f"{settings.syslog_host} --port {settings.syslog_udp_port} --udp 'hello')")
        click.echo(f"  alerts:     {receiver_settings(settings).sink_path} (README: Alerting, to page Slack "
                   "and PagerDuty)")
        click.echo(f"  try:        curl -H 'Authorization: Bearer {admin_key}' '{base}/api/v1/logs?limit=5'")
        click.echo("  Ctrl-C stops everything.\n")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [c for c in children if c.poll() not in (None, 0)]
        if failed:
            raise click.ClickException(f"a component exited with status {failed[0].returncode}; see its output above")
    except KeyboardInterrupt:
        # Ctrl-C reached the foreground group (this process and every component; not make, see
        # foreground.py): a clean shutdown follows, and `up` exits 0, so `make up` does too.
        click.echo("\nstopping ...")
    finally:
        # A second Ctrl-C while the components stop must not cut the shutdown (and the database's stop) short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Every component, and whatever they leave behind (an orphaned gunicorn worker), within a fixed budget.
        shutdown.stop(children)
        if settings.embedded and not keep_db:
            try:
                ctx.cluster().down()
            except StorageError as exc:
                raise click.ClickException(f"the embedded database did not stop cleanly: {exc}") from None
            click.echo("database stopped")


def _wait_healthy(base: str, server: subprocess.Popen, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise click.ClickException(f"the server exited with status {server.returncode}; see its output above "
                                       f"(is port {base.rsplit(':', 1)[1]} in use? set AUDITWATCH_PORT)")
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"the server did not answer on {base} within {timeout:.0f} s")


def _demo_keys(ctx: Context, keyfile: Path) -> tuple[str, str]:
    """The admin and system keys of this data directory, created on first use."""
    with ctx.pooled() as pool:
        if keyfile.exists():
            saved = json.loads(keyfile.read_text())
            if all(catalog.authenticate(pool, saved.get(k, "")) for k in ("admin", "system")):
                return saved["admin"], saved["system"]
        suffix = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        _, admin = catalog.create_key(pool, f"local-admin-{suffix}", Role.ADMIN, created_by="auditwatch-up")
        _, system = catalog.create_key(pool, f"demo-producer-{suffix}", Role.SYSTEM, created_by="auditwatch-up")
    keyfile.parent.mkdir(parents=True, exist_ok=True)
    keyfile.touch(mode=0o600)
    keyfile.write_text(json.dumps({"admin": admin, "system": system}, indent=2))
    return admin, system
