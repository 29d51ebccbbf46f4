"""How we know the detectors work: recall, delay and false incidents on labelled data we did not tune on.

Two generators: A (``analytics.scenarios``), the tuning set, and B (``analytics.orgsim``), written
from another spec, the report set. The detectors never see the labels: ``evaluate`` runs the same
``pipeline.analyze`` as ``auditwatch analyze`` (fitted on the attack-free history, or with analyze's
own defaults when ``plain``), and ``analytics.scorecard`` compares the anomalies with the labels,
incident by incident. ``match`` is the window-level matching the tuning notebook uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import polars as pl

from analytics import orgsim, pipeline, scenarios, scorecard
from analytics.labels import Labels
from analytics.scenarios import Dataset, Incident

GENERATORS = ("a", "b")


@dataclass
class Evaluation:
    """One generator's scorecard with what it took to get it."""

    generator: str
    scorecard: scorecard.Scorecard
    events: int
    params: dict
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        what = {"a": "A (tuning set)", "b": "B (report set)"}[self.generator]
        shown = ", ".join(f"{k} {v}" for k, v in self.params.items())
        return [f"generator {what}: {shown}; {self.events:,} events; "
                + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()), *self.scorecard.lines()]

    def to_dict(self) -> dict:
        return {"generator": self.generator, "params": self.params, "events": self.events, "seconds": self.seconds,
                **self.scorecard.to_dict()}


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


def generate(generator: str, *, users: int | None = None, days: int | None = None, seed: int | None = None,
             attacks: bool = True, attack_days: int | None = None) -> Dataset:
    """A labelled dataset from generator ``a`` or ``b`` (each with its own defaults for what is not given)."""
    if generator == "a":
        return scenarios.generate(users=users or 3000, days=days or 21, attack_days=attack_days or 7,
                                  seed=7 if seed is None else seed, attacks_per_day=1 if attacks else 0)
    if generator == "b":
        days = days or 28
        window = (days - attack_days, days) if attack_days else None  # else the second half, off its edges
        return orgsim.generate(users=users or 2000, days=days, seed=1 if seed is None else seed, attacks_on=attacks,
                               attack_window=window, history_days=window[0] if window else None)
    raise ValueError(f"unknown generator {generator!r}; choose from {', '.join(GENERATORS)}")


def labels_of(dataset: Dataset) -> Labels:
    """The labels of a generated dataset, as ``auditwatch generate --labels`` writes them."""
    if isinstance(dataset, orgsim.OrgDataset):
        return dataset.labels()
    return Labels(dataset.incidents, [], dataset.users, dataset.attack_start, dataset.end, "a",
                  {"days": (dataset.end - dataset.start).days, "attack_days": (dataset.end - dataset.attack_start).days})


def classes_of(generator: str) -> tuple[str, ...]:
    return scenarios.SCENARIOS if generator == "a" else orgsim.CLASSES


def evaluate(dataset: Dataset, *, generator: str, plain: bool = False, refit_every: timedelta | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[scorecard.Scorecard, float]:
    """Analyze the dataset's events like ``auditwatch analyze`` and score the anomalies by incident.

    By default the detectors learn from the attack-free history (``--baseline-until`` the labels'
    ``scored_from``); ``plain`` runs analyze with no flags at all, as a new user would (``refit_every``: its
    ``--refit-every``).
    """
    labels = labels_of(dataset)
    began = time.perf_counter()
    found = pipeline.analyze(dataset.events, baseline_until=None if plain else labels.scored_from,
                             refit_every=refit_every if plain else None, progress=(lambda name: progress(f"analyze: {name}")) if progress else None)
    took = time.perf_counter() - began
    return scorecard.score(found, labels, classes=classes_of(generator)), took


def score_labels(labels: Labels, *, anomalies: pl.DataFrame | None = None, events: pl.DataFrame | None = None,
                 plain: bool = False, refit_every: timedelta | None = None) -> scorecard.Scorecard:
    """Score anomalies (or analyze ``events`` first, like ``evaluate``) against labels read from a file."""
    if anomalies is None:
        if events is None:
            raise ValueError("give the anomalies to score, or the events to analyze")
        anomalies = pipeline.analyze(events, baseline_until=None if plain else labels.scored_from,
                                     refit_every=refit_every if plain else None)
    return scorecard.score(anomalies, labels, classes=classes_of(labels.generator or "b"))


def run(generator: str = "b", *, users: int | None = None, days: int | None = None, seed: int | None = None,
        attacks: bool = True, attack_days: int | None = None, plain: bool = False,
        refit_every: timedelta | None = None, progress: Callable[[str], None] | None = None) -> Evaluation:
    """Generate a labelled dataset and evaluate every detector on it."""
    began = time.perf_counter()
    dataset = generate(generator, users=users, days=days, seed=seed, attacks=attacks, attack_days=attack_days)
    generated = time.perf_counter() - began
    if progress:
        progress(f"generator {generator}: {dataset.events.height:,} events, {len(dataset.incidents)} incidents")
    card, analyzed = evaluate(dataset, generator=generator, plain=plain, refit_every=refit_every, progress=progress)
    params = {"users": dataset.users, "days": (dataset.end - dataset.start).days,
              "seed": seed if seed is not None else {"a": 7, "b": 1}[generator],
              "attacks": attacks, "plain": plain,
              **({"refit_every_hours": refit_every.total_seconds() / 3600} if refit_every else {})}
    return Evaluation(generator, card, dataset.events.height, params, {"generate": generated, "analyze": analyzed})
