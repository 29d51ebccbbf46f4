"""Access review (SOC 2 CC6.2/CC6.3, ISO 27001 A.5.18): roles and keys held, grants and revocations,
keys unused for 90 days and accounts with no recent activity, all as of the period's end."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from reports.library.frames import count, meta
from reports.model import Content, Definition, Params, Table
from reports.source import Source

GRANT_TYPES = ("permission_change", "api_key_created", "api_key_revoked", "user_created")
# what the grants table shows: reading only these halves what crosses the wire
CHANGE_COLUMNS = ("timestamp", "user_id", "event_type", "outcome", "resource_id", "metadata")


def build(src: Source, p: Params) -> Content:
    idle = timedelta(days=int(p.options["idle_days"]))
    since = p.end - idle
    keys, keys_q = src.keys()
    # A failed attempt on an account is not its holder's activity (a spray touches dormant accounts too).
    last, activity_q = src.last_activity(since, p.end)

    held = (keys.filter(pl.col("created_at") < p.end)
            .with_columns(active=pl.col("revoked_at").is_null() | (pl.col("revoked_at") >= p.end))
            .join(last, left_on="principal", right_on="user_id", how="left")
            .with_columns(unused=pl.col("active") & pl.col("last_activity").is_null())
            .select("name", "role", "created_at", "revoked_at", "active", "last_activity", "unused")
            .sort("role", "name"))
    held_q = (f"{keys_q}\n  .filter(created_at < {p.end.isoformat()})\n  .join({activity_q}, "
              "left_on='principal')")
    unused = held.filter(pl.col("unused")).select("name", "role", "created_at")

    changes, changes_q = src.events(p, event_type=GRANT_TYPES, columns=CHANGE_COLUMNS)
    grants = (changes.with_columns(meta("granted"), meta("revoked"), meta("role"), meta("target_user"),
                                   meta("name"))
              .select("timestamp", pl.col("user_id").alias("by"), "event_type", "outcome",
                      pl.coalesce("target_user", "name", "resource_id").alias("subject"),
                      pl.coalesce("granted", "role").alias("granted"), "revoked")
              .sort("timestamp"))
    revocation = (pl.col("event_type") == "api_key_revoked") | pl.col("revoked").is_not_null()

    users, users_q = src.users()
    dormant = (users.filter((pl.col("created_at") < p.end) & (pl.col("kind") != "apikey"))
               .filter(pl.col("disabled_at").is_null() | (pl.col("disabled_at") >= p.end))
               .join(last, on="user_id", how="anti")
               .select("user_id", "display_name", "department", "kind", "created_at")
               .sort("user_id"))
    if p.scope.kind == "user":
        dormant = dormant.filter(pl.col("user_id") == p.scope.value)
    days = idle.days
    figures = {
        "API keys active at period end": count(held, pl.col("active")),
        "Admin keys active at period end": count(held, pl.col("active") & (pl.col("role") == "admin")),
        "Grants and key creations in period": count(grants, ~revocation),
        "Revocations in period": count(grants, revocation),
        f"Active keys unused for {days} days": unused.height,
        f"Accounts with no activity in {days} days": dormant.height,
    }
    return Content(
        figures=figures,
        summary=[f"Roles and API keys as held at {p.end:%Y-%m-%d %H:%M} UTC, with each key's last use in the "
                 f"{days} days before. Grants and revocations are the audited changes within the period."],
        tables=[
            Table("keys", "API keys and their roles at period end", held_q, held,
                  "active: not revoked before the period's end; last_activity: the key's last audited action "
                  f"in the {days} days before the period's end."),
            Table("grants", "Grants and revocations in the period", changes_q + "\n  .select(time, by, type, "
                  "subject = coalesce(target_user, name, resource_id), granted, revoked)", grants),
            Table("unused_keys", f"Active keys unused for {days} days", held_q + "\n  .filter(active & "
                  "last_activity is null)", unused),
            Table("dormant_accounts", f"Accounts with no activity in the {days} days before period end",
                  f"{users_q}\n  .filter(created_at < end, kind != 'apikey', not disabled by end)\n  .anti_join({activity_q}, "
                  "on='user_id')", dormant),
        ])


DEFINITION = Definition(
    name="access-review", version=1, title="Access review",
    controls=("SOC 2 CC6.2", "SOC 2 CC6.3", "ISO 27001 A.5.18"),
    purpose="Who holds which role and API key, what access was granted and revoked in the period, which keys "
            "went unused and which accounts show no recent activity.",
    build=build, defaults={"idle_days": 90})
