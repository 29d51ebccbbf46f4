"""HTTP plumbing shared by every blueprint: JSON errors and permission checks.

The application authenticates each request and puts the caller's ApiKey on
``flask.g.principal``; the decorators here only decide.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from ingest.errors import IngestError
from storage.auth import ApiKey, Permission
from storage.export import dumps


class HttpError(IngestError):
    """An error answered directly with its status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code, message, field)
        self.status = status
        self.headers = headers or {}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status=status, mimetype="application/json", headers=headers)


def error_response(exc: IngestError) -> Response:
    headers = dict(getattr(exc, "headers", {}) or {})
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return json_response(exc.to_json(), exc.status, headers)


def request_body() -> bytes:
    """The whole request body; 413 when it is over the limit, even when sent chunked.

    Without a Content-Length, Werkzeug stops reading at MAX_CONTENT_LENGTH and returns what it
    read without an error. A truncated body must never be parsed as if it were whole: an NDJSON
    batch would be stored up to the cut and lose its tail without a word to the client.
    """
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(raw) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return raw


def current_key() -> ApiKey:
    key = g.get("principal")
    if key is None:
        raise HttpError(401, "unauthenticated", "send an API key as `Authorization: Bearer <key>` "
                        "(create one with `auditwatch keys create`)")
    return key


def require(permission: Permission) -> Callable:
    """Allow the view only to keys whose role grants ``permission``."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            key = current_key()
            if not key.can(permission):
                raise HttpError(403, "forbidden",
                                f"the `{key.role}` role may not {permission.value.replace('_', ' ')}")
            return view(*args, **kwargs)

        wrapped.required_permission = permission  # type: ignore[attr-defined]
        return wrapped

    return decorate
