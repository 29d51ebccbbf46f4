"""``auditwatch keys ...`` and ``auditwatch users ...``: API keys and registered users, each change committed
with its audit record, like the API."""

from __future__ import annotations

import click

from auditwatch.cli.context import Context, cli_auditor, pass_ctx, whoami
from storage.auth import Role
from storage.timescale import catalog


@click.group()
def keys() -> None:
    """API keys (shown once, stored hashed)."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--name", required=True, help="A unique name, e.g. the system or person that uses the key.")
@pass_ctx
def keys_create(ctx: Context, role: str, name: str) -> None:
    """Create a key and print it (it is not shown again)."""
    from auditwatch.api.admin import catalog_name_ok

    if not catalog_name_ok(name):
        raise click.UsageError("--name may hold letters, digits and _ . @ - (at most 64, starting with a letter or digit)")
    with ctx.pooled() as pool:
        if catalog.key_exists(pool, name):
            raise click.UsageError(f"a key named {name!r} exists; choose another name or revoke it first")
        key, secret = catalog.create_key(pool, name, Role(role), created_by=f"cli:{whoami()}", audit=cli_auditor())
    click.echo(f"Created {role} key {name!r} ({key.key_id}). It is shown only now:", err=True)
    click.echo(secret)


@keys.command("list")
@pass_ctx
def keys_list(ctx: Context) -> None:
    with ctx.pooled() as pool:
        rows = catalog.list_keys(pool)
    click.echo(f"{'name':24} {'role':8} {'created':20} revoked")
    for k in rows:
        click.echo(f"{k.name:24} {k.role.value:8} {k.created_at:%Y-%m-%d %H:%M:%S}  "
                   f"{k.revoked_at.strftime('%Y-%m-%d %H:%M:%S') if k.revoked_at else '-'}")


@keys.command("revoke")
@click.argument("name")
@pass_ctx
def keys_revoke(ctx: Context, name: str) -> None:
    """Revoke a key by name or id (servers stop accepting it within seconds)."""
    with ctx.pooled() as pool:
        key = catalog.revoke_key(pool, name, revoked_by=f"cli:{whoami()}", audit=cli_auditor())
        if key is None:
            raise click.UsageError(f"no live key named {name!r}; see `auditwatch keys list`")
    click.echo(f"Revoked {key.name!r}.")


@click.group()
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
    with ctx.pooled() as pool:
        new = catalog.register_users(pool, [
            {"user_id": u, "display_name": display_name, "email": email, "department": department,
             "kind": "service" if service else "human"} for u in user_ids], registered_by=f"cli:{whoami()}",
            audit=cli_auditor())
    click.echo(f"registered {new} new user(s); {len(user_ids) - new} already existed")


@users.command("list")
@click.option("--limit", default=100, show_default=True)
@pass_ctx
def users_list(ctx: Context, limit: int) -> None:
    with ctx.pooled() as pool:
        rows = catalog.list_users(pool, limit=limit)
    for u in rows:
        click.echo(f"{u.user_id:32} {u.kind:8} {u.department or '-':12} {u.display_name or ''}")
