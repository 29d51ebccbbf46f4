"""su: ``Successful su for root by alice``, ``FAILED su for root by alice`` (shadow) and
``(to root) alice on pts/0``, ``FAILED SU (to root) alice on pts/0`` (util-linux)."""

from __future__ import annotations

import re

from ingest.syslog.auth import Auth, account

_SHADOW = re.compile(r"(?P<result>Successful|FAILED) su for (?P<target>\S+) by (?P<user>\S+)")
_UTIL_LINUX = re.compile(r"(?P<failed>FAILED SU )?\(to (?P<target>[^)]+)\) (?P<user>\S+) on (?P<tty>\S+)")
_OLD = re.compile(r"(?P<sign>[+-]) (?P<tty>\S+) (?P<user>[^:\s]+):(?P<target>\S+)$")


def parse(app: str, message: str) -> Auth | None:
    """One su message as an Auth, else None."""
    if app not in {"su", "su-l"}:
        return None
    m = _SHADOW.match(message)
    if m is not None:
        outcome = "success" if m.group("result") == "Successful" else "failure"
        return Auth("su", outcome, account(m.group("user")), None, {"target_user": m.group("target")})
    m = _UTIL_LINUX.match(message)
    if m is not None:
        outcome = "failure" if m.group("failed") else "success"
        return Auth("su", outcome, account(m.group("user")), None,
                    {"target_user": m.group("target"), "tty": m.group("tty")})
    m = _OLD.match(message)
    if m is not None:
        outcome = "success" if m.group("sign") == "+" else "failure"
        return Auth("su", outcome, account(m.group("user")), None,
                    {"target_user": m.group("target"), "tty": m.group("tty")})
    return None
