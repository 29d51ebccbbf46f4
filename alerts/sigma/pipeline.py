"""The processing pipeline from Sigma and OCSF field names to ours, and what our fields can express.

pySigma renames the fields of every detection item and of correlation group-by / value fields; the
importer then reads the renamed rule. Our threshold rules filter on the event type and the outcome
only, and group or count distinct values of ``THRESHOLD_FIELDS``; OCSF's class, activity and type
ids select event types through the catalogue (migration 0015).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation

from storage.ocsf import ACTIVITIES, CLASSES
from storage.timescale.rule_inputs import THRESHOLD_FIELDS

# Sigma / OCSF / common Windows-and-Linux field names → ours. Event selectors keep OCSF names (the
# catalogue resolves them), everything else becomes one of our columns.
FIELD_MAP: dict[str, str] = {
    "event_type": "event_type", "EventType": "event_type", "metadata.event_code": "event_type",
    "class_uid": "class_uid", "activity_id": "activity_id", "type_uid": "type_uid",
    "class_name": "class_name", "activity_name": "activity_name", "type_name": "type_name",
    "outcome": "outcome", "status": "outcome", "status_id": "outcome", "Outcome": "outcome",
    "user_id": "user_id", "user.name": "user_id", "user.uid": "user_id", "actor.user.name": "user_id",
    "actor.user.uid": "user_id", "User": "user_id", "TargetUserName": "user_id", "SubjectUserName": "user_id",
    "UserName": "user_id", "user": "user_id",
    "source_ip": "source_ip", "src_endpoint.ip": "source_ip", "src_ip": "source_ip", "SourceIp": "source_ip",
    "IpAddress": "source_ip", "ClientIP": "source_ip", "source.ip": "source_ip",
    "source": "source", "src_endpoint.name": "source", "service.name": "source",
    "source_country": "source_country", "src_endpoint.location.country": "source_country",
    "user_agent": "user_agent", "http_request.user_agent": "user_agent",
    "resource_id": "resource_id", "file.name": "resource_id", "database.name": "resource_id",
}
EVENT_SELECTORS = ("event_type", "class_uid", "activity_id", "type_uid", "class_name", "activity_name", "type_name")
OUTCOMES = ("success", "failure", "unknown")
_OUTCOME_VALUES = {"success": "success", "1": "success", "failure": "failure", "2": "failure", "failed": "failure",
                   "fail": "failure", "unknown": "unknown", "0": "unknown"}
# Sigma logsource categories that name an OCSF class (snake case, as OCSF names them).
CATEGORY_CLASSES = {"authentication": 3002, "account_change": 3001, "authorize_session": 3003,
                    "user_access": 3005, "user_access_management": 3005, "file_activity": 1001,
                    "file_system_activity": 1001, "file_event": 1001, "network_activity": 4001,
                    "device_config_state": 5002, "api_activity": 6003, "datastore_activity": 6005}
PRODUCTS = ("auditwatch", "ocsf")


def pipeline() -> ProcessingPipeline:
    """A fresh pipeline (pySigma binds items to one pipeline, so never share one)."""
    return ProcessingPipeline(name="auditwatch", priority=20, items=[
        ProcessingItem(FieldMappingTransformation(dict(FIELD_MAP)), identifier="auditwatch_fields")])


def outcome_of(value: str) -> str | None:
    return _OUTCOME_VALUES.get(value.strip().lower())


@dataclass(frozen=True)
class CatalogueEntry:
    """An event type and its OCSF place (storage.timescale.catalog.EventType has these fields)."""

    event_type: str
    class_uid: int | None
    activity_id: int | None
    type_uid: int | None = None


class Catalogue:
    """Event types by their OCSF ids and names, for rules that select events the OCSF way."""

    def __init__(self, entries: Iterable[CatalogueEntry]) -> None:
        self.entries = list(entries)
        self.all = frozenset(e.event_type for e in self.entries)

    def select(self, selector: str, value: str) -> frozenset[str] | None:
        """Event types whose ``selector`` equals ``value``; None when the value means nothing here."""
        text = value.strip()
        if selector == "event_type":
            return frozenset({text}) if text in self.all else None
        matches = set()
        for e in self.entries:
            if e.class_uid is None or e.activity_id is None:
                continue
            class_name = CLASSES.get(e.class_uid, "")
            activity = ACTIVITIES.get(e.class_uid, {}).get(e.activity_id, "Other")
            candidates = {"class_uid": str(e.class_uid), "activity_id": str(e.activity_id),
                          "type_uid": str(e.class_uid * 100 + e.activity_id), "class_name": class_name.lower(),
                          "activity_name": activity.lower(), "type_name": f"{class_name}: {activity}".lower()}
            if candidates[selector] == text.lower():
                matches.add(e.event_type)
        return frozenset(matches) if matches else None

    def of_class(self, class_uid: int) -> frozenset[str]:
        return frozenset(e.event_type for e in self.entries if e.class_uid == class_uid)


GROUPABLE = THRESHOLD_FIELDS
