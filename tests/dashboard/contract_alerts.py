"""A stand-in for ``alerts.actions`` that follows its published contract exactly, for the feed's browser test.

The alerts package is built in parallel; the dashboard only ever calls these three functions. State
lives in a JSON file (AUDITWATCH_TEST_ALERTS_FILE) so every server worker process sees the same alerts.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AlertView:
    fingerprint: str
    rule_id: str
    title: str
    severity: str
    state: str  # pending|firing|resolved
    labels: dict[str, str]
    group_values: dict[str, str]
    started_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    count: int
    acknowledged_by: str | None
    acknowledged_until: datetime | None
    silenced: bool
    runbook_url: str | None
    silences: list[dict[str, Any]] = field(default_factory=list, compare=False, repr=False)


_TIMES = ("started_at", "updated_at", "resolved_at", "acknowledged_until")


@contextmanager
def _state():
    path = Path(os.environ["AUDITWATCH_TEST_ALERTS_FILE"])
    with open(path, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        data = json.load(handle)
        yield data
        handle.seek(0)
        handle.truncate()
        json.dump(data, handle, default=str)


def _view(raw: dict[str, Any]) -> AlertView:
    values = {k: (datetime.fromisoformat(v) if k in _TIMES and v else v) for k, v in raw.items()}
    return AlertView(**values)


def seed(path: Path, alerts: list[AlertView]) -> None:
    path.write_text(json.dumps({"alerts": [asdict(a) for a in alerts], "silences": []}, default=str))


def list_alerts(pool, *, states=None, since=None, limit=100) -> list[AlertView]:
    with _state() as data:
        found = [_view(a) for a in data["alerts"]]
    return [a for a in found if (not states or a.state in states) and (since is None or a.updated_at >= since)][:limit]


def acknowledge(pool, fingerprint, *, by, comment="", until=None, audit=None, now=None) -> AlertView:
    with _state() as data:
        alert = next(a for a in data["alerts"] if a["fingerprint"] == fingerprint)
        alert["acknowledged_by"] = by
        alert["acknowledged_until"] = until.isoformat() if until else None
        view = _view(alert)
    if audit:
        audit(fingerprint, {"change": "alert_acknowledged", "comment": comment})
    return view


def create_silence(pool, *, matchers: dict[str, str], starts_at, ends_at, created_by, comment, audit=None) -> int:
    with _state() as data:
        data["silences"].append({"matchers": matchers, "starts_at": str(starts_at), "ends_at": str(ends_at),
                                 "created_by": created_by, "comment": comment})
        silence_id = len(data["silences"])
        for alert in data["alerts"]:
            values = {"rule_id": alert["rule_id"], **alert["labels"], **alert["group_values"]}
            if all(values.get(k) == v for k, v in matchers.items()):
                alert["silenced"] = True
    if audit:
        audit(str(silence_id), {"change": "silence_created", "matchers": matchers})
    return silence_id
