"""The worker process: scheduled jobs (APScheduler) over one connection pool.

Jobs are named module functions, idempotent over a window with a stored watermark, so a
job that runs twice, or on two workers at once, does no harm.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from auditwatch import integrity
from auditwatch.services import archive_root, database_url
from auditwatch.settings import Settings
from storage.timescale import db

log = logging.getLogger(__name__)

# (job id, "module:function", seconds between runs, or the name of the setting that holds them)
JOBS = (
    ("refresh_rollups", "storage.timescale.rollups:refresh_job", 60),
    # Cold tier: a few times a day; each run does nothing when nothing is due.
    ("archive", "storage.timescale.retention:archive_job", 6 * 3600),
    ("expire", "storage.timescale.retention:expire_job", 6 * 3600),
    ("integrity_checkpoint", "storage.timescale.integrity:checkpoint_job", "integrity_checkpoint_seconds"),
)

def _cold_kwargs(settings: Settings) -> dict:
    return {"archive_root": archive_root(settings)}


# Jobs that need more than the pool: job id -> settings -> extra keyword arguments.
JOB_KWARGS: dict[str, Callable[[Settings], dict]] = {
    "archive": _cold_kwargs,
    "expire": _cold_kwargs,
    "integrity_checkpoint": integrity.checkpoint_job_kwargs,
}
_COLD_JOBS = ("archive", "expire")  # their interval is the archive_interval_seconds setting


def build_scheduler(pool, settings: Settings | None = None) -> BlockingScheduler:
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(4)},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    settings = settings or Settings()
    for job_id, func, seconds in JOBS:
        if isinstance(seconds, str):
            seconds = getattr(settings, seconds)
        elif job_id in _COLD_JOBS and settings.archive_interval_seconds:
            seconds = settings.archive_interval_seconds
        kwargs = {"pool": pool, **(JOB_KWARGS[job_id](settings) if job_id in JOB_KWARGS else {})}
        scheduler.add_job(func, "interval", seconds=seconds, id=job_id, kwargs=kwargs,
                          next_run_time=datetime.now(UTC))
    return scheduler


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pool = db.open_pool(database_url(settings), min_size=1, max_size=4, name="worker")
    scheduler = build_scheduler(pool, settings)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("worker started with jobs: %s", ", ".join(j[0] for j in JOBS))
    try:
        scheduler.start()
    finally:
        pool.close()
