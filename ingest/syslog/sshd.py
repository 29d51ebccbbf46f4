"""OpenSSH's sshd: failed and accepted logins, invalid users, pre-auth closes, break-in warnings."""

from __future__ import annotations

import re

from ingest.syslog.auth import Auth, account, address, count

_FAILED = re.compile(r"Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*?) from (?P<ip>\S+)"
                     r" port (?P<port>\d+)(?: (?P<proto>ssh2?))?")
_ACCEPTED = re.compile(r"Accepted (?P<method>\S+) for (?P<user>.*?) from (?P<ip>\S+) port (?P<port>\d+)"
                       r"(?: (?P<proto>ssh2?))?(?:: (?P<key>.*))?")
_INVALID = re.compile(r"Invalid user (?P<user>.*?) from (?P<ip>\S+)(?: port (?P<port>\d+))?\s*$")
_CLOSED = re.compile(r"Connection (?:closed|reset) by (?P<kind>authenticating|invalid) user (?P<user>.*?) "
                     r"(?P<ip>\S+) port (?P<port>\d+)(?: \[preauth\])?\s*$")
_BREAK_IN = re.compile(r"reverse mapping checking getaddrinfo for (?P<name>\S+) \[(?P<ip>[^\]]+)\] failed"
                       r"(?: - POSSIBLE BREAK-IN ATTEMPT!)?")
_MAPS_TO = re.compile(r"Address (?P<ip>\S+) maps to (?P<name>\S+), but this does not map back to the address"
                      r"(?: - POSSIBLE BREAK-IN ATTEMPT!)?")
_REPEATED = re.compile(r"message repeated (?P<n>\d+) times: \[ ?(?P<inner>.*)\]\s*$")


def _port(text: str | None) -> int | None:
    return count(text, 65535)


def parse(app: str, message: str) -> Auth | None:
    """One sshd message as an Auth, or None when it is not one of the login facts."""
    if app != "sshd" and not app.startswith("sshd-"):
        return None
    repeated = _REPEATED.match(message)
    if repeated is not None:
        inner = parse(app, repeated.group("inner"))
        if inner is None:
            return None
        return Auth(inner.event_type, inner.outcome, inner.user, inner.source_ip,
                    {**inner.fields, "repeated": count(repeated.group("n"), 10**9)})
    if message.startswith("Failed "):
        m = _FAILED.match(message)
        if m:
            return Auth("user_login", "failure", account(m.group("user")), address(m.group("ip")),
                        {"method": m.group("method"), "port": _port(m.group("port")),
                         "invalid_user": bool(m.group("invalid")), "protocol": "ssh"})
    elif message.startswith("Accepted "):
        m = _ACCEPTED.match(message)
        if m:
            fields = {"method": m.group("method"), "port": _port(m.group("port")), "protocol": "ssh"}
            if m.group("key"):
                fields["key"] = m.group("key")[:256]
            return Auth("user_login", "success", account(m.group("user")), address(m.group("ip")), fields)
    elif message.startswith("Invalid user "):
        m = _INVALID.match(message)
        if m:
            return Auth("ssh_invalid_user", "failure", account(m.group("user")), address(m.group("ip")),
                        {"port": _port(m.group("port")), "invalid_user": True, "protocol": "ssh"})
    elif message.startswith("Connection "):
        m = _CLOSED.match(message)
        if m:
            return Auth("ssh_connection_closed", "failure", account(m.group("user")), address(m.group("ip")),
                        {"port": _port(m.group("port")), "invalid_user": m.group("kind") == "invalid",
                         "preauth": True, "protocol": "ssh"})
    elif "POSSIBLE BREAK-IN ATTEMPT" in message:
        m = _BREAK_IN.match(message) or _MAPS_TO.match(message)
        if m:
            return Auth("ssh_break_in_attempt", "unknown", None, address(m.group("ip")),
                        {"reverse_name": m.group("name")[:255], "protocol": "ssh"})
    return None
