"""The long-lived objects one server or CLI process shares: pool, writer, pipeline."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import ConnectionPool

from auditwatch import privacy
from auditwatch.settings import Settings
from ingest.bus import BusClient, BusConfig, BusPublisher
from ingest.bussign import BusKeys
from ingest.enrich import geo_lookup
from ingest.pipeline import IngestPipeline, IngestPolicy
from ingest.redact import DEFAULT_SENSITIVE_KEYS, Redactor
from ingest.validate import ValidationPolicy
from storage import location
from storage import metrics as storage_metrics
from storage.auth import ApiKey
from storage.cold.store import ColdStore
from storage.events import EventRecord, Outcome
from storage.timescale import catalog, db, replica, roles, self_audit
from storage.timescale.cluster import DATABASE, LocalCluster
from storage.timescale.writer import EventWriter, GroupCommitter

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    """The configured server, or the embedded cluster under the data directory."""
    return location.database_url(settings.database_url, settings.resolved_data_dir(), settings.db_port)


def app_database_url(settings: Settings) -> str:
    """Where the API and the writer connect: the configured server as given (point it at the app role of
    storage/timescale/roles.sql; README "Database roles"), or the embedded cluster as that least-privilege
    role once `auditwatch migrate` (or `up`) has made it, which may append events but never change one."""
    if settings.database_url:
        return settings.database_url
    cluster = LocalCluster(settings.resolved_data_dir(), port=settings.db_port)
    made = roles.exists(cluster.url)
    if made is None:
        return cluster.url  # not running: open_pool says how to start it
    if not made:
        log.warning("the embedded database has no %s role yet: the API connects as the owner; run "
                    "`auditwatch migrate` to make it", roles.APP_ROLE)
        return cluster.url
    return cluster.url_for(DATABASE, user=roles.APP_ROLE)


def archive_root(settings: Settings) -> str:
    """Where the cold tier lives: the configured URL, or a directory beside the embedded database."""
    return location.archive_root(settings.archive_url, settings.resolved_data_dir())


def archive_options(settings: Settings) -> dict[str, str]:
    """The cold tier's object-store credentials (the other options travel in ``archive_url``)."""
    values = {"access_key_id": settings.archive_access_key_id,
              "secret_access_key": settings.archive_secret_access_key,
              "session_token": settings.archive_session_token}
    return {k: v for k, v in values.items() if v}


def cold_store(settings: Settings) -> ColdStore:
    return ColdStore(archive_root(settings), options=archive_options(settings))


def ingest_policy(settings: Settings) -> IngestPolicy:
    return IngestPolicy(
        validation=ValidationPolicy(
            clock_skew=timedelta(seconds=settings.clock_skew_seconds),
            max_metadata_bytes=settings.max_metadata_bytes,
        ),
        unknown_users=settings.unknown_users,  # type: ignore[arg-type]
        rate_limit_per_minute=settings.rate_limit_per_minute or None,
    )


def bus_config(settings: Settings) -> BusConfig | None:
    """The JetStream bus, when ``bus_url`` is set; None keeps the direct path."""
    if not settings.bus_url:
        return None
    return BusConfig(url=settings.bus_url, stream=settings.bus_stream, subject=settings.bus_subject,
                     deadletter_stream=settings.bus_deadletter_stream,
                     deadletter_subject=settings.bus_deadletter_subject,
                     publish_timeout=settings.bus_publish_timeout, ack_wait=settings.bus_ack_wait,
                     max_failures=settings.bus_max_failures, batch=settings.writer_batch,
                     fetch_bytes=settings.writer_fetch_bytes,
                     replicas=settings.bus_replicas, sync=settings.bus_sync,
                     monitor_url=settings.bus_monitor_url, keys=BusKeys.from_setting(settings.bus_signing_key))


