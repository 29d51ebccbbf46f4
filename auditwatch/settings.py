"""Layered settings: defaults → TOML file → AUDITWATCH_* environment → explicit overrides.

Loaded once at the edge (CLI, server factory, tests) and passed down as arguments.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.bussign import BusKeys, SigningKeyError
from storage.location import DEFAULT_DATA_DIR, DEFAULT_DB_PORT

ENV_PREFIX = "AUDITWATCH_"


class SettingsError(ValueError):
    """A setting that cannot be used as given."""


@dataclass(frozen=True)
class Settings:
    # Where the embedded database, keys and logs live.
    data_dir: Path = DEFAULT_DATA_DIR
    # An existing TimescaleDB server; empty means the embedded, project-local one.
    database_url: str = ""
    # A streaming replica of it (docs/scaling.md): the dashboard, the query API, exports and the data API read
    # there; writes, erasure, verification and the audit records of reads stay on ``database_url``. Empty: no
    # replica, everything on the primary.
    read_database_url: str = ""
    db_port: int = DEFAULT_DB_PORT
    chunk_interval: str = "1 day"
    pool_min: int = 2
    pool_max: int = 16  # ingest, the writer and admin changes: no statement timeout
    # Reads (query API, dashboard) and exports each have their own pool and time budget, so a viewer's
    # heavy read can neither hold an ingest connection nor run for ever (README "Database outages and budgets").
    read_pool_max: int = 8
    read_statement_timeout: float = 15.0  # seconds per statement of the query API and the dashboard
    export_pool_max: int = 2  # exports at once per server process; one more waits export_wait_seconds, then 503
    export_statement_timeout: float = 600.0
    export_wait_seconds: float = 2.0
    max_count: int = 10_000  # include_total counts up to this many matches and says when it stopped there

    # HTTP server
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    threads: int = 16
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch: int = 10_000
    public_url: str = ""

    # Ingest rules
    clock_skew_seconds: int = 300  # R2
    unknown_users: str = "reject"  # R4: reject | register
    rate_limit_per_minute: int = 600_000  # R6: events per sending API key per minute; 0 disables
    max_metadata_bytes: int = 10 * 1024  # R7
    geoip: bool = True  # R8
    geoip_mmdb: str = ""  # a MaxMind country/city .mmdb instead of the bundled database
    geoip_asn_mmdb: str = ""
    redact_keys: tuple[str, ...] = field(default=())  # R9: extra sensitive keys on top of the defaults
    # R11 (ingest/phi.py): PHI tags. Values of tagged fields are tokenised (HMAC, same value -> same token; the
    # value kept encrypted in the vault, revealed only by `phi_reveal`, audited) or redacted, before storage.
    phi_event_types: tuple[str, ...] = field(default=())  # every metadata value and the resource of these types
    phi_resources: tuple[str, ...] = field(default=())  # resource_id patterns (fnmatch), e.g. "patients/*"
    phi_metadata_keys: tuple[str, ...] = field(default=())  # values under these keys, at any depth
    phi_mode: str = "tokenise"  # tokenise | redact
    phi_key: str = ""  # base64 of 32 bytes (prefer AUDITWATCH_PHI_KEY); wins over the file
    phi_key_file: str = ""  # default: <data_dir>/phi/phi.key, created 0600 on first use
    # GDPR erasure (auditwatch gdpr): event types kept under a retention obligation when a subject is erased
    gdpr_retain_event_types: tuple[str, ...] = field(default=())
    group_commit_threads: int = 2
    group_commit_max_events: int = 5000
    group_commit_max_queued_events: int = 100_000  # more waiting than this: 503 at once (database slow or down)
    key_cache_seconds: float = 5.0

    # Query API
    max_query_limit: int = 1000
    max_export_rows: int = 5_000_000

    # Tamper evidence (storage/timescale/sealing.py, verify.py). With nothing configured, a signing key is
    # generated under data_dir/integrity/ (mode 0600) the first time a checkpoint is signed.
    integrity: bool = True  # seal every write into the hash chain; off only to measure its cost
    integrity_signing_key: str = ""  # base64 Ed25519 seed (prefer the environment); wins over the file
    integrity_signing_key_file: str = ""  # default: <data_dir>/integrity/signing.key
    integrity_trusted_keys: tuple[str, ...] = field(default=())  # base64 public keys of rotated-out keys
    integrity_checkpoint_seconds: int = 300  # how often the worker signs the chain head

    # Cold tier: Parquet archive, retention and legal hold (retention periods themselves are the
    # run-time `retention` setting, PUT /api/v1/retention)
    archive_url: str = ""  # a directory or a pyarrow filesystem URL (s3://bucket/prefix); empty: <data_dir>/archive
    # S3-protocol stores (AWS, MinIO, Ceph, R2): endpoint, region and addressing go in the URL's query string,
    # s3://bucket/prefix?endpoint=http://minio:9000&region=us-east-1&path_style=true; credentials only here
    # (prefer AUDITWATCH_ARCHIVE_*), or empty for the standard AWS chain (AWS_* variables, ~/.aws, instance role).
    archive_access_key_id: str = ""
    archive_secret_access_key: str = ""
    archive_session_token: str = ""
    # Forwarder (forwarder/): stream stored events to other SIEMs; both empty: off. Each destination keeps its
    # own position, so a SIEM that is down catches up later and nothing is sent twice.
    forward_syslog_url: str = ""  # tcp://host:514 or tls://host:6514: RFC 5424, octet-counted (RFC 6587)
    forward_syslog_payload: str = "ocsf"  # ocsf (OCSF 1.1 JSON) or cef (ArcSight CEF)
    forward_http_url: str = ""  # POSTs OCSF JSON lines as application/x-ndjson
    forward_http_token: str = ""  # sent as a Bearer token; prefer AUDITWATCH_FORWARD_HTTP_TOKEN
    forward_interval_seconds: int = 10
    forward_max_events: int = 1000  # per send: whole integrity batches up to this many events
    archive_interval_seconds: int = 6 * 3600  # how often the worker archives and expires (each run is idempotent)
    # Analytics (anomaly detection jobs in `auditwatch worker`, on the leader only; see analytics/jobs.py)
    analytics_enabled: bool = True
    analytics_score_seconds: int = 60  # how often new windows are scored
    analytics_refit_seconds: int = 6 * 3600  # how often baselines are refitted and stored as a new version
    analytics_history_days: float = 14.0  # history each refit learns from
    # History scored when the worker starts on a store that holds it, and after a backfill (days, at most).
    analytics_backfill_days: float = 3.0
    # Anomalous windows of one detector and entity closer than this are one incident that grows.
    analytics_merge_gap_minutes: int = 60
    # Farthest back a detector reads before a scored range (slow_failures' 7-day horizon needs 7), only the
    # event types it declares, kept in memory between scoring runs; less makes its long horizons see less.
    analytics_context_days: float = 7.0
    analytics_late_minutes: int = 60  # rescored every run, so events arriving this late are still counted
    analytics_min_score: float = 0.6  # calibrated score (0.6: one window in a million) from which to store
    # Seals stored models (HMAC) so only workers holding it can load them; every worker of one database needs
    # the same key. Empty: generated once into <data_dir>/analytics-model.key (fine for a single host).
    analytics_model_key: str = ""
    # -- Syslog, OTLP and the NATS JetStream bus (ingest/syslog, ingest/otlp.py, ingest/bus.py) ------
    syslog_host: str = "127.0.0.1"
    syslog_udp_port: int = 5514  # 0: no UDP listener
    syslog_tcp_port: int = 5514  # 0: no TCP listener (octet-counting and newline framing)
    syslog_tls_port: int = 0  # 0: no TLS listener; needs syslog_tls_cert and syslog_tls_key (6514 is standard)
    syslog_tls_cert: str = ""
    syslog_tls_key: str = ""
    syslog_max_message_bytes: int = 16 * 1024  # longer messages are cut (UDP) or skipped (TCP)
    syslog_queue_lines: int = 4096  # bounded memory; TCP readers pause when full (back-pressure)
    syslog_max_connections: int = 1000
    syslog_processes: int = 1  # store processes: 1 parses and writes in the listener; 2+ in worker processes
    syslog_zone: str = "UTC"  # the zone of RFC 3164 dates, which carry none
    syslog_source_zones: tuple[str, ...] = field(default=())  # per sender: "host=Europe/Berlin,10.0.0.7=UTC"
    syslog_unknown_users: str = "register"  # R4 for syslog accounts: register | host (attribute to the host)
    otlp_max_records: int = 10_000  # log records per OTLP export request
    bus_url: str = ""  # nats://host:4222[,nats://...]; empty: write directly (no broker)
    bus_stream: str = "AUDITWATCH_EVENTS"
    bus_subject: str = "auditwatch.events"
    bus_deadletter_stream: str = "AUDITWATCH_DEADLETTERS"
    bus_deadletter_subject: str = "auditwatch.deadletters"
    bus_publish_timeout: float = 5.0  # seconds to wait for JetStream's ack before answering 503
    bus_ack_wait: float = 30.0  # a writer that does not ack in this time has its messages redelivered
    bus_max_failures: int = 3  # R10: deliveries that fail before a message is dead-lettered
    bus_replicas: int = 1  # JetStream replicas of the streams (3 on a NATS cluster); existing streams must match
    # What an ack means (ingest/busdurability.py): "always" = the NATS server fsyncs every write
    # (jetstream { sync_interval: always }, nats-server >= 2.10), so "stored" means on disk; "interval" =
    # acks may sit in the page cache until the server's periodic fsync (2 min by default).
    bus_sync: str = "always"
    bus_monitor_url: str = ""  # http://nats-host:8222: the client confirms bus_sync from /varz at connect
    # Nodes sign each message they checked (HMAC-SHA256); writers holding the key store it without checking it
    # again (ingest/bussign.py). Base64 of >= 32 bytes, the same on nodes and writers (prefer the environment,
    # AUDITWATCH_BUS_SIGNING_KEY); comma-separated to rotate (the first signs, each verifies). Empty: writers
    # re-validate every event.
    bus_signing_key: str = ""
    writer_batch: int = 1000  # events per writer transaction, about (whole bus messages are fetched)
    writer_fetch_bytes: int = 8 * 1024 * 1024  # at most this much per bus fetch (large messages: fewer per fetch)
    # Compliance reports (reports/): each schedule NAME|CRON|PERIOD[|SCOPE], e.g. "access-review|0 6 1 * *|month"
    # (UTC; PERIOD day, week or month: the one just ended), generated by the worker's leader (reports/jobs.py).
    report_schedules: tuple[str, ...] = field(default=())
    reports_dir: str = ""  # where scheduled reports are written; default <data_dir>/reports
    reports_to_archive: bool = False  # also copy them under reports/ in the archive root (e.g. the object store)
    # Alerting (alerts/): rules, schedules and receivers. Credentials only here or in AUDITWATCH_*
    # environment variables, never in rule files. With none set, alerts go to the local sink
    # (<data_dir>/alerts/notifications.jsonl), which the dashboard reads.
    alerts_enabled: bool = True
    alerts_rules_dir: str = ""  # your rules on top of the packaged pack; default <data_dir>/alert-rules
    alerts_routing_file: str = ""  # a routing tree instead of alerts/routing.yml
    alerts_eval_seconds: float = 10.0  # rule evaluation period (end-to-end latency <= 30 s with group_wait 10 s)
    alerts_dispatch_seconds: float = 2.0  # outbox delivery period
    alerts_sink_path: str = ""  # default <data_dir>/alerts/notifications.jsonl
    slack_bot_token: str = ""  # xoxb-...: chat.postMessage (scopes chat:write, channels:history)
    slack_api_url: str = "https://slack.com/api/"
    slack_channel_critical: str = "#sec-oncall"
    slack_channel_warning: str = "#sec-alerts"
    slack_webhook_url: str = ""  # an incoming webhook instead of a bot token
    pagerduty_routing_key: str = ""  # Events API v2 integration key of a PagerDuty service
    pagerduty_events_url: str = "https://events.pagerduty.com"
    pagerduty_ca_bundle: str = ""  # a CA file for a PagerDuty proxy or test double
    alerts_webhook_url: str = ""  # generic webhook, HMAC-signed with alerts_webhook_secret
    alerts_webhook_secret: str = ""
    alerts_webhook_format: str = "auditwatch"  # or "alertmanager" (Alertmanager's webhook payload, version 4)
    alertmanager_urls: str = ""  # comma-separated Alertmanager URLs to push every alert to (POST /api/v2/alerts)
    alerts_ca_bundle: str = ""  # a CA file for Slack / webhook endpoints behind a private CA
    # Dashboard (Dash at /dashboard/): the session cookie's signing secret (empty: generated once into
    # data_dir/dashboard-secret-key), how long a sign-in lasts, and whether to serve the dashboard at all.
    dashboard: bool = True
    dashboard_secret_key: str = ""
    dashboard_session_hours: float = 12.0
    # Operations: logs, and the health/metrics port of the processes that are not the API (the API serves
    # /healthz, /readyz and /metrics itself). 0 turns a port off.
    log_format: str = "text"  # text | json (one JSON object a line, with request ids)
    access_log: bool = True  # one line per API request
    ops_host: str = "127.0.0.1"  # where the worker, syslog listener and writer serve /healthz, /readyz, /metrics
    worker_ops_port: int = 9464
    # A stopping worker lets its running jobs end this long, then exits without them (each resumes from its
    # watermark at the next start). Under `up`, keep it inside up's 45 s stop budget.
    worker_drain_seconds: float = 20.0
    syslog_ops_port: int = 9465
    writer_ops_port: int = 9466
    metrics_dir: str = ""  # gunicorn multiprocess metrics files; default <data_dir>/metrics/<port>

    @property
    def embedded(self) -> bool:
        return not self.database_url

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def replace(self, **changes: Any) -> Settings:
        return load(base=self, overrides=changes, environ={}, config_file=None)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_TYPES = typing.get_type_hints(Settings)


def _coerce(name: str, value: Any) -> Any:
    kind = _TYPES[name]
    try:
        if kind is Path:
            return Path(value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(value)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind == tuple[str, ...]:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"setting `{name}` = {value!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def _validate(settings: Settings) -> Settings:
    if settings.unknown_users not in {"reject", "register"}:
        raise SettingsError("`unknown_users` must be `reject` or `register`")
    if settings.max_batch < 1 or settings.max_batch > 100_000:
        raise SettingsError("`max_batch` must be between 1 and 100000")
    if not 0 <= settings.analytics_min_score <= 1:
        raise SettingsError("`analytics_min_score` must be between 0 and 1")
    if settings.analytics_backfill_days < 0 or settings.analytics_merge_gap_minutes < 0:
        raise SettingsError("`analytics_backfill_days` and `analytics_merge_gap_minutes` cannot be negative "
                            "(a backfill of 0 scores no history; a gap of 0 merges only overlapping windows)")
    if settings.analytics_context_days < 0:
        raise SettingsError("`analytics_context_days` cannot be negative (7 gives slow_failures its whole week)")
    if settings.analytics_score_seconds < 1 or settings.analytics_refit_seconds < 1:
        raise SettingsError("`analytics_score_seconds` and `analytics_refit_seconds` must be at least 1")
    if settings.read_pool_max < 1 or settings.export_pool_max < 1 or settings.max_count < 1:
        raise SettingsError("`read_pool_max`, `export_pool_max` and `max_count` must be at least 1")
    if min(settings.read_statement_timeout, settings.export_statement_timeout, settings.export_wait_seconds) <= 0:
        raise SettingsError("`read_statement_timeout`, `export_statement_timeout` and `export_wait_seconds` are "
                            "seconds above 0")
    if settings.writer_batch < 1 or settings.writer_fetch_bytes < 64 * 1024:
        raise SettingsError("`writer_batch` must be at least 1 and `writer_fetch_bytes` at least 65536 (64 KiB); "
                            "the defaults are 1000 and 8388608")
    if settings.integrity_checkpoint_seconds < 1:
        raise SettingsError("`integrity_checkpoint_seconds` must be at least 1")
    if not 0 <= settings.worker_drain_seconds <= 3600:
        raise SettingsError("`worker_drain_seconds` must be 0 to 3600 (how long a stopping worker waits for its "
                            "running jobs; 20 by default)")
    if settings.database_url and not settings.database_url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("`database_url` must be a postgresql:// URL (or empty for the embedded database)")
    if settings.read_database_url and not settings.read_database_url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("`read_database_url` must be the postgresql:// URL of a streaming replica of the "
                            "database (or empty to read from the primary); docs/scaling.md shows how to make one")
    if settings.alerts_webhook_format not in {"auditwatch", "alertmanager"}:
        raise SettingsError("`alerts_webhook_format` must be `auditwatch` (our payload, signed) or `alertmanager` "
                            "(Alertmanager's webhook payload, version 4)")
    if settings.alertmanager_urls and not all(u.strip().startswith(("http://", "https://"))
                                              for u in settings.alertmanager_urls.split(",")):
        raise SettingsError("`alertmanager_urls` takes http(s) URLs, comma-separated, e.g. http://alertmanager:9093")
    if not 1 <= settings.syslog_processes <= 64:
        raise SettingsError("`syslog_processes` must be 1 to 64: 1 stores in the listener process, 2 or more in "
                            "that many worker processes (about one per core the database leaves free)")
    if settings.syslog_unknown_users not in {"register", "host"}:
        raise SettingsError("`syslog_unknown_users` must be `register` or `host`")
    if settings.bus_url and not all(u.strip().startswith(("nats://", "tls://")) for u in settings.bus_url.split(",")):
        raise SettingsError("`bus_url` must be nats:// URLs separated by commas (or empty for no bus)")
    if settings.bus_sync not in {"always", "interval"}:
        raise SettingsError("`bus_sync` must be `always` (the NATS server fsyncs every write: an ack means on disk) "
                            "or `interval` (acks may wait for its periodic fsync)")
    if not 1 <= settings.bus_replicas <= 5:
        raise SettingsError("`bus_replicas` must be 1 to 5 (JetStream's limit; 3 on a cluster)")
    if settings.bus_monitor_url and not settings.bus_monitor_url.startswith(("http://", "https://")):
        raise SettingsError("`bus_monitor_url` must be the NATS server's http:// monitoring URL (or empty)")
    try:
        BusKeys.from_setting(settings.bus_signing_key)
    except SigningKeyError as exc:
        raise SettingsError(f"`bus_signing_key`: {exc}") from None
    for entry in settings.syslog_source_zones:
        if "=" not in entry:
            raise SettingsError(f"`syslog_source_zones` entry {entry!r} must be host=Area/City")
    if settings.phi_mode not in {"tokenise", "redact"}:
        raise SettingsError("`phi_mode` must be `tokenise` (keyed-hash tokens, values in the vault) or `redact`")
    if settings.log_format not in {"text", "json"}:
        raise SettingsError("`log_format` must be `text` or `json`")
    if settings.alerts_eval_seconds < 1 or settings.alerts_dispatch_seconds < 0.5:
        raise SettingsError("`alerts_eval_seconds` must be at least 1 and `alerts_dispatch_seconds` at least 0.5")
    return settings


def load(*, base: Settings | None = None, config_file: Path | str | None = "auto",
         environ: typing.Mapping[str, str] | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings from each layer in turn; later layers win."""
    values: dict[str, Any] = dataclasses.asdict(base) if base else {}
    environ = os.environ if environ is None else environ
    if config_file == "auto":
        config_file = environ.get(f"{ENV_PREFIX}CONFIG") or ("auditwatch.toml" if Path("auditwatch.toml").exists() else None)
    if config_file:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in _FIELDS:
                raise SettingsError(f"config file {path}: unknown setting `{key}`")
            values[key] = _coerce(key, value)
    for name in _FIELDS:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = _coerce(name, env_value)
    for key, value in (overrides or {}).items():
        if key not in _FIELDS:
            raise SettingsError(f"unknown setting `{key}`")
        values[key] = _coerce(key, value)
    return _validate(Settings(**values))
