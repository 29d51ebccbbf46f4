"""Scoring anomalies against labels by incident, the way an on-call analyst experiences them.

Anomalies of one detector about one entity whose windows overlap or lie within ``merge_gap`` of
each other are one *alert incident* (one page, not a window each). An alert incident detects a
labelled incident when it names one of the incident's entities (an entity such as "user|address"
names both parts) and its span meets the incident's span extended by ``grace``; one that detects
nothing is a false incident, attributed to the benign cohort events it meets the same way. Nothing
here knows which detector should catch what.

Figures: per attack class the recall and the median delay (first matching window's end minus the
incident's start); false incidents per day per 1,000 users over the scored span; per detector the
precision of its alert incidents; per cohort kind the false incidents it caused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from analytics.errors import MalformedInput
from analytics.events import TS
from analytics.labels import CohortEvent, Labels
from analytics.scenarios import Incident

MERGE_GAP = timedelta(hours=1)
GRACE = timedelta(hours=1)
TARGETS = {"recall": 0.95, "false_incidents_per_day_per_1000_users": 1.0}
MISSED_SHOWN = 40  # missed incidents printed; the JSON has them all
_SPANS = {"key": pl.Int64, "entity": pl.String, "lo": TS, "hi": TS}


def read_anomalies(path: Path | str) -> pl.DataFrame:
    """The anomalies ``auditwatch analyze --out`` wrote (one JSON object per line), the columns scoring needs.

    A merged anomaly's span may be named start/end or first_seen/last_seen instead of window_start/window_end.
    """
    rows = []
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
                start = next(obj[k] for k in ("window_start", "start", "first_seen") if obj.get(k))
                end = next(obj[k] for k in ("window_end", "end", "last_seen") if obj.get(k))
                rows.append({"detector": str(obj["detector"]), "entity_type": obj.get("entity_type"),
                             "entity_value": str(obj["entity_value"]), "window_start": datetime.fromisoformat(start),
                             "window_end": datetime.fromisoformat(end),
                             "first_window_end": (datetime.fromisoformat(obj["first_window_end"])
                                                  if obj.get("first_window_end") else None),
                             "score": float(obj.get("score") or obj.get("peak_score") or 0.0)})
            except (orjson.JSONDecodeError, KeyError, StopIteration, TypeError, ValueError):
                raise MalformedInput(line_no, "not an anomaly as `auditwatch analyze` writes them: it needs detector, "
                                     "entity_value, window_start (or start) and window_end (or end)") from None
    return pl.DataFrame(rows, schema={"detector": pl.String, "entity_type": pl.String, "entity_value": pl.String,
                                      "window_start": TS, "window_end": TS, "first_window_end": TS,
                                      "score": pl.Float64})


def merge(anomalies: pl.DataFrame, gap: timedelta = MERGE_GAP) -> pl.DataFrame:
    """Alert incidents: one row per detector, entity and run of windows no more than ``gap`` apart."""
    if anomalies.is_empty():
        return pl.DataFrame(schema={"alert": pl.Int64, "detector": pl.String, "entity_value": pl.String,
                                    "start": TS, "end": TS, "first_end": TS, "peak": pl.Float64,
                                    "windows": pl.UInt32})
    ordered = anomalies.sort("detector", "entity_value", "window_start", "window_end")
    key = ["detector", "entity_value"]
    reach = pl.col("window_end").cum_max().shift(1).over(key)  # the furthest end of the entity's earlier windows
    runs = ordered.with_columns(
        (reach.is_null() | (pl.col("window_start") > reach + gap)).cum_sum().over(key).alias("_run"))
    return (runs.group_by(*key, "_run", maintain_order=True)
            .agg(pl.col("window_start").min().alias("start"), pl.col("window_end").max().alias("end"),
                 pl.col("window_end").min().alias("first_end"), pl.col("score").max().alias("peak"),
                 pl.len().alias("windows"))
            .drop("_run").with_row_index("alert").with_columns(pl.col("alert").cast(pl.Int64)))


def _labels_frame(items: Sequence[Incident | CohortEvent], grace: timedelta) -> pl.DataFrame:
    return pl.DataFrame({
        "key": list(range(len(items))), "entity": [sorted(i.entities) for i in items],
        "lo": [i.start for i in items], "hi": [i.end + grace for i in items],
    }, schema={**_SPANS, "entity": pl.List(pl.String)}).explode("entity")


def meets(spans: pl.DataFrame, items: Sequence[Incident | CohortEvent], *, start: str, end: str,
          grace: timedelta = GRACE) -> pl.DataFrame:
    """Pairs (row index ``_row`` of ``spans``, ``key`` of an item) whose entity and time agree."""
    if spans.is_empty() or not items:
        return pl.DataFrame(schema={"_row": pl.Int64, "key": pl.Int64})
    parts = (spans.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
             .select("_row", start, end, pl.col("entity_value").str.split("|").alias("entity")).explode("entity"))
    return (parts.join(_labels_frame(items, grace), on="entity", how="inner")
            .filter((pl.col(start) <= pl.col("hi")) & (pl.col(end) > pl.col("lo")))
            .select("_row", "key").unique())


@dataclass
class ClassResult:
    scenario: str
    incidents: int
    detected: int
    median_delay_s: float | None
    by_detector: dict[str, int] = field(default_factory=dict)  # incidents each detector found

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else float("nan")


@dataclass
class Scorecard:
    classes: list[ClassResult]
    detectors: dict[str, dict[str, int]]  # detector: alert incidents, true, false, windows
    cohorts: dict[str, dict[str, int]]  # cohort kind: {"events": n, detector: false incidents, ...}
    false_incidents: int
    unexplained_false: int
    days: float
    users: int
    anomalies: int
    ignored_before: int
    scored_from: datetime
    end: datetime
    false_examples: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # each incident no alert met, in time order

    @property
    def false_per_day_per_1000_users(self) -> float:
        return self.false_incidents / self.days / (self.users / 1000) if self.days and self.users else float("nan")

    def precision(self, detector: str) -> float:
        d = self.detectors[detector]
        return d["true"] / d["incidents"] if d["incidents"] else float("nan")

    def passed(self) -> dict[str, bool]:
        return {"recall": all(c.recall >= TARGETS["recall"] for c in self.classes if c.incidents),
                "false_incidents_per_day_per_1000_users":
                    self.false_per_day_per_1000_users <= TARGETS["false_incidents_per_day_per_1000_users"]}

    def lines(self) -> list[str]:
        out = [f"{'attack class':28} {'incidents':>9} {'recall':>7} {'median delay':>13}  found by"]
        for c in self.classes:
            delay = f"{c.median_delay_s:.0f} s" if c.median_delay_s is not None else "-"
            found = ", ".join(f"{k}:{v}" for k, v in sorted(c.by_detector.items())) or "-"
            out.append(f"{c.scenario:28} {c.incidents:9d} {c.recall:7.3f} {delay:>13}  {found}")
        out.append(f"{'detector':28} {'incidents':>9} {'true':>6} {'false':>6} {'precision':>9} {'windows':>8}")
        for name, d in sorted(self.detectors.items()):
            out.append(f"{name:28} {d['incidents']:9d} {d['true']:6d} {d['false']:6d} {self.precision(name):9.3f} "
                       f"{d['windows']:8d}")
        if self.cohorts:
            out.append("false incidents by benign cohort event:")
            for kind, got in sorted(self.cohorts.items()):
                by = {k: v for k, v in got.items() if k not in ("events", "false")}
                out.append(f"  {kind:24} {got['events']:4d} event(s) → {got['false']:5d} false"
                           + (f" ({', '.join(f'{k}:{v}' for k, v in sorted(by.items()))})" if by else ""))
            out.append(f"  {'(no cohort event)':24}      → {self.unexplained_false:5d} false")
        out += [
            f"false incidents {self.false_incidents} over {self.days:.1f} days × {self.users:,} users = "
            f"{self.false_per_day_per_1000_users:.2f} per day per 1,000 users; {self.anomalies} anomaly windows "
            f"scored from {self.scored_from:%Y-%m-%d %H:%M}"
            + (f" ({self.ignored_before} earlier windows ignored)" if self.ignored_before else ""),
            "targets (recall ≥ 0.95 per class, ≤ 1 false incident per day per 1,000 users): "
            + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in self.passed().items()),
        ]
        return out

    def detail_lines(self) -> list[str]:
        """Which incidents were missed, and the highest-scoring false incidents: where to look next."""
        out = []
        if self.missed:
            shown = self.missed[:MISSED_SHOWN]
            out += ["missed incidents:", *(f"  {line}" for line in shown)]
            if len(self.missed) > len(shown):
                out.append(f"  … and {len(self.missed) - len(shown)} more (all of them in --json's missed_incidents)")
        if self.false_examples:
            out += ["highest-scoring false incidents:", *(f"  {line}" for line in self.false_examples)]
        return out

    def to_dict(self) -> dict:
        return {
            "classes": [{"scenario": c.scenario, "incidents": c.incidents, "detected": c.detected, "recall": c.recall,
                         "median_delay_s": c.median_delay_s, "by_detector": c.by_detector} for c in self.classes],
            "detectors": {k: {**v, "precision": self.precision(k)} for k, v in self.detectors.items()},
            "cohorts": self.cohorts, "false_incidents": self.false_incidents,
            "unexplained_false_incidents": self.unexplained_false,
            "false_incidents_per_day_per_1000_users": self.false_per_day_per_1000_users,
            "days": self.days, "users": self.users, "anomaly_windows": self.anomalies,
            "ignored_before_scored_from": self.ignored_before, "scored_from": self.scored_from.isoformat(),
            "end": self.end.isoformat(), "passed": self.passed(), "targets": TARGETS,
            "missed_incidents": self.missed, "false_examples": self.false_examples,
        }


def score(anomalies: pl.DataFrame, labels: Labels, *, classes: Sequence[str] = (), merge_gap: timedelta = MERGE_GAP,
          grace: timedelta = GRACE) -> Scorecard:
    """The scorecard of ``anomalies`` (the anomaly schema) against ``labels`` over [scored_from, end)."""
    if labels.scored_from is None or labels.end is None or not labels.users:
        raise ValueError("the labels need scored_from, end and users to turn false incidents into a rate")
    lo, hi = labels.scored_from, labels.end
    inside = anomalies.filter((pl.col("window_start") >= lo) & (pl.col("window_start") < hi))
    alerts = merge(inside, merge_gap)
    incidents = [i for i in labels.incidents if lo <= i.start < hi]
    hits = meets(alerts, incidents, start="start", end="end", grace=grace)
    true_alerts = set(hits["_row"].to_list())
    alerts = alerts.with_columns(pl.col("alert").is_in(list(true_alerts)).alias("true"))

    # delays: the first matching window of each incident, from the raw windows (a merged incident row
    # carries its first window's end, when it could first have been reported)
    windows = meets(inside, incidents, start="window_start", end="window_end", grace=grace)
    reported = (pl.coalesce("first_window_end", "window_end") if "first_window_end" in inside.columns
                else pl.col("window_end"))
    timed = windows.join(inside.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
                         .select("_row", reported.alias("window_end")), on="_row")
    first = dict(timed.group_by("key").agg(pl.col("window_end").min()).iter_rows())
    matched = hits.join(alerts.select(pl.col("alert").alias("_row"), "detector", "end"), on="_row")
    for key, end in matched.group_by("key").agg(pl.col("end").min()).iter_rows():
        first.setdefault(key, end)  # met by an alert's span but by none of its windows (a gap inside it)
    per_detector = matched.unique(["key", "detector"]).select("key", "detector")
    results = []
    names = list(dict.fromkeys([*classes, *(i.scenario for i in incidents)]))
    for name in names:
        keys = [k for k, i in enumerate(incidents) if i.scenario == name]
        seen = [k for k in keys if k in first]
        delays = [max((first[k] - incidents[k].start).total_seconds(), 0.0) for k in seen]
        mine = per_detector.filter(pl.col("key").is_in(keys))
        results.append(ClassResult(name, len(keys), len(seen), float(np.median(delays)) if delays else None,
                                   dict(mine.group_by("detector").len().sort("detector").iter_rows())))

    detectors: dict[str, dict[str, int]] = {}
    for row in alerts.group_by("detector").agg(pl.len().alias("incidents"), pl.col("true").sum().alias("true"),
                                               pl.col("windows").sum().alias("windows")).iter_rows(named=True):
        detectors[row["detector"]] = {"incidents": row["incidents"], "true": int(row["true"]),
                                      "false": row["incidents"] - int(row["true"]), "windows": int(row["windows"])}
    false = alerts.filter(~pl.col("true"))
    cohort_events = [c for c in labels.cohorts if c.end >= lo and c.start < hi]
    blamed = meets(false, cohort_events, start="start", end="end", grace=grace)
    cohorts: dict[str, dict[str, int]] = {}
    for c in cohort_events:
        cohorts.setdefault(c.kind, {"events": 0, "false": 0})["events"] += 1
    kind_of = pl.DataFrame({"key": list(range(len(cohort_events))), "kind": [c.kind for c in cohort_events]},
                           schema={"key": pl.Int64, "kind": pl.String})
    kinds = (blamed.join(kind_of, on="key").unique(["_row", "kind"])
             .join(false.with_row_index("_r").select(pl.col("_r").cast(pl.Int64).alias("_row"), "detector"), on="_row"))
    for kind, detector, n in kinds.group_by("kind", "detector").len().iter_rows():
        cohorts[kind]["false"] += n
        cohorts[kind][detector] = n
    explained = set(blamed["_row"].to_list())
    examples = [f"{r['detector']} {r['entity_value']} {r['start']:%m-%d %H:%M}–{r['end']:%H:%M} peak {r['peak']:.2f} "
                f"({r['windows']} windows)" for r in false.sort("peak", descending=True).head(8).iter_rows(named=True)]
    missed = [f"{i.scenario} {', '.join(sorted(i.entities))} {i.start:%m-%d %H:%M}–{i.end:%m-%d %H:%M}"
              + (f": {i.note}" if i.note else "")
              for i in sorted((i for k, i in enumerate(incidents) if k not in first), key=lambda i: i.start)]
    return Scorecard(results, detectors, cohorts, false.height, false.height - len(explained),
                     (hi - lo).total_seconds() / 86400, labels.users, inside.height,
                     anomalies.height - inside.height, lo, hi, examples, missed)
