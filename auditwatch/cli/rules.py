"""``auditwatch rules import-sigma|export-sigma``: detection rules to and from the Sigma format."""

from __future__ import annotations

from pathlib import Path

import click

from alerts.errors import RuleError
from alerts.rule_files import load_rules
from alerts.rules import PACKAGED_RULES
from alerts.sigma.errors import Refusal
from alerts.sigma.exporter import export_rules
from alerts.sigma.importer import import_paths
from alerts.sigma.pipeline import Catalogue, CatalogueEntry
from auditwatch.alerting import rules_dir
from auditwatch.cli.context import Context, cli_auditor, pass_ctx
from storage.timescale import catalog, self_audit


@click.group("rules")
def rules_group() -> None:
    """Detection rules in other formats (Sigma); `auditwatch alerts rules` validates and lists ours."""


@rules_group.command("import-sigma")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--into", type=click.Path(file_okay=False), help="Where to write the rules (default: your rules "
              "directory, alerts_rules_dir).")
@click.option("--dry-run", is_flag=True, help="Convert and report, write nothing.")
@click.option("--overwrite", is_flag=True, help="Replace rule files that already exist.")
@pass_ctx
def import_sigma(ctx: Context, paths: tuple[str, ...], into: str | None, dry_run: bool, overwrite: bool) -> None:
    """Convert Sigma rules (files or directories) into threshold rules; exit 1 if any could not be mapped."""
    with ctx.pooled() as pool:
        entries = [CatalogueEntry(t.event_type, t.class_uid, t.activity_id, t.type_uid)
                   for t in catalog.event_types(pool)]
        result = import_paths(paths, Catalogue(entries))
        target = Path(into) if into else rules_dir(ctx.settings)
        written = []
        for rule, text in result.rules:
            path = target / f"{rule.id}.yml"
            if path.exists() and not overwrite:
                result.refused.append(Refusal(rule.id, None, f"{path} exists; pass --overwrite to replace it"))
                continue
            written.append((rule, path, text))
        if written and not dry_run:
            target.mkdir(parents=True, exist_ok=True)
            record = cli_auditor()("config_change", {"change": "sigma_rules_imported",
                                                     "rules": [r.id for r, _, _ in written],
                                                     "directory": str(target)}, None)
            with self_audit.storing(pool, record):
                for _, path, text in written:
                    path.write_text(text, encoding="utf-8")
    for rule, path, _ in written:
        condition = rule.condition
        click.echo(f"{'would write' if dry_run else 'wrote'} {path}  (at least {condition.at_least} in "
                   f"{int(condition.window.total_seconds())}s{', distinct ' + condition.distinct if condition.distinct else ''})")
    for refusal in result.refused:
        click.echo(f"refused {refusal}", err=True)
    click.echo(f"{len(written)} imported, {len(result.refused)} refused", err=True)
    if result.refused:
        raise SystemExit(1)


@rules_group.command("export-sigma")
@click.option("--out", type=click.Path(file_okay=False), help="A directory for one <rule>.yml each "
              "(default: all to stdout).")
@click.option("--rule", "rule_ids", multiple=True, help="Only these rule ids (repeatable).")
@pass_ctx
def export_sigma(ctx: Context, out: str | None, rule_ids: tuple[str, ...]) -> None:
    """Our threshold rules (packaged and yours) as Sigma rules; anomaly and absence rules are reported, not exported."""
    try:
        rules = load_rules(PACKAGED_RULES, rules_dir(ctx.settings))
    except RuleError as exc:
        raise click.ClickException(f"{exc}\nFix the files above, then run `auditwatch alerts rules validate`.") \
            from None
    unknown = sorted(set(rule_ids) - set(rules))
    if unknown:
        raise click.UsageError(f"no rule has id {', '.join(unknown)}; `auditwatch alerts rules list` shows them")
    chosen = [rules[i] for i in rule_ids] if rule_ids else list(rules.values())
    result = export_rules(chosen)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for rule_id, text in result.documents.items():
            (Path(out) / f"{rule_id}.yml").write_text(text, encoding="utf-8")
            click.echo(f"wrote {Path(out) / f'{rule_id}.yml'}")
    else:
        click.echo("".join(result.documents.values()), nl=False)
    for refusal in result.refused:
        click.echo(f"not exported: {refusal}", err=True)
