"""Analytics commands: offline ``analyze`` / ``analyze-series`` / ``eval``, and the jobs on demand."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson
import polars as pl

from analytics import evaluation, pipeline
from analytics.detectors import UnivariateSeries
from analytics.errors import AnalyticsError, MalformedInput
from analytics.events import read_ndjson, read_series_csv

if TYPE_CHECKING:
    from auditwatch.cli import Context

# The group's Context is ctx.obj; importing cli.py here would be a cycle when it runs as __main__.
pass_ctx = click.pass_obj
ON_ERROR = click.Choice(["stop", "skip"])


def _read_with_progress(path: Path, reader, on_error: str, label: str):
    errors: list[MalformedInput] = []
    size = path.stat().st_size
    with click.progressbar(length=size, label=label, file=sys.stderr,
                           show_eta=size > 5_000_000) as bar:
        try:
            frame = reader(path, on_error=on_error, errors=errors, progress=bar.update)
        except MalformedInput as exc:
            raise click.ClickException(f"{path}: {exc}. Fix that line, or pass --on-error skip to leave out "
                                       "malformed lines (each is reported).") from None
    if errors:
        click.echo(f"skipped {len(errors)} malformed line(s):", err=True)
        for exc in errors[:20]:
            click.echo(f"  {exc}", err=True)
        if len(errors) > 20:
            click.echo(f"  ... and {len(errors) - 20} more", err=True)
    return frame


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2024-05-01T00:00:00Z",
                                 param_hint=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.argument("events_path", metavar="EVENTS.ndjson", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write one JSON line per anomaly.")
@click.option("--on-error", type=ON_ERROR, default="stop", show_default=True,
              help="On a malformed line: stop with its line number, or skip it (and report it).")
@click.option("--baseline-until", help="Learn from events before this time, score from it on "
              "(default: all but the last day when the file spans 2+ days, else population priors).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help="Report windows from this calibrated score (default 0.6: one window in a million).")
@click.option("--warmup", "warmup_days", type=click.FloatRange(0, 365), default=pipeline.WARMUP.days,
              show_default=True, help="Days at the start of the file only learned from; every later window is "
              "scored by models fitted on the events before it (ignored with --baseline-until).")
def analyze(events_path: Path, out: Path, on_error: str, baseline_until: str | None, min_score: float | None,
            warmup_days: float) -> None:
    """Run every detector over a file of events (the ingest schema); history in the file is the baseline."""
    frame = _read_with_progress(events_path, read_ndjson, on_error, "reading events")
    if frame.is_empty():
        raise click.ClickException(f"{events_path} holds no events; it needs one JSON event per line")
    until = _parse_time(baseline_until, "--baseline-until")
    warmup = timedelta(days=warmup_days)
    how = pipeline.plan(frame.sort("timestamp"), baseline_until=until, warmup=warmup)
    try:
        with click.progressbar(length=2 * len(pipeline.build()) * len(how.steps), label="detecting",
                               file=sys.stderr) as bar:
            found = pipeline.analyze(frame, baseline_until=until, warmup=warmup, min_score=min_score,
                                     progress=lambda _name: bar.update(1))
    except AnalyticsError as exc:
        raise click.ClickException(str(exc)) from None
    with open(out, "wb") as handle:
        for row in found.iter_rows(named=True):
            handle.write(orjson.dumps({
                **row, "window_start": row["window_start"].isoformat(), "window_end": row["window_end"].isoformat(),
                "explanation": orjson.loads(row["explanation"])}) + b"\n")
    by_detector = found.group_by("detector").len().sort("detector").iter_rows()
    click.echo(f"{found.height} anomalies in {frame.height:,} events → {out}"
               + "".join(f"\n  {name}: {n}" for name, n in by_detector) + f"\n{how.describe()}")


@click.command("analyze-series")
@click.argument("series_path", metavar="SERIES.csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write timestamp,value,anomaly_score.")
@click.option("--window", default=60, show_default=True, type=click.IntRange(3, 100_000),
              help="Preceding points that form each point's baseline.")
@click.option("--on-error", type=ON_ERROR, default="stop", show_default=True,
              help="On a malformed line: stop with its line number, or skip it (and report it).")
def analyze_series(series_path: Path, out: Path, window: int, on_error: str) -> None:
    """Score a ``timestamp,value`` series causally (each point only from the points before it)."""
    frame = _read_with_progress(series_path, read_series_csv, on_error, "reading series")
    if frame.is_empty():
        raise click.ClickException(f"{series_path} holds no points; it needs a `timestamp,value` header and rows")
    detector = UnivariateSeries(window=window, min_periods=min(10, window)).fit(frame)
    scored = detector.score_frame(frame)
    scored.select(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"), "value",
                  pl.col("anomaly_score").round(6)).write_csv(out)
    flagged = int((scored["anomaly_score"] >= detector.threshold).sum())
    click.echo(f"scored {scored.height:,} points, {flagged} at or above {detector.threshold} → {out}")


@click.command("eval")
@click.option("--users", default=3000, show_default=True, type=click.IntRange(20, 1_000_000))
@click.option("--days", default=21, show_default=True, type=click.IntRange(3, 365), help="Days of traffic in all.")
@click.option("--attack-days", default=7, show_default=True, type=click.IntRange(1, 364),
              help="The last days, with injected attacks, that are scored.")
@click.option("--seed", default=7, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the figures as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when a target is missed.")
def eval_command(users: int, days: int, attack_days: int, seed: int, json_path: Path | None, strict: bool) -> None:
    """Generate a labelled dataset, run every detector, print recall, precision, delay and false alarms."""
    if attack_days >= days:
        raise click.UsageError("--attack-days must be fewer than --days: the detectors need attack-free history")
    report = evaluation.run(users=users, days=days, attack_days=attack_days, seed=seed,
                            progress=lambda message: click.echo(f"… {message}", err=True))
    for line in report.lines():
        click.echo(line)
    if report.false_examples:
        click.echo("some false anomalies:")
        for line in report.false_examples:
            click.echo(f"  {line}")
    if json_path:
        json_path.write_bytes(orjson.dumps({
            "scenarios": [{"scenario": s.scenario, "incidents": s.incidents, "recall": s.recall,
                           "median_delay_s": s.median_delay_s, "detectors": s.detectors} for s in report.scenarios],
            "precision": report.precision, "false_per_day_per_1000_users": report.false_per_day_per_1000_users,
            "burst_median_delay_s": report.burst_median_delay_s, "passed": report.passed(),
            "users": users, "days": days, "attack_days": attack_days, "seed": seed, "seconds": report.seconds,
        }, option=orjson.OPT_INDENT_2))
    if strict and not all(report.passed().values()):
        sys.exit(1)


@click.group("analytics")
def analytics_group() -> None:
    """The anomaly jobs on demand (the worker runs them on a schedule)."""


@analytics_group.command("score")
@pass_ctx
def analytics_score(ctx: Context) -> None:
    """Score new windows now (what the worker's score_anomalies job does)."""
    from analytics import jobs
    from auditwatch.worker import analytics_config

    pool = ctx.pool()
    try:
        result = jobs.score_job(pool, config=analytics_config(ctx.settings))
    finally:
        pool.close()
    click.echo(f"{result.inserted} new anomalies, {result.updated} updated, {result.suppressed} suppressed by feedback")
    for name, (low, high) in result.ranges.items():
        click.echo(f"  {name}: {low:%Y-%m-%d %H:%M} → {high:%Y-%m-%d %H:%M}")


@analytics_group.command("refit")
@pass_ctx
def analytics_refit(ctx: Context) -> None:
    """Refit every detector on recent history and store new model versions."""
    from analytics import jobs
    from auditwatch.worker import analytics_config

    pool = ctx.pool()
    try:
        versions = jobs.refit_job(pool, config=analytics_config(ctx.settings))
    finally:
        pool.close()
    for name, version in (versions or {}).items():
        click.echo(f"{name}: {version}")


COMMANDS = (analyze, analyze_series, eval_command, analytics_group)
