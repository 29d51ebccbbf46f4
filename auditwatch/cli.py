"""The ``auditwatch`` command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import orjson
import psycopg

from auditwatch import settings as settings_mod
from auditwatch.services import Services, database_url
from auditwatch.settings import Settings, SettingsError
from storage.auth import Role
from storage.errors import StorageError
from storage.timescale import catalog, db, migrations, roles, self_audit
from storage.timescale.cluster import LocalCluster
from storage.timescale.writer import EventWriter


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def url(self) -> str:
        return database_url(self.settings)

    def cluster(self) -> LocalCluster:
        return LocalCluster(self.settings.resolved_data_dir(), port=self.settings.db_port)

    def connect(self) -> psycopg.Connection:
        try:
            return db.connect(self.url, autocommit=True)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from None

    def pool(self):
        try:
            return db.open_pool(self.url, min_size=1, max_size=4)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from None


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option("--config", type=click.Path(dir_okay=False), envvar="AUDITWATCH_CONFIG",
              help="A TOML settings file (default: ./auditwatch.toml if present).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Auditwatch: audit logging and security analytics on TimescaleDB."""
    try:
        ctx.obj = Context(settings_mod.load(config_file=config or "auto"))
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


# -- database -------------------------------------------------------------------------------------

@main.group(name="db")
def db_group() -> None:
    """The embedded, project-local TimescaleDB."""


def _require_embedded(ctx: Context) -> None:
    if not ctx.settings.embedded:
        raise click.UsageError("AUDITWATCH_DATABASE_URL points at an external server; `db up/down` manage only "
                               "the embedded database. Unset it to use the embedded one.")


@db_group.command("up")
@pass_ctx
def db_up(ctx: Context) -> None:
    """Install (if missing), initialise and start the embedded database."""
    _require_embedded(ctx)
    _db_up(ctx)


