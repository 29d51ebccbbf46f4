"""Analytics commands: offline ``analyze`` / ``analyze-series`` / ``eval``, and the jobs on demand."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import orjson
import polars as pl

from alerts.rule_yaml import parse_duration
from analytics import coverage, evaluation, pipeline
from analytics.detectors import SeasonalSeries
from analytics.errors import AnalyticsError, MalformedInput
from analytics.events import read_ndjson, read_series_csv, stored_once
from auditwatch.cli.context import Context, pass_ctx
from auditwatch.settings import Settings
from ingest.enrich import geo_lookup

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


def _as_ingested(frame: pl.DataFrame, settings: Settings | None) -> tuple[pl.DataFrame, str]:
    """The file's events as ingest would have stored them: each event once (R5), countries and networks from the
    addresses when the file carries none (with ``settings``' geo database; None: left out), and a note for each
    input it lacks. Returns the frame and lines for the summary ("" when nothing changed)."""
    frame, repeated = stored_once(frame)
    changes = (f"\n{repeated:,} repeated events (the same event_id and timestamp) counted once, as ingest stores "
               "them" if repeated else "")
    if settings is not None and settings.geoip:
        lookup = geo_lookup(settings.geoip_mmdb or None, settings.geoip_asn_mmdb or None)
        frame, columns, events = coverage.fill_locations(frame, lookup.lookup)
        if columns:
            changes += (f"\n{' and '.join(columns)} (none in the file) filled from source_ip as ingest does: "
                       f"{events:,} events located; --no-geo leaves them out")
    for note in coverage.gaps(frame):
        click.echo(f"note: {note}", err=True)
    return frame, changes


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2024-05-01T00:00:00Z",
                                 param_hint=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_every(value: str | None, name: str = "--refit-every") -> timedelta | None:
    """A refit cadence such as ``6h`` or ``1d`` (``auto``/None: analyze's default)."""
    if value is None or value.strip().lower() == "auto":
        return None
    try:
        every = parse_duration(value.strip().lower())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a cadence; use e.g. 6h (the worker's default, "
                                 "`analytics_refit_seconds`) or 1d, or auto", param_hint=name) from None
    if not timedelta(hours=1) <= every <= timedelta(days=365):
        raise click.BadParameter(f"{value!r} is outside 1h to 365d (a worker refits every few hours: "
                                 "`analytics_refit_seconds`)", param_hint=name)
    return every


REFIT_HELP = ("How often models are refitted while scoring, e.g. 6h to match a worker's `analytics_refit_seconds` "
              "(a file then gives the anomalies that worker would have raised; slower on long files). "
              "auto: the worker's 6 h, coarser for long files (at most 12 fits).")


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
@click.option("--refit-every", default="auto", show_default=True, help=REFIT_HELP)
@click.option("--geo/--no-geo", default=True, show_default=True,
              help="Fill each event's missing source_country and source_asn from its source_ip, as ingest does "
              "(R8, with the geo database the settings name); what the file gives is kept.")
@pass_ctx
def analyze(ctx: Context, events_path: Path, out: Path, on_error: str, baseline_until: str | None,
            min_score: float | None, warmup_days: float, refit_every: str, geo: bool) -> None:
    """Run every detector over a file of events (the ingest schema); history in the file is the baseline."""
    until = _parse_time(baseline_until, "--baseline-until")
    every = _parse_every(refit_every)
    if until is not None and every is not None:
        raise click.UsageError("--refit-every is for scoring the file prequentially; with --baseline-until the "
                               "models are fitted once, on the events before it. Give one of them.")
    frame = _read_with_progress(events_path, read_ndjson, on_error, "reading events")
    if frame.is_empty():
        raise click.ClickException(f"{events_path} holds no events; it needs one JSON event per line")
    frame, changes = _as_ingested(frame, ctx.settings if geo else None)
    warmup = timedelta(days=warmup_days)
    how = pipeline.plan(frame.sort("timestamp"), baseline_until=until, warmup=warmup, refit_every=every)
    try:
        with click.progressbar(length=2 * len(pipeline.build()) * len(how.steps), label="detecting",
                               file=sys.stderr) as bar:
            found = pipeline.analyze(frame, baseline_until=until, warmup=warmup, min_score=min_score,
                                     refit_every=every, progress=lambda _name: bar.update(1))
    except AnalyticsError as exc:
        raise click.ClickException(str(exc)) from None
    with open(out, "wb") as handle:
        for row in found.iter_rows(named=True):
            handle.write(orjson.dumps({
                **row, "window_start": row["window_start"].isoformat(), "window_end": row["window_end"].isoformat(),
                "explanation": orjson.loads(row["explanation"])}) + b"\n")
    by_detector = found.group_by("detector").len().sort("detector").iter_rows()
    click.echo(f"{found.height} anomalies in {frame.height:,} events → {out}"
               + "".join(f"\n  {name}: {n}" for name, n in by_detector) + f"\n{how.describe()}" + changes)


@click.command("analyze-series")
@click.argument("series_path", metavar="SERIES.csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write timestamp,value,anomaly_score.")
@click.option("--window", default=400, show_default=True, type=click.IntRange(20, 100_000),
              help="Preceding residuals that form each point's scale.")
@click.option("--on-error", type=ON_ERROR, default="stop", show_default=True,
              help="On a malformed line: stop with its line number, or skip it (and report it).")
def analyze_series(series_path: Path, out: Path, window: int, on_error: str) -> None:
    """Score a ``timestamp,value`` series causally (each point only from the points before it)."""
    frame = _read_with_progress(series_path, read_series_csv, on_error, "reading series")
    if frame.is_empty():
        raise click.ClickException(f"{series_path} holds no points; it needs a `timestamp,value` header and rows")
    detector = SeasonalSeries(scale_window=window).fit(frame)
    scored = detector.score_frame(frame)
    scored.select(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"), "value",
                  pl.col("anomaly_score").round(9)).write_csv(out)
    flagged = int((scored["anomaly_score"] >= detector.threshold).sum())
    click.echo(f"scored {scored.height:,} points, {flagged} at or above {detector.threshold} → {out}")


@click.command("eval")
@click.option("--generator", type=click.Choice(["a", "b", "both"]), default=None,
              help="b (default): the report set, written from another spec; a: the tuning set; both.")
@click.option("--users", default=None, type=click.IntRange(20, 1_000_000), help="People (default: A 3000, B 2000).")
@click.option("--days", default=None, type=click.IntRange(4, 365), help="Days of traffic in all (default: A 21, B 28).")
@click.option("--attack-days", default=None, type=click.IntRange(1, 364),
              help="The last days, with injected attacks, that are scored (default: A 7; B the second half).")
@click.option("--seed", default=None, type=int, help="Generator seed (default: A 7, B 1).")
@click.option("--no-attacks", is_flag=True, help="Ordinary traffic only: every incident found is a false one.")
@click.option("--plain", is_flag=True, help="Run analyze with no flags, as a new user would (default: "
              "--baseline-until the end of the labels' attack-free history).")
@click.option("--events", "events_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Evaluate a file instead of generating: its events (NDJSON), analyzed here unless --anomalies.")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The labels of --events / --anomalies, as `auditwatch generate --labels` writes them.")
@click.option("--anomalies", "anomalies_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Score these anomalies (what `auditwatch analyze --out` wrote) against --labels.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the figures as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when a target is missed (recall ≥ 0.95 per attack class, "
              "≤ 1 false incident per day per 1,000 users).")
@click.option("--refit-every", default="auto", show_default=True,
              help="With --plain: analyze's --refit-every (e.g. 6h, the worker's cadence). " + REFIT_HELP)
@click.option("--geo/--no-geo", default=True, show_default=True,
              help="With --events: fill missing countries and networks from the addresses, as analyze does.")
@pass_ctx
def eval_command(ctx: Context, generator: str | None, users: int | None, days: int | None, attack_days: int | None,
                 seed: int | None, no_attacks: bool, plain: bool, events_path: Path | None, labels_path: Path | None,
                 anomalies_path: Path | None, json_path: Path | None, strict: bool, refit_every: str,
                 geo: bool) -> None:
    """Recall and delay per attack class, false incidents per day per 1,000 users, precision per detector."""
    def note(message: str) -> None:
        click.echo(f"… {message}", err=True)

    every = _parse_every(refit_every)
    if every is not None and not plain:
        raise click.UsageError("--refit-every needs --plain: without it the detectors are fitted once, on the "
                               "labels' attack-free history")

    if labels_path or events_path or anomalies_path:
        if not labels_path or not (events_path or anomalies_path):
            raise click.UsageError("to evaluate files, give --labels and --anomalies (analyze's output), or --labels "
                                   "and --events (analyzed here)")
        if generator or users or days or attack_days or seed is not None or no_attacks:
            raise click.UsageError("--generator, --users, --days, --attack-days, --seed and --no-attacks are for "
                                   "generated data; files come with their own labels")
        figures = [_eval_files(events_path, labels_path, anomalies_path, plain, note, every,
                               settings=ctx.settings if geo else None)]
    else:
        if attack_days is not None and days is not None and attack_days >= days:
            raise click.UsageError("--attack-days must be fewer than --days: the detectors need attack-free history")
        figures = []
        for name in (["a", "b"] if generator == "both" else [generator or "b"]):
            result = evaluation.run(name, users=users, days=days, seed=seed, attacks=not no_attacks,
                                    attack_days=attack_days, plain=plain, refit_every=every, progress=note)
            for line in [*result.lines(), *result.scorecard.detail_lines()]:
                click.echo(line)
            figures.append(result.to_dict())
    if json_path:
        json_path.write_bytes(orjson.dumps({"evaluations": figures}, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if strict and not all(ok for f in figures for ok in f["passed"].values()):
        sys.exit(1)


def _eval_files(events_path: Path | None, labels_path: Path, anomalies_path: Path | None, plain: bool, note,
                refit_every: timedelta | None = None, *, settings: Settings | None = None) -> dict:
    from analytics import labels as labels_mod
    from analytics import scorecard

    try:
        labels = labels_mod.read(labels_path)
    except labels_mod.LabelsError as exc:
        raise click.ClickException(f"{labels_path}: {exc}") from None
    if labels.scored_from is None or labels.end is None or not labels.users:
        raise click.ClickException(f"{labels_path} lacks scored_from, end or users (needed for a false-incident "
                                   "rate); write labels with `auditwatch generate --labels`")
    found = frame = None
    if anomalies_path:
        try:
            found = scorecard.read_anomalies(anomalies_path)
        except MalformedInput as exc:
            raise click.ClickException(f"{anomalies_path}: {exc}") from None
    else:
        frame = _read_with_progress(events_path, read_ndjson, "stop", "reading events")
        frame, changes = _as_ingested(frame, settings)
        if changes:
            note(changes.strip())
        note(f"analyzing {frame.height:,} events")
    card = evaluation.score_labels(labels, anomalies=found, events=frame, plain=plain, refit_every=refit_every)
    click.echo(f"labels {labels_path} (generator {labels.generator or '?'}), anomalies "
               f"{anomalies_path or f'from analyzing {events_path}'}")
    for line in [*card.lines(), *card.detail_lines()]:
        click.echo(line)
    return {"generator": labels.generator, "labels": str(labels_path), **card.to_dict()}


@click.command("generate")
@click.option("--generator", type=click.Choice(["a", "b"]), default="b", show_default=True,
              help="b: the report set, written from another spec; a: the tuning set.")
@click.option("--users", default=None, type=click.IntRange(20, 1_000_000), help="People (default: A 3000, B 2000).")
@click.option("--days", default=None, type=click.IntRange(4, 365), help="Days of traffic (default: A 21, B 28).")
@click.option("--attack-days", default=None, type=click.IntRange(1, 364),
              help="The last days, with attacks (default: A 7; B the second half).")
@click.option("--seed", default=None, type=int, help="Generator seed (default: A 7, B 1).")
@click.option("--no-attacks", is_flag=True, help="Ordinary traffic only.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the events, one JSON object per line (the ingest schema).")
@click.option("--labels", "labels_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the labels (attacks and benign cohort events) as JSON.")
def generate_command(generator: str, users: int | None, days: int | None, attack_days: int | None, seed: int | None,
                     no_attacks: bool, out: Path, labels_path: Path) -> None:
    """Write a labelled dataset: events for `auditwatch analyze` and labels for `auditwatch eval --labels`."""
    from analytics import labels as labels_mod
    from analytics.events import write_ndjson

    if attack_days is not None and days is not None and attack_days >= days:
        raise click.UsageError("--attack-days must be fewer than --days: the detectors need attack-free history")
    dataset = evaluation.generate(generator, users=users, days=days, seed=seed, attacks=not no_attacks,
                                  attack_days=attack_days)
    with click.progressbar(length=dataset.events.height, label="writing events", file=sys.stderr) as bar:
        done = [0]

        def moved(k: int) -> None:
            bar.update(k - done[0])
            done[0] = k
        write_ndjson(dataset.events, out, progress=moved)
    labels = evaluation.labels_of(dataset)
    labels_mod.write(labels_path, labels)
    click.echo(f"{dataset.events.height:,} events → {out}; {len(labels.incidents)} attacks and "
               f"{len(labels.cohorts)} benign cohort events → {labels_path}\n"
               f"attack-free history until {labels.scored_from:%Y-%m-%dT%H:%M:%SZ}: try `auditwatch analyze {out} "
               f"--out anomalies.jsonl --baseline-until {labels.scored_from:%Y-%m-%dT%H:%M:%SZ}`, then "
               f"`auditwatch eval --labels {labels_path} --anomalies anomalies.jsonl`")


@click.group("analytics")
def analytics_group() -> None:
    """The anomaly jobs on demand (the worker runs them on a schedule)."""


@analytics_group.command("score")
@pass_ctx
def analytics_score(ctx: Context) -> None:
    """Score new windows now (what the worker's score_anomalies job does)."""
    from analytics import jobs
    from auditwatch.worker import analytics_config

    with ctx.pooled() as pool:
        result = jobs.score_job(pool, config=analytics_config(ctx.settings))
    click.echo(f"{result.inserted} new anomalies, {result.updated} updated, {result.suppressed} suppressed by feedback")
    for name, (low, high) in result.ranges.items():
        click.echo(f"  {name}: {low:%Y-%m-%d %H:%M} → {high:%Y-%m-%d %H:%M}")


@analytics_group.command("refit")
@pass_ctx
def analytics_refit(ctx: Context) -> None:
    """Refit every detector on recent history and store new model versions."""
    from analytics import jobs
    from auditwatch.worker import analytics_config

    with ctx.pooled() as pool:
        versions = jobs.refit_job(pool, config=analytics_config(ctx.settings))
    for name, version in (versions or {}).items():
        click.echo(f"{name}: {version}")


COMMANDS = (analyze, analyze_series, eval_command, generate_command, analytics_group)
