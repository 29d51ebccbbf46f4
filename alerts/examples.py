"""A rule's example events and anomalies, materialised at a given evaluation time (detection-as-code)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from alerts.rules import Example, example_offset
from storage.events import EventRecord, Outcome


def example_events(example: Example, now: datetime) -> list[EventRecord]:
    """Each spec repeated ``repeat`` times, ``spacing`` apart from ``at`` (relative to ``now``); "{i}" in a
    value becomes the repetition number, so one line can stand for fifty users or addresses."""
    out = []
    for spec in example.events:
        start = now + example_offset(spec.get("at", "-1s"))
        spacing = example_offset(spec.get("spacing", "1s"))
        for i in range(int(spec.get("repeat", 1))):
            at = start + i * spacing
            values = {k: str(v).replace("{i}", str(i)) for k, v in spec.items()
                      if k not in {"at", "repeat", "spacing"}}
            out.append(EventRecord(event_id=uuid.uuid4(), timestamp=at, received_at=at,
                                   event_type=values.get("event_type", "user_login"),
                                   user_id=values.get("user_id", "example-user"),
                                   outcome=Outcome(values.get("outcome", "success")),
                                   source=values.get("source"), source_ip=values.get("source_ip")))
    return out


def example_anomalies(example: Example, now: datetime) -> list[dict[str, Any]]:
    """Anomaly rows (detector, entity, window, score, severity, summary): a 5-minute window ending at ``at``."""
    out = []
    for spec in example.anomalies:
        end = now + example_offset(spec.get("at", "-1m"))
        out.append({"detector": spec["detector"], "entity_type": spec["entity_type"],
                    "entity_value": str(spec["entity_value"]), "window_start": end - timedelta(minutes=5),
                    "window_end": end, "score": float(spec["score"]), "severity": spec["severity"],
                    "summary": spec.get("summary", "")})
    return out
