"""Event payloads (CEF, OCSF JSON) and RFC 5424 syslog messages with RFC 6587 octet-counting framing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC

from storage.events import EventRecord, Outcome
from storage.export import dumps
from storage.ocsf import OcsfType, to_ocsf

FACILITY = 13  # log audit (RFC 5424 table 1)
VERSION = "0.1.0"


def _cef_header(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(text: str) -> str:
    return (text.replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n").replace("\n", "\\n")
            .replace("\r", "\\r"))


def cef(event: EventRecord) -> str:
    """ArcSight CEF:0 (header fields escaped for | and \\, extension values for =, \\ and newlines)."""
    severity = 5 if event.outcome == Outcome.FAILURE else 3
    extension = {"rt": str(int(event.timestamp.timestamp() * 1000)), "suser": event.user_id,
                 "outcome": str(event.outcome), "externalId": str(event.event_id), "src": event.source_ip,
                 "requestClientApplication": event.user_agent, "cs1Label": "resource_id" if event.resource_id else None,
                 "cs1": event.resource_id, "cs2Label": "source" if event.source else None, "cs2": event.source,
                 "cs3Label": "metadata" if event.metadata else None,
                 "cs3": dumps(event.metadata).decode() if event.metadata else None}
    pairs = " ".join(f"{k}={_cef_value(v)}" for k, v in extension.items() if v)
    return (f"CEF:0|Auditwatch|Auditwatch|{VERSION}|{_cef_header(event.event_type)}|"
            f"{_cef_header(event.event_type.replace('_', ' '))}|{severity}|{pairs}")


def ocsf_json(event: EventRecord, types: Mapping[str, OcsfType]) -> str:
    return dumps(to_ocsf(event, types.get(event.event_type))).decode()


def _printable(text: str, limit: int) -> str:
    """RFC 5424 header fields: printable US-ASCII without spaces, or the NILVALUE."""
    cleaned = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def rfc5424(event: EventRecord, payload: str, *, hostname: str, app_name: str = "auditwatch") -> bytes:
    """One syslog message: <PRI>1 TIMESTAMP HOST APP - MSGID - MSG (the MSG in UTF-8, with a BOM)."""
    severity = 4 if event.outcome == Outcome.FAILURE else 6  # warning / informational
    stamp = event.timestamp.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = (f"<{FACILITY * 8 + severity}>1 {stamp} {_printable(hostname, 255)} {_printable(app_name, 48)} - "
              f"{_printable(event.event_type, 32)} -")
    return header.encode("ascii") + b" \xef\xbb\xbf" + payload.encode("utf-8")


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 framing: the length, a space, the message (newlines inside the message stay safe)."""
    return str(len(message)).encode() + b" " + message
