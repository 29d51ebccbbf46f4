"""The scheduled forwarding job: every configured destination drained, one worker at a time per destination."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from forwarder.errors import ForwardError
from forwarder.outbox import PAYLOADS, Destination, drain
from forwarder.transports import HttpNdjson, SyslogTcp
from storage.timescale.db import advisory_lock

log = logging.getLogger(__name__)
LOCK_PREFIX = "forwarder:"  # one advisory lock per destination: two workers never send the same batch twice


def destination(spec: Mapping[str, Any]) -> Destination:
    """A destination from its settings: {name, kind: syslog|http, url, payload, token, max_events}."""
    kind, url = spec.get("kind"), spec.get("url", "")
    if kind == "syslog":
        if spec.get("payload", "ocsf") not in PAYLOADS:
            raise ForwardError(f"forward_syslog_payload must be one of {', '.join(PAYLOADS)}")
        transport: object = SyslogTcp(url)
    elif kind == "http":
        token = spec.get("token")
        transport = HttpNdjson(url, headers={"Authorization": f"Bearer {token}"} if token else None)
    else:
        raise ForwardError(f"unknown destination kind {kind!r}; use syslog or http")
    return Destination(spec["name"], transport, payload=spec.get("payload", "ocsf"),
                       max_events=int(spec.get("max_events", 1000)))


def forward_job(pool: ConnectionPool, destinations: Sequence[Mapping[str, Any]] = ()) -> dict[str, int]:
    """Send what each destination has not had yet; a destination another worker is sending to is skipped."""
    sent: dict[str, int] = {}
    for spec in destinations:
        target = destination(spec)
        with pool.connection() as conn:
            conn.autocommit = True
            try:
                with advisory_lock(conn, LOCK_PREFIX + target.name, wait=False) as mine:
                    if not mine:
                        continue
                    outcomes = drain(pool, target, clock=lambda: datetime.now(UTC))
            finally:
                conn.autocommit = False
                target.transport.close()
        sent[target.name] = sum(o.sent for o in outcomes)
        failure = next((o for o in outcomes if o.error), None)
        if failure:
            log.warning("forwarding to %s failed (retrying in %s): %s", target.name, failure.retry_in, failure.error)
    return sent
