"""Authentication failures and lockouts (PCI DSS 10.2.1.4, HIPAA 164.308(a)(5)(ii)(C)): daily trends, top
sources and targets, lockouts, and the attacks detected with what became of them."""

from __future__ import annotations

import polars as pl

from reports.library.frames import count, meta
from reports.model import Content, Definition, Params, Table
from reports.source import Source

AUTH_TYPES = ("user_login", "account_locked", "mfa_challenge")


def build(src: Source, p: Params) -> Content:
    top = int(p.options["top"])
    auth, auth_q = src.events(p, event_type=AUTH_TYPES,
                              columns=["timestamp", "event_type", "user_id", "outcome", "source_ip", "metadata"])
    failures = auth.filter(pl.col("outcome") == "failure")
    lockout = (pl.col("event_type") == "account_locked") | meta("reason").str.contains("(?i)lock").fill_null(False)
    lockouts = auth.filter(lockout)
    daily = (auth.group_by(pl.col("timestamp").dt.date().alias("day"))
             .agg((pl.col("outcome") == "failure").sum().alias("failures"),
                  (pl.col("outcome") == "success").sum().alias("successes"),
                  pl.col("user_id").filter(pl.col("outcome") == "failure").n_unique().alias("users_failing"),
                  pl.col("source_ip").filter(pl.col("outcome") == "failure").n_unique().alias("sources_failing"))
             .with_columns((pl.col("failures") / (pl.col("failures") + pl.col("successes"))).round(4)
                           .alias("failure_rate"))
             .sort("day"))
    sources = (failures.group_by("source_ip")
               .agg(pl.len().alias("failures"), pl.col("user_id").n_unique().alias("users_tried"),
                    pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last"))
               .sort(["failures", "source_ip"], descending=[True, False], nulls_last=True).head(top))
    targets = (failures.group_by("user_id")
               .agg(pl.len().alias("failures"), pl.col("source_ip").n_unique().alias("sources"))
               .sort(["failures", "user_id"], descending=[True, False]).head(top))

    anomalies, anomalies_q = src.anomalies(p)
    alerts, alerts_q = src.alerts()
    outcome = alerts.select(pl.col("group_values").str.json_path_match("$.entity_value").alias("entity_value"),
                            pl.col("state").alias("alert_state"), "acknowledged_by", "resolved_at")
    auth_detectors = anomalies.filter(pl.col("detector").str.contains(p.options["detector_pattern"]))
    attacks = (auth_detectors.join(outcome, on="entity_value", how="left")
               .select("detector", "entity_type", "entity_value", "window_start", "window_end", "severity",
                       "score", "alert_state", "acknowledged_by", "resolved_at")
               .unique(subset=["detector", "entity_type", "entity_value", "window_start"], keep="first",
                       maintain_order=True)
               .sort("window_start", "detector", "entity_value"))
    figures = {
        "Authentication attempts": auth.filter(pl.col("event_type") == "user_login").height,
        "Failed authentications": failures.height,
        "Failure rate": round(failures.height / auth.height, 4) if auth.height else None,
        "Distinct failing sources": failures["source_ip"].n_unique(),
        "Distinct accounts failing": failures["user_id"].n_unique(),
        "Lockouts": lockouts.height,
        "Attacks detected": attacks.height,
        "Attacks with an alert handled": count(attacks, pl.col("acknowledged_by").is_not_null()
                                               | pl.col("resolved_at").is_not_null()),
    }
    return Content(
        figures=figures,
        summary=[f"Sign-in events ({', '.join(AUTH_TYPES)}) in the period, both tiers. Attacks are the "
                 f"anomalies of detectors matching {p.options['detector_pattern']!r}, with the state of the alert "
                 "on the same entity."],
        tables=[
            Table("daily", "Daily trend", auth_q + "\n  .group_by(timestamp.dt.date()).agg(failures, successes, "
                  "n_unique(user_id), n_unique(source_ip))", daily),
            Table("top_sources", f"Top {top} failing sources", auth_q + "\n  .filter(outcome == 'failure')"
                  f".group_by('source_ip').agg(len).sort(desc).head({top})", sources),
            Table("top_targets", f"Top {top} accounts failing", auth_q + "\n  .filter(outcome == 'failure')"
                  f".group_by('user_id').agg(len).sort(desc).head({top})", targets),
            Table("lockouts", "Lockouts", auth_q + "\n  .filter(event_type == 'account_locked' or "
                  "metadata.reason ~ 'lock')", lockouts.select("timestamp", "user_id", "source_ip", "event_type")),
            Table("attacks", "Detected attacks and their outcomes",
                  f"{anomalies_q}\n  .filter(detector ~ {p.options['detector_pattern']!r})\n  .join({alerts_q}"
                  ".select(entity_value = group_values.entity_value, state, acknowledged_by, resolved_at), "
                  "on='entity_value', how='left')", attacks),
        ])


DEFINITION = Definition(
    name="auth-failures", version=1, title="Authentication failures and lockouts",
    controls=("PCI DSS 10.2.1.4", "HIPAA 164.308(a)(5)(ii)(C)"),
    purpose="Failed sign-ins and lockouts over the period: daily trends, the sources and accounts most involved, "
            "and the attacks the detectors found with what became of them.",
    build=build, defaults={"top": 20, "detector_pattern": "(?i)login|auth|brute|spray|credential|password"})
