"""What a line parser finds in an authentication message, and the parsers in the order they are tried."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest.validate import normal_ip


@dataclass(frozen=True, slots=True)
class Auth:
    """An authentication fact from one message: who, from where, and whether it worked.

    ``user`` is the account the event is about (the one logging in, or the one running su/sudo);
    None when the line names nobody, and the event is then attributed to the host.
    """

    event_type: str
    outcome: str
    user: str | None = None
    source_ip: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def address(text: str | None) -> str | None:
    """The canonical IP of ``text``, or None for a host name, an empty value or garbage."""
    if not text:
        return None
    return normal_ip(text.strip("[]"))


def account(text: str | None) -> str | None:
    """An account name as logged, or None when empty."""
    if text is None:
        return None
    text = text.strip()
    return text or None


def count(text: str | None, limit: int) -> int | None:
    """A small whole number from a log line (a port, a repeat count), or None when it is absent or out of
    range: a sender can write any number of digits, and ``int()`` refuses past 4,300 of them."""
    if not text or len(text) > len(str(limit)):
        return None
    value = int(text)
    return value if value <= limit else None


# A parser takes (program name, message) and returns an Auth, or None when the line is not its kind.
Parser = Callable[[str, str], "Auth | None"]
