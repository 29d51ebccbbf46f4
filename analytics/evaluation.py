"""How we know the detectors work: recall, precision, delay and false alarms on a labelled dataset.

The detectors never see the labels: they are fitted on the attack-free history and score the
attack days like the scheduled job would; only this module compares their anomalies with the
incidents. An anomaly detects an incident when its entity is one of the incident's (attacker
address, victim or actor, targeted users) and its window overlaps the incident; an anomaly that
matches no incident is a false one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import polars as pl

from analytics import pipeline, scenarios
from analytics.scenarios import Dataset, Incident

TARGETS = {"recall": 0.95, "precision": 0.9, "false_per_day_per_1000_users": 1.0, "burst_median_delay_s": 120.0}


@dataclass
class ScenarioResult:
    scenario: str
    incidents: int
    detected: int
    median_delay_s: float | None
    anomalies: int  # anomalies attributed to this scenario's incidents
    detectors: dict[str, int] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else float("nan")


@dataclass
class Report:
    scenarios: list[ScenarioResult]
    anomalies: int
    true_anomalies: int
    false_anomalies: int
    days: float
    users: int
    events_scored: int
    seconds: dict[str, float]
    false_by_detector: dict[str, int]
    false_examples: list[str]

    @property
    def precision(self) -> float:
        return self.true_anomalies / self.anomalies if self.anomalies else float("nan")

    @property
    def false_per_day_per_1000_users(self) -> float:
        return self.false_anomalies / self.days / (self.users / 1000)

    @property
    def burst_median_delay_s(self) -> float | None:
        delays = [s.median_delay_s for s in self.scenarios if s.scenario in scenarios.BURSTS and s.median_delay_s
                  is not None]
        return float(np.median(delays)) if delays else None

    def passed(self) -> dict[str, bool]:
        delay = self.burst_median_delay_s
        return {
            "recall": all(s.recall >= TARGETS["recall"] for s in self.scenarios),
            "precision": self.precision >= TARGETS["precision"],
            "false_per_day_per_1000_users": self.false_per_day_per_1000_users <= TARGETS["false_per_day_per_1000_users"],
            "burst_median_delay_s": delay is not None and delay <= TARGETS["burst_median_delay_s"],
        }

    def lines(self) -> list[str]:
        out = [f"{'scenario':28} {'incidents':>9} {'recall':>7} {'median delay':>13} {'anomalies':>9}  detectors"]
        for s in self.scenarios:
            delay = f"{s.median_delay_s:.0f} s" if s.median_delay_s is not None else "-"
            detectors = ", ".join(f"{k}:{v}" for k, v in sorted(s.detectors.items()))
            out.append(f"{s.scenario:28} {s.incidents:9d} {s.recall:7.3f} {delay:>13} {s.anomalies:9d}  {detectors}")
        out += [
            f"anomalies {self.anomalies}, true {self.true_anomalies}, false {self.false_anomalies} "
            f"(by detector: {', '.join(f'{k}:{v}' for k, v in sorted(self.false_by_detector.items())) or 'none'})",
            f"precision {self.precision:.3f}; false anomalies per day per 1,000 users "
            f"{self.false_per_day_per_1000_users:.2f}; median burst detection delay "
            f"{self.burst_median_delay_s if self.burst_median_delay_s is not None else float('nan'):.0f} s",
            f"{self.users} users, {self.days:.0f} scored days, {self.events_scored:,} events scored; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()),
            "targets: " + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in self.passed().items()),
        ]
        return out


def match(anomalies: pl.DataFrame, incidents: list[Incident]) -> pl.DataFrame:
    """Each anomaly with the index of the first incident it detects (null: a false anomaly)."""
    labels = pl.DataFrame({
        "incident": list(range(len(incidents))),
        "entity_value": [sorted(i.entities) for i in incidents],
        "i_start": [i.start for i in incidents], "i_end": [i.end for i in incidents],
    }, schema={"incident": pl.Int64, "entity_value": pl.List(pl.String), "i_start": scenarios.TS,
               "i_end": scenarios.TS}).explode("entity_value")
    indexed = anomalies.with_row_index("_a")
    hits = (indexed.join(labels, on="entity_value", how="inner")
            .filter((pl.col("window_start") <= pl.col("i_end")) & (pl.col("window_end") > pl.col("i_start")))
            .group_by("_a").agg(pl.col("incident").min()))
    return indexed.join(hits, on="_a", how="left").drop("_a")


def evaluate(dataset: Dataset, *, progress: Callable[[str], None] | None = None) -> Report:
    """Fit on the attack-free history, score the attack days, compare with the labels."""
    timings: dict[str, float] = {}
    events = dataset.events
    history = events.filter(pl.col("timestamp") < dataset.attack_start)
    context = events.filter(pl.col("timestamp") >= dataset.attack_start - timedelta(hours=1))
    began = time.perf_counter()
    detectors = pipeline.fit_all(history, pipeline.build(peer_groups=dataset.peer_groups),
                                 progress=(lambda n: progress(f"fitted {n}")) if progress else None)
    timings["fit"] = time.perf_counter() - began
    began = time.perf_counter()
    found = pipeline.detect_all(detectors, context, start=dataset.attack_start,
                                progress=(lambda n: progress(f"scored {n}")) if progress else None)
    timings["score"] = time.perf_counter() - began
    matched = match(found, dataset.incidents)
    results = []
    for name in scenarios.SCENARIOS:
        ids = [k for k, i in enumerate(dataset.incidents) if i.scenario == name]
        mine = matched.filter(pl.col("incident").is_in(ids))
        first = mine.group_by("incident").agg(pl.col("window_end").min().alias("seen"))
        delays = [max((row["seen"] - dataset.incidents[row["incident"]].start).total_seconds(), 0.0)
                  for row in first.iter_rows(named=True)]
        results.append(ScenarioResult(
            name, len(ids), first.height, float(np.median(delays)) if delays else None, mine.height,
            dict(mine.group_by("detector").len().iter_rows())))
    false = matched.filter(pl.col("incident").is_null())
    examples = [f"{r['detector']} {r['entity_value']} {r['window_start']:%m-%d %H:%M} "
                f"{r['score']:.2f}: {r['explanation'][:160]}" for r in false.head(8).iter_rows(named=True)]
    days = (dataset.end - dataset.attack_start).total_seconds() / 86400
    return Report(results, matched.height, matched.height - false.height, false.height, days, dataset.users,
                  context.height, timings, dict(false.group_by("detector").len().iter_rows()), examples)


def run(*, users: int = 3000, days: int = 21, attack_days: int = 7, seed: int = 7,
        progress: Callable[[str], None] | None = None) -> Report:
    """Generate a labelled dataset of this size and evaluate every detector on it."""
    began = time.perf_counter()
    dataset = scenarios.generate(users=users, days=days, attack_days=attack_days, seed=seed)
    generated = time.perf_counter() - began
    if progress:
        progress(f"generated {dataset.events.height:,} events, {len(dataset.incidents)} incidents")
    report = evaluate(dataset, progress=progress)
    report.seconds = {"generate": generated, **report.seconds}
    return report
