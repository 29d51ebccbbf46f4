"""Syslog lines to audit events: pure functions, the same for the listener, a file and a notebook.

An event is the dict a client would POST (so it goes through the same validation, redaction and
enrichment). Its ``event_id`` is a UUIDv5 over the sender, the line exactly as received and how many
identical lines the same sender session sent before it within that second:

- a line sent again (a relay resending after a reconnect, a file replayed) gets the same id and is
  stored once (R5);
- a bus message redelivered to a writer carries its id, so it is stored once too;
- two genuinely identical lines in the same second (sshd logs ``Failed password`` lines that can
  repeat to the second) are two events, numbered 0 and 1.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from ingest.syslog import pam, sshd, su, sudo
from ingest.syslog.auth import Auth, Parser
from ingest.syslog.header import SyslogMessage, parse_header, zone_of
from storage.platform import is_platform_source

# Fixed for ever: changing it would change every syslog event's id.
NAMESPACE = uuid.UUID("0b6f3a4e-8d52-5c1e-9a57-2f1d3c4b5a69")
PARSERS: tuple[Parser, ...] = (sshd.parse, pam.parse, sudo.parse, su.parse)
MESSAGE_BYTES = 4096  # the raw message kept in metadata, so an event stays well under R7's 10 KB
_ESCAPES = {code: f"#{code:03o}" for code in (*range(0x20), 0x7F)}
_HOST_SAFE = re.compile(r"[^A-Za-z0-9_.:\-]")


def _escape(text: str) -> str:
    """Control characters as rsyslog writes them (#011 for a tab): storable, visible, unambiguous."""
    if text.isprintable():  # the common case, checked in C: a printable text holds no control character
        return text
    return text.translate(_ESCAPES)  # in C: a per-match callback cost 0.5 µs a character (7 ms for 16 KB of tabs)


def _clip(text: str, limit: int) -> str:
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def _account(name: str) -> str:
    """An account name from a log line as a user_id. A Unix account cannot hold `:`, but sshd logs whatever
    name a client tried; escaping it keeps `host:web1` or `apikey:deploy` typed at a login prompt from posing
    as one of our own principals."""
    return _escape(name).replace(":", "#072")[:256]


def _source(app: str | None) -> str:
    """The app name as the event's source; one that would pose as the platform's own (Auditwatch's own logs
    forwarded to syslog) is marked as coming through syslog, so the line is kept, not refused."""
    if not app:
        return "syslog"
    source = _escape(app)[:128]
    return f"syslog:{source}"[:128] if is_platform_source(source) else source


def host_principal(host: str | None) -> str:
    """The user_id of events that name no account: the host that logged them (registered as a service)."""
    return f"host:{_HOST_SAFE.sub('_', host)[:200]}" if host else "host:unknown"


def derive_event_id(sender: str, raw: str, occurrence: int) -> uuid.UUID:
    """The deterministic id of the ``occurrence``-th copy of ``raw`` from ``sender`` (see the module doc)."""
    return uuid.uuid5(NAMESPACE, _id_name(sender, raw, occurrence))


def _id_name(sender: str, raw: str, occurrence: int) -> str:
    return f"{sender}\n{occurrence}\n{raw}"


_NAMESPACE_BYTES = NAMESPACE.bytes


def _event_id_text(sender: str, raw: str, occurrence: int) -> str:
    """``str(derive_event_id(...))`` without building a UUID object (a fifth of parsing a line): the SHA-1
    of the namespace and name, with RFC 4122's version 5 and variant bits set, as uuid.uuid5 does."""
    h = hashlib.sha1(_NAMESPACE_BYTES + _id_name(sender, raw, occurrence).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def classify(message: SyslogMessage) -> Auth | None:
    """The first parser that recognises the message, or None (a plain ``syslog_message``)."""
    if not message.app:
        return None
    app = message.app
    for parser in PARSERS:
        found = parser(app, message.message)
        if found is not None:
            return found
    return None


def to_event(message: SyslogMessage, *, raw: str, peer: str | None = None, occurrence: int = 0) -> dict[str, Any]:
    """The audit event (client JSON shape) for a parsed message."""
    host = _escape(message.hostname)[:255] if message.hostname else None
    sender = host or peer or "unknown"
    auth = classify(message)
    metadata: dict[str, Any] = {
        "host": host, "app": _escape(message.app)[:128] if message.app else None, "pid": message.procid,
        "facility": message.facility, "severity": message.severity, "rfc": message.rfc,
        "message": _clip(_escape(message.message), MESSAGE_BYTES),
    }
    if peer and peer != host:
        metadata["peer"] = peer
    if message.msgid:
        metadata["msgid"] = _escape(message.msgid)[:64]
    if message.structured_data:
        metadata["sd"] = _clip(_escape(message.structured_data), 2048)
    if message.clock_ahead:
        metadata["sender_timestamp"] = _escape(message.clock_ahead)[:64]
    if auth is not None:
        for key, value in auth.fields.items():
            metadata[key] = _escape(value) if isinstance(value, str) else value
        user = auth.user
    else:
        user = None
    event: dict[str, Any] = {
        "event_id": _event_id_text(sender, raw, occurrence),
        "timestamp": message.timestamp.isoformat(),
        "event_type": auth.event_type if auth else "syslog_message",
        "user_id": _account(user) if user else host_principal(host or peer),
        "outcome": auth.outcome if auth else "unknown",
        "source": _source(message.app),
        "resource_id": host or peer,
        "metadata": {k: v for k, v in metadata.items() if v is not None},
    }
    if auth is not None and auth.source_ip:
        event["source_ip"] = auth.source_ip
    return {k: v for k, v in event.items() if v is not None}


def parse_line(line: str, *, now: datetime, zone: str | tzinfo = "UTC", zones: Mapping[str, str] | None = None,
               peer: str | None = None, occurrence: int = 0) -> dict[str, Any]:
    """One syslog line (RFC 5424 or 3164, with or without ``<PRI>``) as an audit event dict.

    ``now`` is the receive time: year inference for RFC 3164 dates and the clamp against future
    timestamps use it. ``zone`` is the sender's zone for dates that carry none; ``zones`` maps a
    host name (or peer address) to its own zone. ``occurrence`` numbers identical lines from the
    same sender within one second (see the module doc); ``parse_file`` counts it for you.
    """
    raw = line.rstrip("\r\n")
    tz = zone_of(zone) if isinstance(zone, str) else zone
    try:
        message = parse_header(raw, now=now, zone=tz)
        if zones and message.rfc == "3164":
            own = zones.get(message.hostname or "") or (zones.get(peer) if peer else None)
            if own is not None:
                message = parse_header(raw, now=now, zone=zone_of(own))
        return to_event(message, raw=raw, peer=peer, occurrence=occurrence)
    except Exception as exc:  # noqa: BLE001 - any line from the network may trip a parser; it is kept, not lost
        return unparsed_event(raw, reason=exc, now=now, peer=peer, occurrence=occurrence)


def unparsed_event(raw: str, *, reason: BaseException, now: datetime, peer: str | None = None,
                   occurrence: int = 0) -> dict[str, Any]:
    """A line no parser could read, as a raw ``syslog_message`` received ``now``, with the reason.

    Its id is derived exactly as for a parsed line, so a resent copy is still stored once.
    """
    message = SyslogMessage(timestamp=now, hostname=None, app=None, procid=None, message=raw, rfc="unknown")
    event = to_event(message, raw=raw, peer=peer, occurrence=occurrence)
    kind = getattr(reason, "kind", None) or reason.__class__.__name__  # a store process's failure names its own
    event["metadata"]["parse_error"] = _clip(_escape(f"{kind}: {reason}"), 256)
    return event


class Occurrences:
    """Counts identical lines per sender session so each copy gets its own ``occurrence``.

    Memory is bounded by ``max_entries`` whatever the lines hold: a line is remembered by a 16-byte
    digest, not by its text (about 200 bytes an entry, so 100,000 entries stay near 20 MB). When the
    bound is reached the least recently seen line is forgotten; a copy of it seen again after that
    restarts at 0, which at worst stores a true repeat once instead of twice.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[str | None, bytes], int] = OrderedDict()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._seen)

    def next(self, raw: str, peer: str | None = None) -> int:
        """The occurrence number of ``raw`` in the session ``peer`` (0 for its first copy)."""
        key = (peer, hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).digest())
        count = self._seen.get(key, 0)
        self._seen[key] = count + 1
        self._seen.move_to_end(key)
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return count


def parse_lines(lines: Iterator[str] | list[str], *, now: datetime, zone: str | tzinfo = "UTC",
                zones: Mapping[str, str] | None = None, peer: str | None = None) -> Iterator[dict[str, Any]]:
    """Events for a sequence of lines from one sender session, numbering identical lines."""
    seen = Occurrences()
    for line in lines:
        raw = line.rstrip("\r\n")
        if not raw.strip():
            continue
        yield parse_line(raw, now=now, zone=zone, zones=zones, peer=peer, occurrence=seen.next(raw, peer))


def parse_file(path: str | Path, *, now: datetime, zone: str | tzinfo = "UTC",
               zones: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Events for every non-blank line of a syslog file (undecodable bytes replaced)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        yield from parse_lines(fh, now=now, zone=zone, zones=zones)
