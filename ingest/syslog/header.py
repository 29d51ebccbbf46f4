"""The syslog header: RFC 5424 and RFC 3164 (BSD) messages, one line in, fields out.

RFC 3164 timestamps have no year and no zone. The year is the one that puts the message
closest to, and not after, the receive time (a December line read in January is last year's);
the zone is the sender's, from settings. No message is ever dated in the future: a sender whose
clock runs ahead is recorded at the receive time, with its own timestamp kept beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.errors import IngestError

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7",
)
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

_PRI = re.compile(r"<(\d{1,3})>")
_RFC5424 = re.compile(
    r"1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$",
    re.DOTALL,
)
_BSD_TIME = re.compile(r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?:(?P<year>\d{4}) )?"
                       r"(?P<time>\d{2}:\d{2}:\d{2})(?:\.\d+)? ")
_ISO_TIME = re.compile(r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) ")
# A tag is the program name, with an optional [pid], ending in a colon. Old daemons put spaces in
# it ("syslogd 1.4.1:") and PAM-era ones parentheses ("sshd(pam_unix)[1234]:").
_TAG = re.compile(r"(?P<app>[^\s:\[\]][^:\[\]]{0,47}?)(?:\[(?P<pid>[^\]\s]{1,16})\])?: ?")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
# How far ahead of the receive time a year-less date may be before it is taken as last year's:
# senders' clocks drift by minutes, not by a week.
YEAR_LOOKAHEAD = timedelta(days=7)


class SyslogError(IngestError):
    """A syslog setting that cannot be used."""


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """One syslog message, header parsed; ``timestamp`` is aware and in UTC."""

    timestamp: datetime
    hostname: str | None
    app: str | None
    procid: str | None
    message: str
    facility: str | None = None
    severity: str | None = None
    msgid: str | None = None
    structured_data: str | None = None
    rfc: str = "3164"
    clock_ahead: str | None = None  # the sender's own timestamp, when it was in the future
    extra: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=256)
def zone_of(name: str) -> tzinfo:
    """A zone by IANA name (``UTC``, ``Europe/Berlin``); fails saying how to fix it."""
    if name.upper() in {"UTC", "Z"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SyslogError("bad_zone", f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin "
                          "(see /usr/share/zoneinfo)") from None


def infer_year(month: int, day: int, clock: str, *, now: datetime, zone: tzinfo) -> datetime:
    """The most recent date with this month, day and time that is not more than a week ahead of ``now``."""
    hour, minute, second = (int(p) for p in clock.split(":"))
    local_now = now.astimezone(zone)
    for year in range(local_now.year + 1, local_now.year - 5, -1):  # back to the last 29 February
        try:
            candidate = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        except (ValueError, OverflowError):  # out of range, e.g. year 1 moved west of UTC  # 29 February in a year that has none, or 24:00:00
            continue
        if candidate <= local_now + YEAR_LOOKAHEAD:
            return candidate.astimezone(UTC)
    raise ValueError("no year makes this date valid")


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _split_tag(rest: str) -> tuple[str | None, str | None, str]:
    match = _TAG.match(rest)
    if match is None:
        return None, None, rest
    return match.group("app").strip(), match.group("pid"), rest[match.end():]


def parse_header(line: str, *, now: datetime, zone: tzinfo = UTC) -> SyslogMessage:
    """Split one syslog line into header fields and message; never raises on odd input.

    A line that follows neither RFC is kept whole as the message, received ``now``.
    """
    facility = severity = None
    rest = line
    pri = _PRI.match(rest)
    if pri is not None and int(pri.group(1)) <= 191:
        value = int(pri.group(1))
        facility, severity = FACILITIES[value >> 3], SEVERITIES[value & 7]
        rest = rest[pri.end():]

    m5424 = _RFC5424.match(rest)
    if m5424 is not None:
        timestamp = now
        ts = m5424.group("ts")
        if ts != "-":
            try:
                timestamp = datetime.fromisoformat(ts.replace("Z", "+00:00"))
                if timestamp.tzinfo is None:
                    timestamp = timestamp.replace(tzinfo=zone)
                timestamp = timestamp.astimezone(UTC)
            except (ValueError, OverflowError):  # out of range, e.g. year 1 moved west of UTC
                timestamp = now
        msg = m5424.group("msg") or ""
        if msg.startswith("\ufeff"):
            msg = msg[1:]
        return _no_future(SyslogMessage(
            timestamp=timestamp, hostname=_nil(m5424.group("host")), app=_nil(m5424.group("app")),
            procid=_nil(m5424.group("procid")), message=msg, facility=facility, severity=severity,
            msgid=_nil(m5424.group("msgid")), structured_data=_nil(m5424.group("sd")), rfc="5424",
        ), now, ts)

    timestamp = None
    bsd = _BSD_TIME.match(rest)
    if bsd is not None and bsd.group("mon") in _MONTHS:
        stamp = bsd.group(0).strip()
        try:
            if bsd.group("year"):
                timestamp = datetime(int(bsd.group("year")), _MONTHS[bsd.group("mon")], int(bsd.group("day")),
                                     *(int(p) for p in bsd.group("time").split(":")), tzinfo=zone).astimezone(UTC)
            else:
                timestamp = infer_year(_MONTHS[bsd.group("mon")], int(bsd.group("day")), bsd.group("time"),
                                       now=now, zone=zone)
        except (ValueError, OverflowError):  # out of range, e.g. year 1 moved west of UTC
            timestamp = None
        else:
            rest = rest[bsd.end():]
    if timestamp is None:
        iso = _ISO_TIME.match(rest)
        if iso is not None:
            try:
                timestamp = datetime.fromisoformat(iso.group("ts").replace("Z", "+00:00")).astimezone(UTC)
                stamp = iso.group("ts")
                rest = rest[iso.end():]
            except (ValueError, OverflowError):  # out of range, e.g. year 1 moved west of UTC
                timestamp = None
    if timestamp is None:
        return SyslogMessage(timestamp=now, hostname=None, app=None, procid=None, message=rest,
                             facility=facility, severity=severity, rfc="unknown")

    hostname = None
    first, sep, after = rest.partition(" ")
    # The hostname is a single token; when the sender left it out, the first token is already the tag.
    if sep and first and not first.endswith(":") and "[" not in first:
        hostname, rest = first, after
    app, pid, msg = _split_tag(rest)
    return _no_future(SyslogMessage(timestamp=timestamp, hostname=hostname, app=app, procid=pid, message=msg,
                                    facility=facility, severity=severity, rfc="3164"), now, stamp)


def _no_future(message: SyslogMessage, now: datetime, stamp: str) -> SyslogMessage:
    """Clamp a timestamp ahead of the receive time to it, keeping the sender's text."""
    if message.timestamp <= now:
        return message
    return SyslogMessage(
        timestamp=now, hostname=message.hostname, app=message.app, procid=message.procid, message=message.message,
        facility=message.facility, severity=message.severity, msgid=message.msgid,
        structured_data=message.structured_data, rfc=message.rfc, clock_ahead=stamp,
    )
