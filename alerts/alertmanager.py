"""Speaking Alertmanager's languages, for teams that already route alerts with one.

Two things: the **webhook payload, version 4** (what Alertmanager POSTs to a webhook receiver), which our
generic webhook sends instead of its own format when ``webhook_format = "alertmanager"``; and a notifier
that **pushes alerts to an Alertmanager** (``POST /api/v2/alerts``), which then groups, silences and routes
them itself. Both are checked against Debian's real ``prometheus-alertmanager`` in the tests.

Alertmanager forgets a pushed alert whose ``endsAt`` has passed (or, without one, after its
``resolve_timeout``), so a firing alert is pushed with ``endsAt`` ``hold`` ahead (default 24 h, more than
our repeat interval); a resolved one with its resolution time, which ends it at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from alerts.errors import DeliveryError

VERSION = "4"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended" endsAt in webhook payloads
_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _rfc3339(value: str | datetime | None) -> str | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def label_name(name: str) -> str:
    """A valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*): other characters become `_`."""
    clean = _LABEL_NAME.sub("_", name) or "_"
    return f"_{clean}" if clean[0].isdigit() else clean


def labels(alert: Mapping[str, Any]) -> dict[str, str]:
    """An alert's labels for Alertmanager: ours, plus ``alertname`` (the rule id), as its convention asks."""
    out = {label_name(str(k)): str(v) for k, v in (alert.get("labels") or {}).items() if str(v) != ""}
    out.setdefault("alertname", str(alert.get("rule_id") or alert.get("fingerprint")))
    out.setdefault("severity", str(alert.get("severity") or "warning"))
    return out


def annotations(alert: Mapping[str, Any]) -> dict[str, str]:
    out = {"summary": str(alert.get("title") or ""), "dashboard_url": alert.get("dashboard_url") or "",
           "runbook_url": alert.get("runbook_url") or "", "count": str(alert.get("count", "")),
           "acknowledged_by": alert.get("acknowledged_by") or ""}
    return {k: v for k, v in out.items() if v}


def _status(alert: Mapping[str, Any]) -> str:
    # Alertmanager knows firing and resolved; an acknowledged alert is still firing.
    return "resolved" if alert.get("status") == "resolved" else "firing"


def webhook_payload(payload: Mapping[str, Any], *, external_url: str = "") -> dict[str, Any]:
    """Our notification as Alertmanager's webhook payload, version 4."""
    alerts = []
    for alert in payload.get("alerts", []):
        status = _status(alert)
        alerts.append({
            "status": status, "labels": labels(alert), "annotations": annotations(alert),
            "startsAt": _rfc3339(alert.get("firing_at") or alert.get("started_at")) or ZERO_TIME,
            "endsAt": (_rfc3339(alert.get("resolved_at")) or ZERO_TIME) if status == "resolved" else ZERO_TIME,
            "generatorURL": alert.get("dashboard_url") or "", "fingerprint": str(alert.get("fingerprint", "")),
        })
    label_sets = [a["labels"] for a in alerts]
    common = {k: v for k, v in label_sets[0].items() if all(s.get(k) == v for s in label_sets)} if label_sets else {}
    annotation_sets = [a["annotations"] for a in alerts]
    common_annotations = {k: v for k, v in annotation_sets[0].items()
                          if all(s.get(k) == v for s in annotation_sets)} if annotation_sets else {}
    return {
        "version": VERSION, "groupKey": str(payload.get("group_key", "")), "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": str(payload.get("receiver", "")),
        "groupLabels": {label_name(str(k)): str(v) for k, v in (payload.get("group_labels") or {}).items()},
        "commonLabels": common, "commonAnnotations": common_annotations, "externalURL": external_url,
        "alerts": alerts,
    }


def postable_alerts(payload: Mapping[str, Any], *, now: datetime, hold: timedelta) -> list[dict[str, Any]]:
    """The alerts of a notification as Alertmanager's API v2 ``postableAlerts``."""
    out = []
    for alert in payload.get("alerts", []):
        resolved = _status(alert) == "resolved"
        ends = _rfc3339(alert.get("resolved_at")) if resolved and alert.get("resolved_at") else None
        out.append({
            "labels": labels(alert), "annotations": annotations(alert),
            "startsAt": _rfc3339(alert.get("firing_at") or alert.get("started_at")) or _rfc3339(now),
            "endsAt": ends or _rfc3339(now if resolved else now + hold),
            "generatorURL": alert.get("dashboard_url") or "",
        })
    return out


class AlertmanagerPush:
    """POST /api/v2/alerts to an Alertmanager (or each of a cluster's peers: they gossip, any one will do)."""

    def __init__(self, name: str, *, urls: list[str], timeout: float = 10, verify: str | bool = True,
                 hold: timedelta = timedelta(hours=24), now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 ) -> None:
        if not urls:
            raise ValueError("give at least one Alertmanager URL, e.g. http://alertmanager:9093")
        self.name = name
        self._urls = [u.rstrip("/") for u in urls]
        self._timeout = timeout
        self._verify = verify
        self._hold = hold
        self._now = now
        # An alert pushed with endsAt a hold ahead is pushed again well before that: one acknowledged (no
        # repeats) would otherwise end in Alertmanager while it still fires here.
        self.keepalive = hold / 3

    def send(self, notification_id: int, payload: Mapping[str, Any]) -> None:
        body = postable_alerts(payload, now=self._now(), hold=self._hold)
        if not body:
            return
        problems = []
        for url in self._urls:
            try:
                response = requests.post(f"{url}/api/v2/alerts", json=body, timeout=self._timeout,
                                         verify=self._verify)
            except requests.RequestException as exc:
                problems.append(DeliveryError(f"cannot reach Alertmanager at {url}: {type(exc).__name__}"))
                continue
            if 200 <= response.status_code < 300:
                return  # one peer has it; the cluster shares it
            retryable = response.status_code >= 500 or response.status_code == 429
            problems.append(DeliveryError(f"Alertmanager at {url} answered HTTP {response.status_code}: "
                                          f"{response.text[:200]}", retryable=retryable,
                                          status_code=response.status_code))
        raise problems[-1] if len(problems) == 1 else DeliveryError(
            "; ".join(str(p) for p in problems), retryable=any(p.retryable for p in problems))

    def confirm(self, notification_id: int, payload: Mapping[str, Any]) -> bool:
        return False  # pushing again is what Alertmanager expects: same labels, same alert
