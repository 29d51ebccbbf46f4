"""A labelled attack in the stored events: the ground truth that evaluation and backtests score against.

Both generators of labelled traffic produce these: ``ingest.demo`` (the live demo and
``auditwatch seed-demo``) and ``analytics.scenarios`` (the offline evaluation set). The
generators stay independent; the label they hand to ``analytics.evaluation`` is one type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Incident:
    """A labelled attack: anomalies on any of ``entities`` overlapping [start, end] detect it.

    ``user_id`` and ``source_ip`` name the actor where one user or one address drives the attack
    (the demo's incidents); ``entities`` is always the full set an anomaly may name.
    """

    scenario: str
    start: datetime
    end: datetime
    entities: frozenset[str]
    note: str = ""
    user_id: str | None = None
    source_ip: str | None = None

    @classmethod
    def by(cls, scenario: str, start: datetime, end: datetime, user_id: str | None,
           source_ip: str | None) -> Incident:
        """An incident driven by one user and/or one address (both are its entities)."""
        return cls(scenario, start, end, frozenset(e for e in (user_id, source_ip) if e), user_id=user_id,
                   source_ip=source_ip)
