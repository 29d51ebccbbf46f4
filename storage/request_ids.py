"""The id of the API request being served, carried to the code that stores its events.

The API binds it into structlog's context variables (``auditwatch/logs.py``); the group committer and the
bus publisher read it here, in the request's thread, and hand it on: on the pending write, or as a message
header the bus writer logs. Nothing here imports the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

HEADER = "Auditwatch-Request-Id"  # on bus messages


def current() -> str | None:
    """The request id bound in this thread's context, if any."""
    return structlog.contextvars.get_contextvars().get("request_id")


def headers() -> dict[str, str]:
    """The bus message header carrying the current request id (empty outside a request)."""
    request_id = current()
    return {HEADER: request_id} if request_id else {}


def distinct(ids: Iterable[str | None]) -> list[str]:
    """The ids in first-seen order, without repeats or blanks, for one log line."""
    return list(dict.fromkeys(i for i in ids if i))


def from_headers(all_headers: Iterable[Mapping[str, str] | None]) -> list[str]:
    return distinct((h or {}).get(HEADER) for h in all_headers)
