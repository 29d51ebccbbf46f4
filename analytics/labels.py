"""What a labelled dataset says happened: attacks to find, and benign look-alikes not to page on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Incident:
    """A labelled attack (or look-alike): anomalies on any of ``entities`` overlapping [start, end] match it."""

    scenario: str
    start: datetime
    end: datetime
    entities: frozenset[str]
    note: str = ""
