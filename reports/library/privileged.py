"""Privileged activity (SOC 2 CC6.1, PCI DSS 10.2.2): every permission, configuration, key and retention
change in the period, by whom and at what hour, and how the alerts raised in the period were handled."""

from __future__ import annotations

import polars as pl

from reports.library.access_review import CHANGE_COLUMNS
from reports.library.frames import count, hour, meta
from reports.model import Content, Definition, Params, Table
from reports.source import Source

PRIVILEGED_TYPES = ("permission_change", "config_change", "api_key_created", "api_key_revoked", "legal_hold",
                    "events_expired", "event_erased", "user_created", "password_change")


def build(src: Source, p: Params) -> Content:
    first, last = int(p.options["business_hours"][0]), int(p.options["business_hours"][1])
    changes, changes_q = src.events(p, event_type=PRIVILEGED_TYPES, columns=CHANGE_COLUMNS)
    changes = (changes.with_columns(hour(), meta("setting"))
               .with_columns(out_of_hours=~pl.col("hour_utc").is_between(first, last - 1),
                             retention=(pl.col("event_type") == "events_expired")
                             | pl.col("setting").str.contains("retention").fill_null(False)
                             | pl.col("resource_id").str.contains("retention").fill_null(False))
               .sort("timestamp"))
    detail = changes.select("timestamp", "hour_utc", pl.col("user_id").alias("by"), "event_type", "outcome",
                            "resource_id", pl.col("metadata").alias("change"), "out_of_hours")
    by_actor = (changes.group_by("user_id", "event_type")
                .agg(pl.len().alias("changes"), pl.col("out_of_hours").sum().alias("out_of_hours"),
                     pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last"))
                .sort(["changes", "user_id", "event_type"], descending=[True, False, False]))

    alerts, alerts_q = src.alerts()
    raised = (alerts.filter(pl.col("started_at").is_between(p.start, p.end, closed="left"))
              .select("started_at", "rule_id", "title", "severity", "state", "acknowledged_by", "acknowledged_at",
                      "resolved_at",
                      ((pl.col("acknowledged_at").fill_null(pl.col("resolved_at")) - pl.col("started_at"))
                       .dt.total_minutes()).alias("minutes_to_response"))
              .sort("started_at"))
    figures = {
        "Privileged changes": detail.height,
        "Permission changes": count(changes, pl.col("event_type") == "permission_change"),
        "Configuration changes": count(changes, pl.col("event_type") == "config_change"),
        "Key changes": count(changes, pl.col("event_type").is_in(["api_key_created", "api_key_revoked"])),
        "Retention changes and expiries": count(changes, pl.col("retention")),
        f"Outside {first:02d}:00-{last:02d}:00 UTC": count(changes, pl.col("out_of_hours")),
        "Distinct actors": changes["user_id"].n_unique(),
        "Alerts raised in period": raised.height,
        "Alerts still unhandled": count(raised, pl.col("acknowledged_at").is_null() & pl.col("resolved_at").is_null()),
    }
    return Content(
        figures=figures,
        summary=[f"Changes of types {', '.join(PRIVILEGED_TYPES)} in the period, with the UTC hour of each; "
                 f"business hours are {first:02d}:00 to {last:02d}:00 UTC (option business_hours)."],
        tables=[
            Table("by_actor", "Privileged changes by actor and type",
                  changes_q + "\n  .group_by('user_id', 'event_type').agg(len, sum(out_of_hours), min/max(timestamp))",
                  by_actor),
            Table("changes", "Every privileged change", changes_q + "\n  .with_columns(hour_utc = "
                  "timestamp.dt.hour(), out_of_hours = hour_utc not in business_hours)", detail, limit=150),
            Table("alerts", "Alerts raised in the period and how they were handled",
                  alerts_q + f"\n  .filter({p.start.isoformat()} <= started_at < {p.end.isoformat()})", raised,
                  "state, acknowledgement and resolution are the alert's as stored when the report was generated."),
        ])


DEFINITION = Definition(
    name="privileged-activity", version=1, title="Privileged activity",
    controls=("SOC 2 CC6.1", "PCI DSS 10.2.2"),
    purpose="Every permission, configuration, key and retention change in the period, by whom and at what hour, "
            "and how each alert raised in the period was handled.",
    build=build, defaults={"business_hours": [7, 19]})
