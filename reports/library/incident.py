"""Incident timeline, for a post-incident review: for one alert (``alert:FINGERPRINT``) or one entity
(``user:ID``, ``ip:ADDRESS``), everything from the first anomaly to resolution, in time order."""

from __future__ import annotations

import json

import polars as pl

from reports.errors import BadScope
from reports.model import Content, Definition, Params, Scope, Table
from reports.source import TS, Source

_TIMELINE = {"at": TS, "kind": pl.String, "what": pl.String, "detail": pl.String}
_ENTITY_TYPES = {"user": "user", "ip": "source_ip"}


def _entity(src: Source, p: Params) -> tuple[str, str, pl.DataFrame, str]:
    """(entity_type, entity_value, the alert row if scoped by alert, its query)."""
    alerts, alerts_q = src.alerts()
    if p.scope.kind == "alert":
        row = alerts.filter(pl.col("fingerprint") == p.scope.value)
        if row.is_empty():
            raise BadScope(f"no alert has fingerprint {p.scope.value!r}; `auditwatch alerts list` shows them")
        group = json.loads(row["group_values"][0] or "{}")
        etype = group.get("entity_type") or ("user" if "user_id" in group else "source_ip")
        value = group.get("entity_value") or group.get("user_id") or group.get("source_ip")
        if value is None or etype not in _ENTITY_TYPES.values():
            raise BadScope(f"alert {p.scope.value} is not about one user or address (its group is {group}); "
                           "scope the report by user:ID or ip:ADDRESS instead")
        return etype, value, row, alerts_q + f"\n  .filter(fingerprint == {p.scope.value!r})"
    etype = _ENTITY_TYPES[p.scope.kind]
    on = pl.col("group_values").str.json_path_match("$.entity_value") == p.scope.value
    return etype, p.scope.value, alerts.filter(on), alerts_q + f"\n  .filter(group_values.entity_value == {p.scope.value!r})"


def build(src: Source, p: Params) -> Content:
    etype, value, alert_rows, alert_q = _entity(src, p)
    scope = Scope("user", value) if etype == "user" else Scope("ip", value)
    entity_params = Params(p.name, p.version, p.start, p.end, scope, p.options)
    events, events_q = src.events(entity_params)
    anomalies, anomalies_q = src.anomalies(p, entity_type=etype, entity_value=value)
    history = [src.alert_history(fp) for fp in alert_rows["fingerprint"]]
    hist = (pl.concat([h for h, _ in history]) if history else
            pl.DataFrame(schema={"at": TS, "from_state": pl.String, "to_state": pl.String, "value": pl.Int64}))
    hist = hist.filter(pl.col("at").is_between(p.start, p.end, closed="left"))
    timeline = pl.concat([
        events.select(pl.col("timestamp").alias("at"), pl.lit("event").alias("kind"),
                      pl.concat_str("event_type", pl.lit(" ("), "outcome", pl.lit(")")).alias("what"),
                      pl.concat_str([pl.format("user {}", "user_id"), pl.col("source_ip"), pl.col("resource_id"),
                                     pl.col("metadata")], separator=" ", ignore_nulls=True).alias("detail")),
        anomalies.select(pl.col("window_start").alias("at"), pl.lit("anomaly").alias("kind"),
                         pl.concat_str("detector", pl.lit(" "), "severity").alias("what"),
                         pl.col("explanation").str.json_path_match("$.summary").fill_null("").alias("detail")),
        hist.select("at", pl.lit("alert").alias("kind"),
                    pl.concat_str(pl.col("from_state").fill_null("new"), pl.lit(" -> "), "to_state").alias("what"),
                    pl.format("value {}", "value").alias("detail")),
    ], how="vertical_relaxed").cast(_TIMELINE).sort("at", "kind", "what", "detail")
    first_anomaly = anomalies["window_start"].min() if anomalies.height else None
    resolved = hist.filter(pl.col("to_state") == "resolved")["at"].max() if hist.height else None
    figures = {
        "Entity": f"{etype} {value}",
        "Events by the entity": events.height,
        "Failed events": int(events.filter(pl.col("outcome") == "failure").height),
        "Anomalies": anomalies.height,
        "Alert state changes": hist.height,
        "First anomaly": first_anomaly.isoformat() if first_anomaly else None,
        "Resolved": resolved.isoformat() if resolved else None,
        "Hours from first anomaly to resolution": round((resolved - first_anomaly).total_seconds() / 3600, 2)
        if resolved and first_anomaly else None,
    }
    alert_table = alert_rows.select("fingerprint", "rule_id", "title", "severity", "state", "started_at",
                                    "acknowledged_by", "acknowledged_at", "resolved_at")
    return Content(
        figures=figures,
        summary=[f"Everything recorded about {etype} {value} in the period: its events, the anomalies scored on "
                 "it and the life of the alerts raised, merged in time order."],
        tables=[
            Table("alerts", "Alerts on the entity", alert_q, alert_table),
            Table("anomalies", "Anomalies", anomalies_q, anomalies.select(
                "window_start", "window_end", "detector", "severity", "score", "peak_at")),
            Table("timeline", "Timeline", "concat(\n  " + events_q + ",\n  " + anomalies_q + ",\n  " +
                  " + ".join(q for _, q in history) + "\n).sort('at')", timeline, limit=200),
        ])


DEFINITION = Definition(
    name="incident-timeline", version=1, title="Incident timeline",
    controls=("SOC 2 CC7.4", "SOC 2 CC7.5", "ISO 27001 A.5.26", "PCI DSS 12.10"),
    purpose="One alert or one entity, from the first anomaly to resolution, for a post-incident review.",
    build=build, scopes=("alert", "user", "ip"))
