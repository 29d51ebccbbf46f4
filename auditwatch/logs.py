"""Logging for every process: text for a terminal or JSON (one object a line) for a log pipeline, with the
request id of the API request being served carried into every line logged on its behalf.

Every module keeps logging through the standard library (``logging.getLogger(__name__)``); structlog's
``ProcessorFormatter`` renders those records, adding the bound context (``request_id``) and any ``extra=``
fields. The request id lives in structlog's context variables, so code below the API (the group committer,
the bus publisher) reads it without importing anything from here.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

import structlog
from flask import Flask, Response, g, request

from auditwatch import metrics

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("auditwatch.access")


def configure(fmt: str = "text", *, level: int = logging.INFO, stream=None) -> None:
    """Route every stdlib logger through structlog's formatter, as ``text`` or ``json``."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        render = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:  # plain tracebacks: a rich one would print local variables, secrets among them
        render = [structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0,
                                                exception_formatter=structlog.dev.plain_traceback)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render])
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:  # others (a test's capture) stay
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # structlog's own loggers (if any module uses them) go through the same handler.
    structlog.configure(processors=[*shared[:2], structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
                        logger_factory=structlog.stdlib.LoggerFactory(),
                        wrapper_class=structlog.stdlib.BoundLogger, cache_logger_on_first_use=True)


class _Handler(logging.StreamHandler):
    """Writes to the given stream, or to whatever ``sys.stderr`` is at the time (click's test runner swaps it)."""

    def __init__(self, stream=None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    @property
    def stream(self):
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def current_request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a sane token (a proxy's or a client's), else a fresh one."""
    if header and _VALID_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def init_app(app: Flask, *, access: bool = True) -> None:
    """Request ids in and out, the request histogram, and one access log line per request."""

    @app.before_request
    def bind_request_id() -> None:
        structlog.contextvars.clear_contextvars()
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.request_started = time.perf_counter()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    def finish(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.HTTP_SECONDS.labels(route, request.method, str(response.status_code)).observe(seconds)
        if access:
            access_log.info("%s %s %s", request.method, request.path, response.status_code,
                            extra={"method": request.method, "path": request.path, "status": response.status_code,
                                   "duration_ms": round(seconds * 1000, 2), "remote_addr": request.remote_addr,
                                   # The header only: calculate_content_length() would read a streamed
                                   # export into memory to count it.
                                   "bytes": None if response.is_streamed else response.content_length})
        return response

    @app.teardown_request
    def unbind(_exc: BaseException | None) -> None:
        structlog.contextvars.clear_contextvars()
