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
from auditwatch.services import database_url
from auditwatch.settings import Settings
from storage.timescale import db

log = logging.getLogger(__name__)

# (job id, "module:function", seconds between runs, or the name of the setting that holds them)
JOBS = (
    ("refresh_rollups", "storage.timescale.rollups:refresh_job", 60),
    ("integrity_checkpoint", "storage.timescale.integrity:checkpoint_job", "integrity_checkpoint_seconds"),
)

# Jobs that need more than the pool: job id -> settings -> extra keyword arguments.
JOB_KWARGS: dict[str, Callable[[Settings], dict]] = {
    "integrity_checkpoint": integrity.checkpoint_job_kwargs,
}


def build_scheduler(pool, settings: Settings | None = None) -> BlockingScheduler:
    settings = settings or Settings()
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(4)},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    for job_id, func, seconds in JOBS:
        extra = JOB_KWARGS[job_id](settings) if job_id in JOB_KWARGS else {}
        every = getattr(settings, seconds) if isinstance(seconds, str) else seconds
        scheduler.add_job(func, "interval", seconds=every, id=job_id, kwargs={"pool": pool, **extra},
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
