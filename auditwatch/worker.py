"""The worker process: scheduled jobs (APScheduler) over one connection pool.

Jobs are named module functions, idempotent over a window with a stored watermark, so a
job that runs twice, or on two workers at once, does no harm.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from analytics.jobs import JobConfig
from auditwatch.services import archive_root, database_url
from auditwatch.settings import Settings
from storage.timescale import db
from storage.timescale.leader import AdvisoryLeader

log = logging.getLogger(__name__)

# (job id, "module:function", seconds between runs)
JOBS = (
    ("refresh_rollups", "storage.timescale.rollups:refresh_job", 60),
    # Cold tier: a few times a day; each run does nothing when nothing is due.
    ("archive", "storage.timescale.retention:archive_job", 6 * 3600),
    ("expire", "storage.timescale.retention:expire_job", 6 * 3600),
    ("score_anomalies", "analytics.jobs:score_job", 60),
    ("refit_detectors", "analytics.jobs:refit_job", 6 * 3600),
)
# Jobs that must run once across all workers: only on the holder of the analytics advisory lock.
LEADER_JOBS = {"score_anomalies": "analytics_score_seconds", "refit_detectors": "analytics_refit_seconds"}


def _cold_kwargs(settings: Settings) -> dict:
    return {"archive_root": archive_root(settings)}


# Jobs that take more than the pool: job id -> settings -> extra keyword arguments.
JOB_KWARGS = {"archive": _cold_kwargs, "expire": _cold_kwargs}


def model_key(settings: Settings) -> bytes:
    """The key that seals stored detector models: the setting, or one generated under the data directory."""
    if settings.analytics_model_key:
        return settings.analytics_model_key.encode()
    path = settings.resolved_data_dir() / "analytics-model.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_hex(32))
        log.info("generated the model sealing key %s; set AUDITWATCH_ANALYTICS_MODEL_KEY on multi-host setups", path)
    except FileExistsError:
        pass
    return path.read_text().strip().encode()


def analytics_config(settings: Settings) -> JobConfig:
    return JobConfig(model_key=model_key(settings), history=timedelta(days=settings.analytics_history_days),
                     late=timedelta(minutes=settings.analytics_late_minutes), min_score=settings.analytics_min_score)


def build_scheduler(pool, settings: Settings | None = None, leader: AdvisoryLeader | None = None) -> BlockingScheduler:
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(4)},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    settings = settings or Settings()
    for job_id, func, seconds in JOBS:
        if job_id in JOB_KWARGS and settings.archive_interval_seconds:
            seconds = settings.archive_interval_seconds
        kwargs = {"pool": pool, **(JOB_KWARGS[job_id](settings) if job_id in JOB_KWARGS else {})}
        if job_id in LEADER_JOBS:
            if leader is None or not settings.analytics_enabled:
                continue
            seconds = getattr(settings, LEADER_JOBS[job_id])
            kwargs.update(config=analytics_config(settings), leader=leader)
        scheduler.add_job(func, "interval", seconds=seconds, id=job_id, kwargs=kwargs,
                          next_run_time=datetime.now(UTC))
    return scheduler


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pool = db.open_pool(database_url(settings), min_size=1, max_size=4, name="worker")
    leader = AdvisoryLeader(database_url(settings), name=f"auditwatch-worker-{os.getpid()}")
    scheduler = build_scheduler(pool, settings, leader)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("worker started with jobs: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    try:
        scheduler.start()
    finally:
        leader.release()
        pool.close()