def _db_up(ctx: Context) -> None:
    cluster = ctx.cluster()
    click.echo(f"Starting the embedded TimescaleDB in {cluster.pgdata} ...")
    try:
        cluster.up()
    except (StorageError, subprocess.CalledProcessError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Database ready: {cluster.url}")


@db_group.command("down")
@pass_ctx
def db_down(ctx: Context) -> None:
    """Stop the embedded database (its data stays)."""
    _require_embedded(ctx)
    ctx.cluster().down()
    click.echo("Database stopped.")


@db_group.command("status")
@pass_ctx
def db_status(ctx: Context) -> None:
    """Server and TimescaleDB versions, the edition, and where the data lives."""
    if ctx.settings.embedded:
        cluster = ctx.cluster()
        click.echo(f"data directory:      {cluster.pgdata}")
        if not cluster.is_running():
            click.echo("state:               stopped (start it with `auditwatch db up`)")
            sys.exit(1)
    else:
        click.echo("data directory:      (external server)")
    with ctx.connect() as conn:
        info = db.server_info(conn)
        version = migrations.current_version(conn)
    click.echo("state:               running")
    click.echo(f"url:                 {_redact_url(ctx.url)}")
    click.echo(f"server version:      {info.server_version}")
    click.echo(f"timescaledb version: {info.timescaledb_version or 'not installed'}")
    click.echo(f"edition:             {info.edition or 'unknown (extension not loaded)'}")
    click.echo(f"schema version:      {version if version is not None else 'not migrated (run `auditwatch migrate`)'}")


def _redact_url(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    if info.get("password"):
        info["password"] = "***"
    return psycopg.conninfo.make_conninfo(**info) if info.get("password") else url


@main.command()
@pass_ctx
def migrate(ctx: Context) -> None:
    """Apply pending schema migrations (safe to run from several processes at once)."""
    _migrate(ctx)


def _migrate(ctx: Context) -> None:
    with ctx.connect() as conn:
        try:
            db.require_timescaledb(conn)
            applied = migrations.migrate(conn, chunk_interval=ctx.settings.chunk_interval)
            if ctx.settings.embedded:  # the API's least-privilege role (external servers: README "Database roles")
                roles.apply(conn)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from None
        version = migrations.current_version(conn)
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    click.echo(f"schema at version {version}")


# -- serving ----------------------------------------------------------------------------------------

@main.command()
@click.option("--host", help="Address to listen on (default from settings: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8000).")
@click.option("--workers", type=int, help="Worker processes.")
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API with gunicorn."""
    from auditwatch.server import serve as run

    changes = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    run(ctx.settings.replace(**changes))


@main.command()
@pass_ctx
def worker(ctx: Context) -> None:
    """Run the scheduled jobs (rollup refresh on the Apache edition)."""
    from auditwatch.worker import run

    try:
        run(ctx.settings)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None


# -- storage ------------------------------------------------------------------------------------------

@main.group()
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


# -- keys -------------------------------------------------------------------------------------------

@main.group()
def keys() -> None:
    """API keys (shown once, stored hashed)."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--name", required=True, help="A unique name, e.g. the system or person that uses the key.")
@pass_ctx
def keys_create(ctx: Context, role: str, name: str) -> None:
    """Create a key and print it (it is not shown again)."""
    from auditwatch.api import catalog_name_ok

    if not catalog_name_ok(name):
        raise click.UsageError("--name may hold letters, digits and _ . @ - (at most 64, starting with a letter or digit)")
    pool = ctx.pool()
    try:
        if catalog.key_exists(pool, name):
            raise click.UsageError(f"a key named {name!r} exists; choose another name or revoke it first")
        key, secret = catalog.create_key(pool, name, Role(role), created_by=f"cli:{_whoami()}")
        _audit_cli(pool, "api_key_created", str(key.key_id), {"name": name, "role": role})
    finally:
        pool.close()
    click.echo(f"Created {role} key {name!r} ({key.key_id}). It is shown only now:", err=True)
    click.echo(secret)


@keys.command("list")
@pass_ctx
def keys_list(ctx: Context) -> None:
    pool = ctx.pool()
    try:
        rows = catalog.list_keys(pool)
    finally:
        pool.close()
    click.echo(f"{'name':24} {'role':8} {'created':20} revoked")
    for k in rows:
        click.echo(f"{k.name:24} {k.role.value:8} {k.created_at:%Y-%m-%d %H:%M:%S}  "
                   f"{k.revoked_at.strftime('%Y-%m-%d %H:%M:%S') if k.revoked_at else '-'}")


@keys.command("revoke")
@click.argument("name")
@pass_ctx
def keys_revoke(ctx: Context, name: str) -> None:
    """Revoke a key by name or id (servers stop accepting it within seconds)."""
    pool = ctx.pool()
    try:
        key = catalog.revoke_key(pool, name, revoked_by=f"cli:{_whoami()}")
        if key is None:
            raise click.UsageError(f"no live key named {name!r}; see `auditwatch keys list`")
        _audit_cli(pool, "api_key_revoked", str(key.key_id), {"name": key.name})
    finally:
        pool.close()
    click.echo(f"Revoked {key.name!r}.")


def _whoami() -> str:
    try:
        return os.getlogin()
    except OSError:
        return str(os.getuid())


def _audit_cli(pool, event_type: str, resource_id: str, metadata: dict) -> None:
    """CLI actions on keys and users are audited like their API twins."""
    EventWriter(pool).write([self_audit.record(event_type, f"cli:{_whoami()}", now=datetime.now(UTC),
                                               metadata=metadata, resource_id=resource_id, source="auditwatch-cli")])


# -- users ------------------------------------------------------------------------------------------

@main.group()
def users() -> None:
    """Registered users (R4: events must name a known user)."""


@users.command("add")
@click.argument("user_ids", nargs=-1, required=True)
@click.option("--display-name")
@click.option("--email")
@click.option("--department")
@click.option("--service", is_flag=True, help="A service account rather than a person.")
@pass_ctx
def users_add(ctx: Context, user_ids: tuple[str, ...], display_name, email, department, service) -> None:
    pool = ctx.pool()
    try:
        new = catalog.register_users(pool, [
            {"user_id": u, "display_name": display_name, "email": email, "department": department,
             "kind": "service" if service else "human"} for u in user_ids], registered_by=f"cli:{_whoami()}")
        for u in user_ids:
            _audit_cli(pool, "config_change", u, {"change": "user_registered"})
    finally:
        pool.close()
    click.echo(f"registered {new} new user(s); {len(user_ids) - new} already existed")


@users.command("list")
@click.option("--limit", default=100, show_default=True)
@pass_ctx
def users_list(ctx: Context, limit: int) -> None:
    pool = ctx.pool()
    try:
        rows = catalog.list_users(pool, limit=limit)
    finally:
        pool.close()
    for u in rows:
        click.echo(f"{u.user_id:32} {u.kind:8} {u.department or '-':12} {u.display_name or ''}")


# -- bulk ingest ------------------------------------------------------------------------------------

@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=False))
@click.option("--register-users", is_flag=True, help="Register unknown users instead of rejecting their events.")
@click.option("--batch-size", default=5000, show_default=True)
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False),
              help="Write rejected lines' errors here as NDJSON (default: print the first 20).")
