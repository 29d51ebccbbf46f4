"""Stored events as OCSF 1.1 events, for exports and forwarders that feed other SIEMs.

The event-type catalogue says which OCSF class and activity each of our types is (migration 0015);
this module fills that class's required objects from the event's own fields: the user, the actor,
the source endpoint, the device, file, api or database the class asks for. Nothing is invented:
where a class requires an object we hold nothing for, it gets the name we do hold (the event's
``source`` or ``resource_id``) or the literal "unknown", and the event's metadata travels whole in
``unmapped``, OCSF's place for what a producer could not map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage.events import EventRecord, Outcome

OCSF_VERSION = "1.1.0"
PRODUCT = {"name": "Auditwatch", "vendor_name": "Auditwatch"}

CATEGORIES = {0: "Uncategorized", 1: "System Activity", 2: "Findings", 3: "Identity & Access Management",
              4: "Network Activity", 5: "Discovery", 6: "Application Activity"}
CLASSES = {0: "Base Event", 1001: "File System Activity", 3001: "Account Change", 3002: "Authentication",
           3003: "Authorize Session", 3005: "User Access Management", 4001: "Network Activity",
           5002: "Device Config State", 6003: "API Activity", 6005: "Datastore Activity"}
ACTIVITIES: dict[int, dict[int, str]] = {
    0: {0: "Unknown", 99: "Other"},
    1001: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 5: "Rename", 6: "Set Attributes", 7: "Set Security",
           8: "Get Attributes", 9: "Get Security", 10: "Encrypt", 11: "Decrypt", 12: "Mount", 13: "Unmount",
           14: "Open"},
    3001: {1: "Create", 2: "Enable", 3: "Password Change", 4: "Password Reset", 5: "Disable", 6: "Delete",
           7: "Attach Policy", 8: "Detach Policy", 9: "Lock", 10: "MFA Factor Enable", 11: "MFA Factor Disable"},
    3002: {1: "Logon", 2: "Logoff", 3: "Authentication Ticket", 4: "Service Ticket Request",
           5: "Service Ticket Renew"},
    3003: {1: "Assign Privileges", 2: "Assign Groups"},
    3005: {1: "Assign Privileges", 2: "Revoke Privileges"},
    4001: {1: "Open", 2: "Close", 3: "Reset", 4: "Fail", 5: "Refuse", 6: "Traffic", 7: "Listen"},
    5002: {1: "Log", 2: "Collect"},
    6003: {1: "Create", 2: "Read", 3: "Update", 4: "Delete"},
    6005: {1: "Read", 2: "Update", 3: "Connect", 4: "Query", 5: "Write", 6: "Create", 7: "Delete", 8: "List",
           9: "Encrypt", 10: "Decrypt"},
}
_STATUS = {Outcome.SUCCESS: (1, "Success"), Outcome.FAILURE: (2, "Failure"), Outcome.UNKNOWN: (0, "Unknown")}


@dataclass(frozen=True)
class OcsfType:
    """Where one of our event types sits in OCSF."""

    class_uid: int
    activity_id: int

    @property
    def type_uid(self) -> int:
        return self.class_uid * 100 + self.activity_id

    @property
    def category_uid(self) -> int:
        return self.class_uid // 1000


BASE_OTHER = OcsfType(0, 99)


def types_from_catalogue(rows: Any) -> dict[str, OcsfType]:
    """event_type → OcsfType from catalogue rows (``catalog.event_types``); types without ids are left out."""
    return {r.event_type: OcsfType(r.class_uid, r.activity_id) for r in rows
            if r.class_uid is not None and r.activity_id is not None}


def _ms(moment) -> int:
    return int(moment.timestamp() * 1000)


def _user(event: EventRecord) -> dict[str, Any]:
    return {"uid": event.user_id, "name": event.user_id}


def _endpoint(event: EventRecord) -> dict[str, Any]:
    endpoint: dict[str, Any] = {}
    if event.source_ip:
        endpoint["ip"] = event.source_ip
    if event.source:
        endpoint["name"] = event.source
    if event.source_country:
        endpoint["location"] = {"country": event.source_country}
    if event.source_asn and str(event.source_asn).removeprefix("AS").isdigit():
        endpoint["autonomous_system"] = {"number": int(str(event.source_asn).removeprefix("AS"))}
    if "ip" not in endpoint and "name" not in endpoint:
        endpoint["name"] = "unknown"  # OCSF needs one identifying attribute; location alone is not one
    return endpoint


def _named(value: str | None) -> str:
    return value if value else "unknown"


def _privileges(metadata: Mapping[str, Any]) -> list[str]:
    for key in ("privileges", "roles", "role", "permission", "permissions"):
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return [value]
        if isinstance(value, list) and value:
            return [str(v) for v in value]
    return ["unknown"]


def _class_objects(event: EventRecord, ocsf: OcsfType) -> dict[str, Any]:
    """The objects this class requires (and the ones it recommends that we hold)."""
    user = _user(event)
    actor = {"user": user}
    endpoint = _endpoint(event)
    match ocsf.class_uid:
        case 3002:  # Authentication: the user, and a service or dst_endpoint (one at least)
            return {"user": user, "actor": actor, "src_endpoint": endpoint, "service": {"name": _named(event.source)},
                    "is_remote": event.source_ip is not None}
        case 3001 | 3003:
            return {"user": user, "actor": actor, "src_endpoint": endpoint}
        case 3005:
            return {"user": user, "actor": actor, "privileges": _privileges(event.metadata), "src_endpoint": endpoint}
        case 1001:
            return {"actor": actor, "device": _device(event), "src_endpoint": endpoint,
                    "file": {"name": _named(event.resource_id), "type_id": 0, "type": "Unknown"}}
        case 4001:
            return {"actor": actor, "src_endpoint": endpoint, "dst_endpoint": {"name": _named(event.source)}}
        case 5002:
            return {"actor": actor, "device": _device(event)}
        case 6003:
            api = {"operation": event.event_type}
            resources = [{"uid": event.resource_id}] if event.resource_id else []
            return {"actor": actor, "api": api, "src_endpoint": endpoint,
                    **({"resources": resources} if resources else {})}
        case 6005:
            return {"actor": actor, "src_endpoint": endpoint,
                    "database": {"name": _named(event.resource_id), "type_id": 0, "type": "Unknown"}}
        case _:
            return {"actor": actor, "src_endpoint": endpoint}


def _device(event: EventRecord) -> dict[str, Any]:
    device: dict[str, Any] = {"type_id": 0, "type": "Unknown", "name": _named(event.source)}
    if event.source_ip:
        device["ip"] = event.source_ip
    return device


def to_ocsf(event: EventRecord, ocsf: OcsfType | None) -> dict[str, Any]:
    """One stored event as an OCSF 1.1 event of its catalogue class (the Base Event when it has none)."""
    ocsf = ocsf if ocsf is not None and ocsf.class_uid in CLASSES else BASE_OTHER
    activities = ACTIVITIES.get(ocsf.class_uid, {})
    activity = activities.get(ocsf.activity_id, "Other" if ocsf.activity_id == 99 else "Unknown")
    class_name = CLASSES[ocsf.class_uid]
    status_id, status = _STATUS[Outcome(event.outcome)]
    body: dict[str, Any] = {
        "activity_id": ocsf.activity_id, "activity_name": activity,
        "category_uid": ocsf.category_uid, "category_name": CATEGORIES[ocsf.category_uid],
        "class_uid": ocsf.class_uid, "class_name": class_name,
        "type_uid": ocsf.type_uid, "type_name": f"{class_name}: {activity}",
        "severity_id": 2 if event.outcome == Outcome.FAILURE else 1,
        "severity": "Low" if event.outcome == Outcome.FAILURE else "Informational",
        "status_id": status_id, "status": status,
        "time": _ms(event.timestamp),
        "message": f"{event.event_type} by {event.user_id}: {status.lower()}",
        "metadata": {"version": OCSF_VERSION, "product": dict(PRODUCT), "uid": str(event.event_id),
                     "logged_time": _ms(event.received_at), "event_code": event.event_type},
        **_class_objects(event, ocsf),
    }
    if event.user_agent:
        body["http_request"] = {"user_agent": event.user_agent}
    unmapped = dict(event.metadata)
    if event.resource_id:
        unmapped.setdefault("resource_id", event.resource_id)
    if unmapped:
        body["unmapped"] = unmapped
    return body
