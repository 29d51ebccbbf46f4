"""sudo: ``alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id`` and its refusals."""

from __future__ import annotations

import re

from ingest.syslog.auth import Auth, account

_LINE = re.compile(r"\s*(?P<user>[^\s:;]+) : (?P<rest>.*)$")
_REFUSED = ("incorrect password attempt", "NOT in sudoers", "user NOT authorized", "command not allowed",
            "a password is required", "authentication failure")


def parse(app: str, message: str) -> Auth | None:
    """A sudo command line (success) or refusal (failure) as an Auth, else None."""
    if app != "sudo":
        return None
    m = _LINE.match(message)
    if m is None:
        return None
    parts = [p.strip() for p in m.group("rest").split(" ; ")]
    fields: dict[str, object] = {}
    reason = None
    for part in parts:
        key, eq, value = part.partition("=")
        if eq and key in {"TTY", "PWD", "USER", "GROUP", "COMMAND", "ENV"}:
            # PWD is stored as cwd: the redactor treats any key holding "pwd" as a password.
            name = {"PWD": "cwd", "USER": "target_user", "TTY": "tty"}.get(key, key.lower())
            fields[name] = value[:1024]
        elif reason is None:
            reason = part
    if reason is None and "command" in fields:
        return Auth("sudo", "success", account(m.group("user")), None, fields)
    if reason is not None and any(r in reason for r in _REFUSED):
        return Auth("sudo", "failure", account(m.group("user")), None, {**fields, "reason": reason[:256]})
    return None