@pass_ctx
def ingest(ctx: Context, path: str, register_users: bool, batch_size: int, errors_path: str | None) -> None:
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
    req = RequestContext(principal=f"cli:{_whoami()}", backfill=True, rate_limited=False,
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


# -- demo traffic -----------------------------------------------------------------------------------

@main.command()
@click.option("--url", default=None, help="The API base URL (default: this machine's server from settings).")
@click.option("--key", envvar="AUDITWATCH_DEMO_KEY", required=True, help="A system-role key (backfill allowed).")
@click.option("--admin-key", envvar="AUDITWATCH_DEMO_ADMIN_KEY", help="An admin key to register the demo users.")
@click.option("--seed", default=7, show_default=True)
@click.option("--users", "n_users", default=300, show_default=True)
@click.option("--history-hours", default=24, show_default=True, help="Backfill this much history first.")
@click.option("--duration", default=0.0, help="Stop after this many seconds of live traffic (0: run until stopped).")
def demo(url, key, admin_key, seed, n_users, history_hours, duration) -> None:
    """Send realistic audit traffic, with injected attacks, to a running server."""
    from auditwatch.demo_client import run_demo

    if url is None:
        s = settings_mod.load()
        url = f"http://{s.host}:{s.port}"
    run_demo(url=url, key=key, admin_key=admin_key, seed=seed, users=n_users, history=timedelta(hours=history_hours),
             duration=duration or None, echo=click.echo)


# -- everything at once -----------------------------------------------------------------------------

@main.command()
@click.option("--no-demo", is_flag=True, help="Do not start the demo traffic producer.")
@click.option("--keep-db", is_flag=True, help="Leave the embedded database running on exit.")
@pass_ctx
def up(ctx: Context, no_demo: bool, keep_db: bool) -> None:
    """Bring the platform up: database, schema, API server and demo traffic."""
    from auditwatch.alerting import receiver_settings

    settings = ctx.settings
    if settings.embedded:
        _db_up(ctx)
    _migrate(ctx)
    keyfile = settings.resolved_data_dir() / "demo-keys.json"
    admin_key, system_key = _demo_keys(ctx, keyfile)
    base = f"http://{settings.host}:{settings.port}"
    env = {**os.environ, "AUDITWATCH_DEMO_KEY": system_key, "AUDITWATCH_DEMO_ADMIN_KEY": admin_key}
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
        click.echo("\nstopping ...")
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if settings.embedded and not keep_db:
            ctx.cluster().down()
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
    pool = ctx.pool()
    try:
        if keyfile.exists():
            saved = json.loads(keyfile.read_text())
            if all(catalog.authenticate(pool, saved.get(k, "")) for k in ("admin", "system")):
                return saved["admin"], saved["system"]
        suffix = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        _, admin = catalog.create_key(pool, f"local-admin-{suffix}", Role.ADMIN, created_by="auditwatch-up")
        _, system = catalog.create_key(pool, f"demo-producer-{suffix}", Role.SYSTEM, created_by="auditwatch-up")
    finally:
        pool.close()
    keyfile.parent.mkdir(parents=True, exist_ok=True)
    keyfile.touch(mode=0o600)
    keyfile.write_text(json.dumps({"admin": admin, "system": system}, indent=2))
    return admin, system


# The other areas' commands, registered once `main` exists (their modules import helpers from here).
from auditwatch import cli_alerts, cli_analytics, cli_archive, cli_ingest, cli_integrity, cli_notebooks  # noqa: E402

for _command in (cli_archive.archive_group, cli_archive.retention_group, cli_archive.hold_group,
                 cli_integrity.verify, cli_integrity.integrity_group, cli_alerts.alerts,
                 *cli_analytics.COMMANDS, *cli_ingest.COMMANDS, cli_notebooks.seed_demo_command):
    main.add_command(_command)

if __name__ == "__main__":
    main()
