"""The worker process: scheduled jobs (APScheduler) over one connection pool.

Jobs are named module functions, idempotent over a window with a stored watermark, so a
job that runs twice, or on two workers at once, does no harm. Jobs that must run once across
all workers (the analytics jobs) run only on the holder of an advisory lock (the leader).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.util import ref_to_obj

from analytics.jobs import JobConfig
from analytics.lookback import LookbackCache
from auditwatch import health, logs, metrics, reporting
from auditwatch.services import archive_options, archive_root, database_url
from auditwatch.settings import Settings, SettingsError
from ingest.stopsignals import ignore_stop_signals, on_stop_signal
from storage.metrics import StateCollector
from storage.timescale import db
from storage.timescale.leader import AdvisoryLeader

log = logging.getLogger(__name__)

# (job id, "module:function", seconds between runs or the name of the setting that holds them,
#  "module:function" building the job's extra keyword arguments from settings, or None)
JOBS = (
    ("refresh_rollups", "storage.timescale.rollups:refresh_job", 60, None),
    # Cold tier: a few times a day; each run does nothing when nothing is due.
    ("archive", "storage.timescale.retention:archive_job", "archive_interval_seconds", "auditwatch.worker:cold_kwargs"),
    ("expire", "storage.timescale.retention:expire_job", "archive_interval_seconds", "auditwatch.worker:cold_kwargs"),
    ("score_anomalies", "analytics.jobs:score_job", "analytics_score_seconds", "auditwatch.worker:score_kwargs"),
    ("refit_detectors", "analytics.jobs:refit_job", "analytics_refit_seconds", "auditwatch.worker:analytics_kwargs"),
    ("integrity_checkpoint", "storage.timescale.sealing:checkpoint_job", "integrity_checkpoint_seconds",
     "auditwatch.integrity:checkpoint_job_kwargs"),
    ("alerts_evaluate", "alerts.jobs:evaluate_rules", "alerts_eval_seconds", "auditwatch.alerting:evaluate_kwargs"),
    ("alerts_deliver", "alerts.jobs:deliver", "alerts_dispatch_seconds", "auditwatch.alerting:deliver_kwargs"),
    # Safe on every worker: a per-destination advisory lock lets one send at a time.
    ("forward", "forwarder.jobs:forward_job", "forward_interval_seconds", "auditwatch.worker:forward_kwargs"),
)
# Jobs that must run once across all workers: only on the holder of the analytics advisory lock.
LEADER_JOBS = frozenset({"score_anomalies", "refit_detectors"})
# Scoring fits any missing model itself at start; the scheduled refit comes a little later, so that it does not
# race that first fit and learns from what arrived meanwhile (on `up`, the demo's day of history).
DELAYED_JOBS = frozenset({"refit_detectors"})
FIRST_REFIT_DELAY = timedelta(minutes=3)


def forward_kwargs(settings: Settings) -> dict:
    destinations = []
    if settings.forward_syslog_url:
        destinations.append({"name": "syslog", "kind": "syslog", "url": settings.forward_syslog_url,
                             "payload": settings.forward_syslog_payload, "max_events": settings.forward_max_events})
    if settings.forward_http_url:
        destinations.append({"name": "http", "kind": "http", "url": settings.forward_http_url,
                             "token": settings.forward_http_token or None, "max_events": settings.forward_max_events})
    return {"destinations": destinations}


def cold_kwargs(settings: Settings) -> dict:
    return {"archive_root": archive_root(settings), "archive_options": archive_options(settings)}


def model_key(settings: Settings) -> bytes:
    """The key that seals stored detector models: the setting, or one generated under the data directory.

    Written to a private temporary file and hard-linked into place, so a worker starting at the same
    moment sees either no key file or the whole key, never an empty one.
    """
    if settings.analytics_model_key:
        return settings.analytics_model_key.encode()
    path = settings.resolved_data_dir() / "analytics-model.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_hex(32))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
            log.info("generated the model sealing key %s; set AUDITWATCH_ANALYTICS_MODEL_KEY on multi-host setups",
                     path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if not key:
        raise SettingsError(f"the model sealing key file {path} is empty; delete it to have a new one generated "
                            "(stored models then need `auditwatch analytics refit`), or set "
                            "AUDITWATCH_ANALYTICS_MODEL_KEY")
    return key.encode()


def analytics_config(settings: Settings) -> JobConfig:
    return JobConfig(model_key=model_key(settings), history=timedelta(days=settings.analytics_history_days),
                     late=timedelta(minutes=settings.analytics_late_minutes), min_score=settings.analytics_min_score,
                     backfill=timedelta(days=settings.analytics_backfill_days),
                     refit_every=timedelta(seconds=settings.analytics_refit_seconds),
                     merge_gap=timedelta(minutes=settings.analytics_merge_gap_minutes),
                     max_context=timedelta(days=settings.analytics_context_days))


def analytics_kwargs(settings: Settings) -> dict:
    return {"config": analytics_config(settings)}


def score_kwargs(settings: Settings) -> dict:
    """The scoring job's: its config, and the cache that keeps detectors' long lookbacks between its runs."""
    config = analytics_config(settings)
    return {"config": config, "cache": LookbackCache(refresh=config.refit_every)}


def _enabled(job_id: str, settings: Settings, leader: AdvisoryLeader | None) -> bool:
    if job_id in LEADER_JOBS:
        return leader is not None and settings.analytics_enabled
    if job_id.startswith("alerts_"):
        return settings.alerts_enabled
    return True


def build_scheduler(pool, settings: Settings | None = None, leader: AdvisoryLeader | None = None) -> BlockingScheduler:
    """Every job that applies to these settings; without settings, only those that need none."""
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(4)},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    for job_id, func, seconds, extra in JOBS:
        if (settings is None and (extra or isinstance(seconds, str))) or (
                settings is not None and not _enabled(job_id, settings, leader)):
            continue
        kwargs = {"pool": pool}
        if extra:
            kwargs.update(ref_to_obj(extra)(settings))
        if job_id in LEADER_JOBS:
            kwargs["leader"] = leader
        if isinstance(seconds, str):  # a setting's name
            seconds = getattr(settings, seconds)
        first = datetime.now(UTC) + (min(timedelta(seconds=seconds), FIRST_REFIT_DELAY) if job_id in DELAYED_JOBS
                                     else timedelta(0))
        scheduler.add_job(func, "interval", seconds=seconds, id=job_id, kwargs=kwargs, next_run_time=first)
    if settings is not None and leader is not None:  # scheduled reports: once across workers, on the leader
        for job_id, trigger, kwargs in reporting.report_jobs(settings):
            scheduler.add_job("reports.jobs:scheduled_report", trigger, id=job_id,
                              kwargs={"pool": pool, "leader": leader, **kwargs})
    return scheduler


def run(settings: Settings) -> None:
    logs.configure(settings.log_format)
    # Jobs every few seconds: log their failures, not each run and each HTTP request.
    for noisy in ("apscheduler.executors.default", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Enough connections for every job at once (alert evaluation holds one and queries with another).
    pool = db.open_pool(database_url(settings), min_size=1, max_size=8, name="worker")
    leader = AdvisoryLeader(database_url(settings), name=f"auditwatch-worker-{os.getpid()}")
    scheduler = build_scheduler(pool, settings, leader)
    watcher = metrics.JobWatcher(leader.name).attach(scheduler)
    stop_ops = health.serve_ops(settings.ops_host, settings.worker_ops_port, pool=pool,
                                collectors=(StateCollector(pool),))

    def stop() -> None:
        if scheduler.running:
            scheduler.shutdown(wait=False)

    # SIGTERM, or Ctrl-C (on `up`, the terminal sends it to every component, and up a SIGTERM after it): the
    # first stops the scheduler, the rest do nothing (ingest/stopsignals.py), and none is a KeyboardInterrupt
    # raised wherever the main thread happens to be.
    on_stop_signal(stop)
    log.info("worker started with jobs: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    status = 1
    try:
        scheduler.start()
        status = 0
    except Exception:
        log.exception("the worker's scheduler failed")
        raise
    finally:
        running = watcher.drain(settings.worker_drain_seconds)
        stop_ops()
        leader.release()
        pool.close(timeout=2)
        if running:
            _abandon(running, settings.worker_drain_seconds, status)
        ignore_stop_signals()  # the interpreter's finalization would make a late SIGTERM fatal (status -15)


def _abandon(running: list[str], waited: float, status: int) -> NoReturn:
    """End the process without the jobs still running.

    A job's thread cannot be interrupted, and a normal exit would wait for it (the interpreter joins the
    executor's threads at exit): a job blocked on a lock, or a long first fit, held a stopping worker past
    `up`'s 45 s budget until it was killed. Ending the process drops the job's connection, so the server rolls
    its transaction back; every job is idempotent from a stored watermark and runs again at the next start.
    """
    log.warning("stopping while %s still run%s after %.0f s: interrupted, %s again at the next start "
                "(AUDITWATCH_WORKER_DRAIN_SECONDS waits longer)", ", ".join(running),
                "" if len(running) > 1 else "s", waited, "they run" if len(running) > 1 else "it runs")
    logging.shutdown()  # flush every handler: os._exit skips the interpreter's own cleanup
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