@dataclass
class Services:
    settings: Settings
    pool: ConnectionPool
    writer: EventWriter
    committer: GroupCommitter
    pipeline: IngestPipeline
    bus: BusClient | None = None  # set when events go through JetStream (settings.bus_url)
    read_pool: ConnectionPool | None = None  # reads under read_statement_timeout (the pool when not opened)
    export_pool: ConnectionPool | None = None  # exports: few connections, their own time budget
    _key_cache: dict[str, tuple[ApiKey | None, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Settings, *, url: str | None = None) -> Services:
        url = url or app_database_url(settings)
        pool = db.open_pool(url, min_size=settings.pool_min, max_size=settings.pool_max, name="ingest")
        # Reads and exports go to the streaming replica when there is one (docs/scaling.md "Read replica");
        # while it is down they fail at once with ReplicaDown (503), and nothing else is affected.
        read_url, replica = (settings.read_database_url, True) if settings.read_database_url else (url, False)
        opened = [pool]
        try:  # the database going down between two pools: the ones opened are not left reconnecting for ever
            read_pool = db.open_pool(read_url, min_size=1, max_size=settings.read_pool_max, name="read",
                                     statement_timeout=settings.read_statement_timeout, replica=replica)
            opened.append(read_pool)
            export_pool = db.open_pool(read_url, min_size=0, max_size=settings.export_pool_max, name="export",
                                       statement_timeout=settings.export_statement_timeout,
                                       timeout=settings.export_wait_seconds, replica=replica)
        except BaseException:
            for each in opened:
                each.close()
            raise
        writer = EventWriter(pool, sealed=settings.integrity)
        committer = GroupCommitter(writer, max_group_events=settings.group_commit_max_events,
                                   threads=settings.group_commit_threads,
                                   max_queued_events=settings.group_commit_max_queued_events)
        config = bus_config(settings)
        bus = BusClient(config) if config else None
        pipeline = IngestPipeline(
            pool=pool,
            committer=BusPublisher(bus) if bus else committer,
            geo=geo_lookup(settings.geoip_mmdb or None, settings.geoip_asn_mmdb or None, enabled=settings.geoip),
            redactor=Redactor(DEFAULT_SENSITIVE_KEYS + tuple(settings.redact_keys)),
            policy=ingest_policy(settings),
            phi=privacy.phi_rule(settings, pool),
        )
        return cls(settings, pool, writer, committer, pipeline, bus, read_pool=read_pool, export_pool=export_pool)

    def close(self) -> None:
        if self.bus is not None:
            self.bus.close()
        self.committer.close()
        for extra in (self.read_pool, self.export_pool):
            if extra is not None:
                extra.close()
        self.pool.close()

    @property
    def reads(self) -> ConnectionPool:
        """The pool for the query API and the dashboard (statement_timeout bounded)."""
        return self.read_pool or self.pool

    @property
    def replicated(self) -> bool:
        """Reads go to a streaming replica (``read_database_url``)."""
        return bool(self.settings.read_database_url) and self.read_pool is not None

    def replica_status(self) -> replica.ReplicaStatus | None:
        """The replica's lag as it reports it, also set on the Prometheus gauge; None without a replica."""
        if not self.replicated:
            return None
        found = replica.status(self.reads)
        storage_metrics.observe_replica(found)
        return found

    @property
    def exports(self) -> ConnectionPool:
        """The pool for exports: a viewer's export can never take an ingest connection."""
        return self.export_pool or self.pool

    @property
    def archive(self) -> ColdStore:
        return cold_store(self.settings)

    def authenticate(self, key: str) -> ApiKey | None:
        """The key's record, cached briefly so each request does not cost a query.

        A revocation takes effect within ``key_cache_seconds``.
        """
        now = time.monotonic()
        cached = self._key_cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = catalog.authenticate(self.pool, key)
        with self._lock:
            if len(self._key_cache) > 10_000:
                self._key_cache.clear()
            self._key_cache[key] = (found, now + self.settings.key_cache_seconds)
        return found

    def forget_keys(self) -> None:
        with self._lock:
            self._key_cache.clear()

    def audit(self, event_type: str, principal: str, **fields: Any) -> EventRecord:
        """Record an action of the platform itself (reads, exports, key and config changes)."""
        record = self.audit_record(event_type, principal, **fields)
        self.committer.write([record])
        return record

    def audit_record(self, event_type: str, principal: str, *, metadata: dict[str, Any] | None = None,
                     outcome: Outcome = Outcome.SUCCESS, resource_id: str | None = None,
                     source_ip: str | None = None, user_agent: str | None = None) -> EventRecord:
        """The audit event for an action, not yet written."""
        return self_audit.record(event_type, principal, now=datetime.now(UTC), metadata=metadata, outcome=outcome,
                                 resource_id=resource_id, source_ip=source_ip, user_agent=user_agent,
                                 redact=self.pipeline.redact)
