"""``auditwatch alerts ...``: rules, backtests, silences and acknowledgements from the shell."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from alerts import actions
from alerts.backtest import backtest
from alerts.errors import AlertsError, ConfigError, RuleError
from alerts.rule_files import load_file, load_rules
from alerts.rule_yaml import format_duration, parse_duration
from alerts.rules import PACKAGED_RULES
from auditwatch.alerting import rules_dir
from auditwatch.cli.context import Context, cli_auditor, pass_ctx, whoami


def _duration(text: str, option: str):
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.UsageError(f"{option}: {exc}") from None


def _rules(ctx: Context) -> dict:
    try:
        return load_rules(PACKAGED_RULES, rules_dir(ctx.settings))
    except RuleError as exc:
        raise click.ClickException(f"{exc}\nFix the files above, then run `auditwatch alerts rules validate`.") \
            from None


@click.group()
def alerts() -> None:
    """Alert rules, backtests, silences and acknowledgements."""


@alerts.group()
def rules() -> None:
    """The rule pack (packaged) and your rules directory."""


@rules.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@pass_ctx
def rules_validate(ctx: Context, paths: tuple[str, ...]) -> None:
    """Check rule files (default: the packaged pack and your rules directory); exit 1 on any problem."""
    from pathlib import Path

    problems = []
    files = [Path(p) for p in paths] or [*sorted(PACKAGED_RULES.glob("*.y*ml")),
                                         *sorted(rules_dir(ctx.settings).glob("*.y*ml"))]
    expanded = [f for p in files for f in (sorted(p.glob("*.y*ml")) if p.is_dir() else [p])]
    for path in expanded:
        try:
            rule = load_file(path)
            click.echo(f"ok    {path}  ({rule.kind}, {len(rule.examples)} examples)")
        except RuleError as exc:
            problems.extend(exc.problems)
    for problem in problems:
        click.echo(f"error {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{len(expanded)} rule file(s) valid")


@rules.command("list")
@pass_ctx
def rules_list(ctx: Context) -> None:
    """Every loaded rule: id, kind, severity, and where it comes from."""
    user = rules_dir(ctx.settings)
    click.echo(f"{'id':28} {'kind':10} {'severity':9} {'for':5} {'cooldown':8} source")
    for rule in _rules(ctx).values():
        source = "packaged" if rule.path.startswith(str(PACKAGED_RULES)) else str(user)
        flag = "" if rule.enabled else "  (disabled)"
        click.echo(f"{rule.id:28} {rule.kind:10} {rule.severity:9} {format_duration(rule.for_):5} "
                   f"{format_duration(rule.cooldown):8} {source}{flag}")


@alerts.command("backtest")
@click.argument("rule_id")
@click.option("--since", default="30d", show_default=True, help="How far back to replay, e.g. 7d, 12h.")
@click.option("--top", default=10, show_default=True, help="How many of the most frequent groups to show.")
@pass_ctx
def backtest_cmd(ctx: Context, rule_id: str, since: str, top: int) -> None:
    """Replay stored data and print how often RULE_ID would have fired."""
    rule = _rules(ctx).get(rule_id)
    if rule is None:
        raise click.UsageError(f"no rule {rule_id!r}; see `auditwatch alerts rules list`")
    end = datetime.now(UTC)
    start = end - _duration(since, "--since")
    with ctx.pooled() as pool:
        days = max(1, int((end - start).total_seconds() // 86400) + 1)
        with click.progressbar(length=days, label=f"replaying {since}", file=sys.stderr) as bar:
            try:
                result = backtest(pool, rule, start=start, end=end, progress=lambda lo, hi: bar.update(1))
            except ConfigError as exc:  # a health rule: nothing to replay
                raise click.UsageError(str(exc)) from None
    click.echo(f"rule {rule.id} ({rule.kind}, {rule.severity}) from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} "
               f"UTC via {result.method}")
    per_day = len(result.episodes) / max((end - start).total_seconds() / 86400, 1 / 24)
    click.echo(f"would have fired {len(result.episodes)} time(s) ({per_day:.1f} per day) for "
               f"{result.groups} distinct group(s)")
    for group, count in result.top(top):
        click.echo(f"  {count:5}  {', '.join(f'{k}={v}' for k, v in group.items()) or '(all)'}")
    for episode in result.episodes[-5:]:
        click.echo(f"  last: {episode.start:%Y-%m-%d %H:%M} .. {episode.end:%H:%M}  peak {episode.peak}  "
                   f"{', '.join(f'{k}={v}' for k, v in episode.group.items())}")


@alerts.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(actions.STATES))
@click.option("--limit", default=50, show_default=True)
@pass_ctx
def alerts_list(ctx: Context, states: tuple[str, ...], limit: int) -> None:
    """Alerts, firing first."""
    with ctx.pooled() as pool:
        found = actions.list_alerts(pool, states=states or None, limit=limit)
    for a in found:
        flags = " ".join(f for f, on in (("silenced", a.silenced), (f"acked:{a.acknowledged_by}",
                                                                     a.acknowledged_by)) if on)
        click.echo(f"{a.fingerprint}  {a.state:8} {a.severity:8} {a.count:6}  {a.title}  {flags}")


def _audit():
    """The CLI user's config_change record builder; actions stores the record with the change."""
    build = cli_auditor()
    return lambda resource_id, metadata: build("config_change", metadata, resource_id)


