"""Received syslog lines through the ingest pipeline: parse → validate → redact → enrich → write.

R4 (who an event is about) for syslog: the account a line names is the user. Under the default
``register`` policy an account seen for the first time is registered (kind ``human``, registered by
``ingest:syslog``); a line that names nobody is attributed to its host, registered as the service
``host:<name>``. Under ``host``, events of unregistered accounts are attributed to the host too, with
the account kept in ``metadata.account``: nothing is ever refused for an unknown user, because a
syslog sender cannot be told to fix anything and a dropped line is a lost event.

R2: syslog relays store and forward, so lines may arrive late: the past is open (as for backfill),
the future is closed (dates are clamped to the receive time). R6 does not apply: a brute-force burst
is exactly what must not be thinned out.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import tzinfo
from typing import Any, Literal

from psycopg_pool import ConnectionPool

from ingest.pipeline import BatchResult, IngestPipeline, RequestContext
from ingest.syslog.events import host_principal, parse_line, unparsed_event
from ingest.syslog.header import zone_of
from ingest.syslog.listener import Received
from storage.timescale import catalog

log = logging.getLogger(__name__)

SyslogUsers = Literal["register", "host"]


def parse_zones(entries: Sequence[str]) -> dict[str, str]:
    """``("web1=Europe/Berlin", "10.0.0.7=UTC")`` as a mapping, each zone checked."""
    zones: dict[str, str] = {}
    for entry in entries:
        source, _, zone = entry.partition("=")
        zone_of(zone.strip())
        zones[source.strip()] = zone.strip()
    return zones


class SyslogIngestor:
    """Stores listener batches; callable, so it is the listener's ``handle``."""

    def __init__(self, pipeline: IngestPipeline, pool: ConnectionPool, *, zone: str | tzinfo = "UTC",
                 zones: Mapping[str, str] | None = None, unknown_users: SyslogUsers = "register") -> None:
        self._pipeline = pipeline
        self._pool = pool
        self._zone = zone_of(zone) if isinstance(zone, str) else zone
        self._zones = dict(zones or {})
        self._unknown_users = unknown_users
        self._known: set[str] = set()
        self.totals: Counter[str] = Counter()

    def events(self, batch: Sequence[Received]) -> list[dict[str, Any]]:
        return [parse_line(r.line, now=r.received_at, zone=self._zone, zones=self._zones, peer=r.peer,
                           occurrence=r.occurrence) for r in batch]

    def __call__(self, batch: Sequence[Received]) -> BatchResult:
        return self._store(self.events(batch))

    def raw(self, batch: Sequence[Received], reason: BaseException) -> BatchResult:
        """The listener's fallback: lines that could not be stored as parsed, kept raw with the reason."""
        return self._store([unparsed_event(r.line, reason=reason, now=r.received_at, peer=r.peer,
                                           occurrence=r.occurrence) for r in batch])

    def _store(self, events: list[dict[str, Any]]) -> BatchResult:
        self._attribute(events)
        result = self._pipeline.ingest(events, RequestContext(
            principal="syslog", backfill=True, rate_limited=False,
            register_users=self._unknown_users == "register"))
        self.totals["created"] += result.accepted
        self.totals["duplicate"] += result.duplicates
        if result.rejected:
            codes = Counter(r.error.code for r in result.results if r.error is not None)
            self.totals["rejected"] += result.rejected
            log.error("syslog: %d of %d lines were refused: %s", result.rejected, len(events), dict(codes))
        return result

    def _attribute(self, events: list[dict[str, Any]]) -> None:
        """Register the hosts as services; under the ``host`` policy, re-attribute unknown accounts."""
        hosts = {e["user_id"] for e in events if e["user_id"].startswith("host:")} - self._known
        if hosts:
            catalog.register_users(self._pool, [{"user_id": h, "kind": "service"} for h in sorted(hosts)],
                                   registered_by="ingest:syslog")
            self._known |= hosts
        if self._unknown_users != "host":
            return
        accounts = {e["user_id"] for e in events} - self._known
        if accounts:
            self._known |= catalog.existing_users(self._pool, accounts)
        missing_hosts = set()
        for event in events:
            if event["user_id"] not in self._known:
                event["metadata"]["account"] = event["user_id"]
                event["user_id"] = host_principal(event.get("resource_id"))
                missing_hosts.add(event["user_id"])
        missing_hosts -= self._known
        if missing_hosts:
            catalog.register_users(self._pool, [{"user_id": h, "kind": "service"} for h in sorted(missing_hosts)],
                                   registered_by="ingest:syslog")
            self._known |= missing_hosts
        if len(self._known) > 200_000:
            self._known.clear()
