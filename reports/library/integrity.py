"""Log integrity and retention (SOC 2 CC7.2, PCI DSS 10.3/10.5, ISO 27001 A.8.15): the chain verified over hot
and cold data (the proof every report carries), retention policy and what it actually removed, archiving,
legal holds, lawful erasures, and gaps in ingest by source."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from reports.library.frames import meta
from reports.model import Content, Definition, Params, Table
from reports.source import Source

REMOVAL_TYPES = ("events_expired", "events_archived", "event_erased")


def _gaps(events: pl.DataFrame, floor: timedelta, factor: float) -> pl.DataFrame:
    """Silences of a source longer than both ``floor`` and ``factor`` times its 90th-percentile interval.

    Measured against the source's own cadence, so a system that only sends in office hours does not show
    a gap every night, while one that sends every few minutes shows an hour of silence.
    """
    steps = (events.filter(pl.col("source").is_not_null()).sort("source", "timestamp")
             .with_columns(previous=pl.col("timestamp").shift(1).over("source"))
             .with_columns(interval=(pl.col("timestamp") - pl.col("previous")).dt.total_seconds())
             .with_columns(usual=pl.col("interval").quantile(0.9).over("source")))
    threshold = pl.max_horizontal(pl.lit(floor.total_seconds()), pl.col("usual") * factor)
    return (steps.filter(pl.col("interval") > threshold)
            .select("source", pl.col("previous").alias("last_before_gap"), pl.col("timestamp").alias("resumed"),
                    (pl.col("interval") / 3600).round(2).alias("hours"),
                    (pl.col("usual") / 3600).round(2).alias("usual_p90_hours"))
            .sort("source", "last_before_gap"))


def build(src: Source, p: Params) -> Content:
    gap = timedelta(hours=float(p.options["gap_hours"]))
    factor = float(p.options["gap_factor"])
    stored, stored_q = src.events(p, columns=["timestamp", "source"])
    tiers = (stored.group_by("tier").agg(pl.len().alias("events"), pl.col("timestamp").min().alias("first"),
                                         pl.col("timestamp").max().alias("last")).sort("tier"))
    gaps = _gaps(stored, gap, factor)
    sources = (stored.group_by("source").agg(pl.len().alias("events"), pl.col("timestamp").max().alias("last_event"))
               .join(gaps.group_by("source").agg(pl.len().alias("gaps"), pl.col("hours").sum().alias("gap_hours")),
                     on="source", how="left")
               .with_columns(pl.col("gaps").fill_null(0), pl.col("gap_hours").fill_null(0.0))
               .sort("source", nulls_last=True))

    policy, policy_q = src.retention_policy()
    policy_rows = [{"event_type": "(default)", "hot_days": policy.hot_days, "cold_years": policy.cold_years}]
    policy_rows += [{"event_type": t, "hot_days": policy.hot_days, "cold_years": y}
                    for t, y in sorted(policy.cold_years_by_type.items())]
    policy_frame = pl.DataFrame(policy_rows, schema={"event_type": pl.String, "hot_days": pl.Int64,
                                                     "cold_years": pl.Int64})

    removals, removals_q = src.events(p, event_type=REMOVAL_TYPES, scoped=False)
    removals = removals.with_columns(meta("rows"), meta("reason"), meta("lawful_basis"), meta("event_types"))
    applied = (removals.filter(pl.col("event_type") == "events_expired")
               .select("timestamp", pl.col("user_id").alias("by"), pl.col("resource_id").alias("file"), "rows",
                       "event_types", pl.col("metadata").alias("detail")))
    archived = (removals.filter(pl.col("event_type") == "events_archived")
                .select("timestamp", pl.col("user_id").alias("by"), pl.col("resource_id").alias("chunk"), "rows"))
    erasures = (removals.filter(pl.col("event_type") == "event_erased")
                .select("timestamp", pl.col("user_id").alias("by"), pl.col("resource_id").alias("erased_event"),
                        pl.coalesce("lawful_basis", "reason").alias("basis")))

    holds, holds_q = src.holds()
    in_force = holds.filter((pl.col("created_at") < p.end)
                            & (pl.col("released_at").is_null() | (pl.col("released_at") >= p.start)))
    figures = {
        "Events stored for the period": stored.height,
        "  of which in the hot tier": int(stored.filter(pl.col("tier") == "hot").height),
        "  of which in the cold tier": int(stored.filter(pl.col("tier") == "cold").height),
        "Retention runs that removed events": applied.height,
        "Archiving runs": archived.height,
        "Lawful erasures": erasures.height,
        "Legal holds in force": in_force.height,
        "Sources sending": sources.height,
        f"Ingest gaps over {p.options['gap_hours']} h": gaps.height,
    }
    return Content(
        figures=figures,
        summary=["The integrity proof at the end of this report recomputes every batch holding events of the "
                 "period, hot and cold, and checks the signed checkpoints; its verdict is the evidence for "
                 "SOC 2 CC7.2 and PCI DSS 10.5. The tables show retention as configured and as applied."],
        tables=[
            Table("tiers", "Events of the period by storage tier", stored_q + "\n  .group_by('tier').agg(len, "
                  "min/max(timestamp))", tiers),
            Table("policy", "Retention policy per event type", policy_q, policy_frame),
            Table("retention_applied", "Retention applied (events_expired records)",
                  removals_q + "\n  .filter(event_type == 'events_expired')", applied),
            Table("archived", "Archiving to the cold tier (events_archived records)",
                  removals_q + "\n  .filter(event_type == 'events_archived')", archived),
            Table("erasures", "Lawful erasures (event_erased records)",
                  removals_q + "\n  .filter(event_type == 'event_erased')", erasures),
            Table("legal_holds", "Legal holds in force during the period",
                  holds_q + "\n  .filter(created_at < end & (released_at is null | released_at >= start))",
                  in_force),
            Table("sources", "Ingest by source", stored_q + "\n  .group_by('source').agg(len, max(timestamp))"
                  "\n  .join(gaps per source)", sources),
            Table("gaps", f"Ingest gaps longer than {p.options['gap_hours']} hours",
                  stored_q + "\n  .sort('source', 'timestamp')\n  .filter(timestamp - timestamp.shift(1)"
                  f".over('source') > max({p.options['gap_hours']}h, {factor} x the source's p90 interval))", gaps,
                  "A gap is measured against the source's own cadence (option gap_factor), never shorter than "
                  "option gap_hours."),
        ])


DEFINITION = Definition(
    name="log-integrity", version=1, title="Log integrity and retention",
    controls=("SOC 2 CC7.2", "PCI DSS 10.3", "PCI DSS 10.5", "ISO 27001 A.8.15"),
    purpose="Tamper evidence over hot and cold data, retention as configured and as applied, legal holds, lawful "
            "erasures, and gaps in ingest by source.",
    build=build, defaults={"gap_hours": 6, "gap_factor": 1.5})
