"""Labels beside a generated events file: the attacks (``Incident``) and the benign cohort events.

A labelled incident says which entities an anomaly must name, and when, to count as detecting it;
``LabelledIncident`` adds the actor and the ids of the events the attack produced, so a label can be
checked against the events file. A ``CohortEvent`` is a benign pattern (a finance close, a
password-expiry day, a release night) that evaluation uses only to say which false incidents it
caused. Both round-trip through one JSON file, so ``auditwatch eval`` can score an anomalies file
produced by ``auditwatch analyze`` exactly as a user would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson

from analytics.errors import AnalyticsError
from storage.incidents import Incident

FORMAT = "auditwatch-labels/1"


class LabelsError(AnalyticsError, ValueError):
    """A labels file that cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class LabelledIncident(Incident):
    """An ``Incident`` with the actor behind it and the ids of the events it consists of."""

    actor: str | None = None
    event_ids: tuple[str, ...] = ()
    params: tuple[tuple[str, float], ...] = ()  # the drawn timing and intensity, for the record


@dataclass(frozen=True)
class CohortEvent:
    """A benign pattern in the data (no attack): the entities it involves between ``start`` and ``end``."""

    kind: str
    start: datetime
    end: datetime
    entities: frozenset[str]
    note: str = ""


@dataclass
class Labels:
    """Everything ``evaluate`` needs to know about a dataset besides its events."""

    incidents: list[Incident]
    cohorts: list[CohortEvent] = field(default_factory=list)
    users: int = 0
    scored_from: datetime | None = None  # history before this is attack-free: the detectors may learn from it
    end: datetime | None = None
    generator: str = ""
    params: dict = field(default_factory=dict)


def _incident_json(i: Incident) -> dict:
    out = {"scenario": i.scenario, "start": i.start.isoformat(), "end": i.end.isoformat(),
           "entities": sorted(i.entities), "note": i.note}
    if isinstance(i, LabelledIncident):
        out.update(actor=i.actor, event_ids=list(i.event_ids), params=dict(i.params))
    return out


def dumps(labels: Labels) -> bytes:
    """The labels as indented JSON."""
    return orjson.dumps({
        "format": FORMAT, "generator": labels.generator, "users": labels.users,
        "scored_from": labels.scored_from.isoformat() if labels.scored_from else None,
        "end": labels.end.isoformat() if labels.end else None, "params": labels.params,
        "incidents": [_incident_json(i) for i in labels.incidents],
        "cohorts": [{"kind": c.kind, "start": c.start.isoformat(), "end": c.end.isoformat(),
                     "entities": sorted(c.entities), "note": c.note} for c in labels.cohorts],
    }, option=orjson.OPT_INDENT_2)


def write(path: Path | str, labels: Labels) -> None:
    Path(path).write_bytes(dumps(labels))


def _time(value: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise LabelsError(f"{where}: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise LabelsError(f"{where}: {value!r} has no time zone; add Z or +00:00")
    return moment


def _incidents(rows: Iterable[dict]) -> list[Incident]:
    out: list[Incident] = []
    for k, row in enumerate(rows):
        where = f"incidents[{k}]"
        if not isinstance(row, dict) or not row.get("scenario") or not row.get("entities"):
            raise LabelsError(f"{where} needs a scenario and a non-empty list of entities")
        common = dict(scenario=str(row["scenario"]), start=_time(row.get("start"), where),
                      end=_time(row.get("end"), where), entities=frozenset(map(str, row["entities"])),
                      note=str(row.get("note") or ""))
        if "event_ids" in row or "actor" in row:
            out.append(LabelledIncident(**common, actor=row.get("actor"),
                                        event_ids=tuple(map(str, row.get("event_ids") or ())),
                                        params=tuple(sorted((row.get("params") or {}).items()))))
        else:
            out.append(Incident(**common))
    return out


def loads(raw: bytes | str) -> Labels:
    """Labels from JSON: this module's format, or a bare list of incidents (scenario, start, end, entities)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LabelsError(f"the labels file is not valid JSON ({exc})") from None
    if isinstance(doc, list):
        return Labels(_incidents(doc))
    if not isinstance(doc, dict) or "incidents" not in doc:
        raise LabelsError("expected an object with `incidents` (as `auditwatch generate --labels` writes), "
                          "or a list of incidents")
    cohorts = []
    for k, row in enumerate(doc.get("cohorts") or []):
        where = f"cohorts[{k}]"
        cohorts.append(CohortEvent(str(row.get("kind")), _time(row.get("start"), where), _time(row.get("end"), where),
                                   frozenset(map(str, row.get("entities") or ())), str(row.get("note") or "")))
    return Labels(
        _incidents(doc["incidents"]), cohorts, int(doc.get("users") or 0),
        _time(doc["scored_from"], "scored_from") if doc.get("scored_from") else None,
        _time(doc["end"], "end") if doc.get("end") else None, str(doc.get("generator") or ""),
        dict(doc.get("params") or {}))


def read(path: Path | str) -> Labels:
    return loads(Path(path).read_bytes())
