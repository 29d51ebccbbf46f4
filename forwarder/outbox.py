"""The forwarding loop: read the next batches after a destination's cursor, send them, then acknowledge.

Backpressure comes from the database being the buffer: at most ``max_events`` are read per send, a
slow receiver slows only its own cursor, and a failing one backs off (doubling, capped) with its
position kept, so nothing is lost or reordered and ingest never waits for a SIEM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg_pool import ConnectionPool

from forwarder.errors import ForwardError
from forwarder.formats import cef, ocsf_json, octet_counted, rfc5424
from forwarder.transports import SyslogTcp
from storage.events import EventRecord
from storage.ocsf import OcsfType, types_from_catalogue
from storage.timescale import catalog, forwarding

PAYLOADS = ("cef", "ocsf")


@dataclass
class Destination:
    name: str  # the cursor's key
    transport: object  # SyslogTcp | HttpNdjson: send(list[bytes]), close()
    payload: str = "ocsf"  # syslog only: cef or ocsf (HTTP always carries OCSF JSON lines)
    hostname: str = "auditwatch"
    max_events: int = 1000
    backoff: timedelta = timedelta(seconds=1)
    backoff_cap: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Outcome:
    sent: int
    through: int
    error: str | None = None
    retry_in: timedelta | None = None


def _encode(destination: Destination, events: list[EventRecord], types: Mapping[str, OcsfType]) -> list[bytes]:
    if isinstance(destination.transport, SyslogTcp):
        body: Callable[[EventRecord], str] = cef if destination.payload == "cef" else (
            lambda e: ocsf_json(e, types))
        return [octet_counted(rfc5424(e, body(e), hostname=destination.hostname)) for e in events]
    return [ocsf_json(e, types).encode() + b"\n" for e in events]


def send_once(pool: ConnectionPool, destination: Destination, *, now: datetime) -> Outcome:
    """One step: the next batches, or nothing while backing off; the cursor moves only on delivery."""
    with pool.connection() as conn:
        state = forwarding.cursor(conn, destination.name)
        if state.retry_at is not None and state.retry_at > now:
            return Outcome(0, state.chain_pos, state.last_error, state.retry_at - now)
        batch = forwarding.pending(conn, destination.name, max_events=destination.max_events)
    if batch.through == state.chain_pos:
        return Outcome(0, batch.through)
    types = types_from_catalogue(catalog.event_types(pool)) if batch.events else {}
    try:
        if batch.events:
            destination.transport.send(_encode(destination, batch.events, types))
    except ForwardError as exc:
        delay = forwarding.failed(pool, destination.name, str(exc), now=now, base=destination.backoff,
                                  cap=destination.backoff_cap)
        return Outcome(0, state.chain_pos, str(exc), delay)
    forwarding.acknowledge(pool, destination.name, batch.through, len(batch.events))
    return Outcome(len(batch.events), batch.through)


def drain(pool: ConnectionPool, destination: Destination, *, clock: Callable[[], datetime],
          max_steps: int = 1000) -> list[Outcome]:
    """Send until caught up, or until a failure (the caller's schedule retries after the backoff)."""
    outcomes: list[Outcome] = []
    for _ in range(max_steps):
        outcome = send_once(pool, destination, now=clock())
        moved = not outcomes or outcome.through != outcomes[-1].through
        outcomes.append(outcome)
        if outcome.error or outcome.retry_in is not None or (outcome.sent == 0 and not moved):
            break
    return outcomes
