"""Generator B: an organisation simulated from its own spec, the report set for evaluation.

Written independently of ``analytics.scenarios`` (generator A, the tuning set) so that the
detectors can be judged on data they were not tuned on. Its world: departments of different
sizes and rhythms on three sites in three time zones, support shifts that follow the sun,
contractors abroad on part-time rotas, office NATs and VPN concentrators that put hundreds of
people behind a few addresses, phones behind carrier NAT, service accounts with steady traffic and
retry loops, travellers, leave and a public holiday. Benign cohort events (a finance month- or
quarter-end close, a company-wide password-expiry day, release nights, an admin's maintenance
window) are labelled as carefully as the attacks, whose timings and intensities are drawn from
ranges. The events have the ingest schema (``analytics.events.SCHEMA``); the labels are
``analytics.labels`` types whose spans and event ids come from the generated events themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from analytics import labels as L
from analytics.orgsim import attacks, cohorts, org, routine
from analytics.orgsim.batch import Book, Events
from analytics.scenarios import Dataset

CLASSES = attacks.CLASSES
START = datetime(2025, 3, 10, tzinfo=UTC)  # a Monday; the March quarter-end close falls in the scored half


@dataclass
class OrgDataset(Dataset):
    """A ``Dataset`` with the benign cohort events and the start of the scored span."""

    cohorts: list[L.CohortEvent] = field(default_factory=list)
    seed: int = 0
    window: tuple[int, int] = (0, 0)

    def labels(self) -> L.Labels:
        return L.Labels(self.incidents, self.cohorts, self.users, self.attack_start, self.end, "b",
                        {"seed": self.seed, "days": (self.end - self.start).days, "attack_window_days": list(self.window),
                         "start": self.start.isoformat()})


def default_window(days: int) -> tuple[int, int, int]:
    """(history days, first attack day, end of attacks): the second half is scored, attacks keep off its edges."""
    history = days // 2
    margin = max(1, days // 14)
    return history, min(history + margin, days - 1), max(days - margin, history + margin + 1)


def generate(*, users: int = 2000, days: int = 28, seed: int = 1, start: datetime = START,
             attack_window: tuple[int, int] | None = None, history_days: int | None = None,
             per_class: int = 3, attacks_on: bool = True) -> OrgDataset:
    """A labelled month of an organisation's audit events (``attacks_on=False``: the same month, no attack).

    ``history_days`` are attack-free and cohort-event-free apart from routine ones (release nights,
    retry loops, trips); ``attack_window`` (days, [first, end)) is where attacks and the scored cohort
    events fall. The same arguments give the same events.
    """
    if users < 20 or days < 4:
        raise ValueError("generate needs at least 20 users and 4 days")
    history, lo, hi = default_window(days)
    history = history if history_days is None else history_days
    lo, hi = attack_window or (lo, hi)
    if not 0 < history <= lo < hi <= days:
        raise ValueError(f"need 0 < history_days ({history}) <= attack window start ({lo}) < end ({hi}) <= days ({days})")
    rng = np.random.default_rng(seed)
    start = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t0 = int(start.timestamp() * 1_000_000)
    first: date = start.date()
    people = org.build(rng, users)
    ev, book = Events(), Book()
    cal = cohorts.plan(rng, people, book, t0=t0, first=first, days=days, window=(lo, hi))
    sessions = routine.people(rng, people, ev, t0=t0, days=days, weekday0=first.weekday(), off=cal.off, trip=cal.trip)
    routine.services(rng, people, ev, book, t0=t0, days=days)
    cohorts.emit(rng, people, ev, book, sessions, cal, t0=t0, first=first)
    if attacks_on:
        attacks.Attacker(np.random.default_rng([seed, 1]), people, ev, book, sessions, t0=t0,
                         window=(lo, hi)).run(per_class)
    frame = ev.frame(rng)
    frame = frame.filter((frame["timestamp"] >= start) & (frame["timestamp"] < start + timedelta(days=days)))
    incidents, cohort_events = book.finish(frame)
    return OrgDataset(frame.drop("tag", "cohort"), sorted(incidents, key=lambda i: i.start), start,
                      start + timedelta(days=history), start + timedelta(days=days), users, people.peer_groups(),
                      cohorts=sorted(cohort_events, key=lambda c: c.start), seed=seed, window=(lo, hi))
