"""PAM: ``authentication failure; logname= uid= euid= tty= ruser= rhost= user=`` from any service.

Written two ways: ``sshd(pam_unix)[pid]: authentication failure; ...`` (old Linux, the module in the
program name) and ``sshd[pid]: pam_unix(sshd:auth): authentication failure; ...`` (the module in the
message). Failures of the su and sudo services become ``su`` and ``sudo`` events, every other service's
an ``auth_failure`` event (kept apart from sshd's own ``Failed password`` so one attempt is one login).
"""

from __future__ import annotations

import re

from ingest.syslog.auth import Auth, account, address, count

_IN_APP = re.compile(r"(?P<service>[\w.-]+)\((?P<module>pam_\w+)\)$")
_IN_MESSAGE = re.compile(r"(?P<module>pam_\w+)\((?P<service>[\w.-]+):(?P<kind>\w+)\): ")
_FAILURE = re.compile(r"(?:PAM (?P<more>\d+) more )?authentication failures?; (?P<kv>.*)$")
_KV = re.compile(r"(\w+)=(\S*)")
_SESSION = re.compile(r"session opened for user (?P<user>\S+)(?: by (?P<by>\S*?)\s*\(uid=(?P<uid>\d+)\))?")


def split(app: str, message: str) -> tuple[str, str, str] | None:
    """(service, module, rest of message) when this is a PAM line, else None."""
    inline = _IN_MESSAGE.match(message)
    if inline is not None:
        return inline.group("service"), inline.group("module"), message[inline.end():]
    in_app = _IN_APP.match(app)
    if in_app is not None:
        return in_app.group("service"), in_app.group("module"), message
    if app == "sshd" and message.startswith("PAM "):
        return "sshd", "pam", message
    return None


def _actor(name: str | None, uid: str | None) -> str | None:
    """The account that ran su: its name, or for the nameless uid 0 root."""
    if name:
        return name
    if uid == "0":
        return "root"
    return f"uid={uid}" if uid else None


def parse(app: str, message: str) -> Auth | None:
    """One PAM message as an Auth, or None when it is not an authentication failure or su session."""
    parts = split(app, message)
    if parts is None:
        return None
    service, module, rest = parts
    failure = _FAILURE.match(rest)
    if failure is not None:
        kv = dict(_KV.findall(failure.group("kv")))
        rhost = kv.get("rhost") or None
        fields = {"pam_service": service, "pam_module": module, "rhost": rhost, "ruser": kv.get("ruser") or None,
                  "logname": kv.get("logname") or None, "tty": kv.get("tty") or None, "uid": kv.get("uid") or None}
        if failure.group("more"):
            fields["repeated"] = count(failure.group("more"), 10**9)
        target = account(kv.get("user"))
        if service in {"su", "su-l", "sudo", "sudo-i"}:
            actor = account(kv.get("ruser")) or account(kv.get("logname"))
            kind = "sudo" if service.startswith("sudo") else "su"
            return Auth(kind, "failure", actor or target, address(rhost), {**fields, "target_user": target})
        return Auth("auth_failure", "failure", target, address(rhost), fields)
    if service in {"su", "su-l"}:
        session = _SESSION.match(rest)
        if session is not None:
            return Auth("su", "success", _actor(session.group("by"), session.group("uid")), None,
                        {"target_user": session.group("user"), "pam_service": service, "pam_module": module})
    return None