@alerts.command("ack")
@click.argument("fingerprint")
@click.option("--comment", default="", help="Why, for the on-call log.")
@click.option("--for", "for_", help="Acknowledge for a time (e.g. 2h) instead of until resolved.")
@pass_ctx
def ack(ctx: Context, fingerprint: str, comment: str, for_: str | None) -> None:
    """Acknowledge an alert: no repeats, and PagerDuty is told."""
    now = datetime.now(UTC)
    until = now + _duration(for_, "--for") if for_ else None
    by = f"cli:{whoami()}"
    with ctx.pooled(usage_errors=(AlertsError,)) as pool:
        view = actions.acknowledge(pool, fingerprint, by=by, comment=comment, until=until, now=now,
                                   audit=_audit())
    click.echo(f"acknowledged {view.title} until {view.acknowledged_until or 'resolved'}")


@alerts.group()
def silence() -> None:
    """Mute alerts by label for a while (who and why are recorded)."""


@silence.command("add")
@click.option("--match", "matches", multiple=True, required=True, help="label=value (repeatable), e.g. "
              "rule_id=failed_login_burst")
@click.option("--for", "for_", default="2h", show_default=True, help="How long.")
@click.option("--comment", required=True, help="Why (shown to everyone on call).")
@pass_ctx
def silence_add(ctx: Context, matches: tuple[str, ...], for_: str, comment: str) -> None:
    matchers = {}
    for item in matches:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.UsageError(f"--match {item!r}: write label=value, e.g. user_id=alice")
        matchers[key] = value
    now = datetime.now(UTC)
    with ctx.pooled(usage_errors=(AlertsError,)) as pool:
        silence_id = actions.create_silence(pool, matchers=matchers, starts_at=now,
                                            ends_at=now + _duration(for_, "--for"), created_by=f"cli:{whoami()}",
                                            comment=comment,
                                            audit=_audit())
    click.echo(f"silence {silence_id} created for {for_}")


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include ended silences.")
@pass_ctx
def silence_list(ctx: Context, show_all: bool) -> None:
    now = datetime.now(UTC)
    with ctx.pooled() as pool:
        found = actions.list_silences(pool, active_at=None if show_all else now)
    for s in found:
        click.echo(f"{s.silence_id:6}  {'active' if s.active(now) else 'ended ':6}  {json.dumps(s.matchers)}  "
                   f"until {s.ends_at:%Y-%m-%d %H:%M}  by {s.created_by}: {s.comment}")


@silence.command("expire")
@click.argument("silence_id", type=int)
@pass_ctx
def silence_expire(ctx: Context, silence_id: int) -> None:
    with ctx.pooled(usage_errors=(AlertsError,)) as pool:
        actions.expire_silence(pool, silence_id, by=f"cli:{whoami()}",
                               audit=_audit())
    click.echo(f"silence {silence_id} ended")
