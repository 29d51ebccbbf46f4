"""The worker process: scheduled jobs (APScheduler) over one connection pool.

Jobs are named module functions, idempotent over a window with a stored watermark, so a
job that runs twice, or on two workers at once, does no harm.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.util import ref_to_obj

from auditwatch.services import database_url
from auditwatch.settings import Settings
from storage.timescale import db

log = logging.getLogger(__name__)

# (job id, "module:function", seconds between runs[, "module:function" building extra kwargs from settings])
JOBS = (
    ("refresh_rollups", "storage.timescale.rollups:refresh_job", 60),
    ("alerts_evaluate", "alerts.jobs:evaluate_rules", "alerts_eval_seconds", "auditwatch.alerting:evaluate_kwargs"),
    ("alerts_deliver", "alerts.jobs:deliver", "alerts_dispatch_seconds", "auditwatch.alerting:deliver_kwargs"),
)


def build_scheduler(pool, settings: Settings | None = None) -> BlockingScheduler:
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(4)},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    for job_id, func, seconds, *extra in JOBS:
        kwargs = {"pool": pool}
        if extra:
            if settings is None or (job_id.startswith("alerts_") and not settings.alerts_enabled):
                continue
            kwargs.update(ref_to_obj(extra[0])(settings))
        if isinstance(seconds, str):  # a setting's name
            seconds = getattr(settings, seconds)
        scheduler.add_job(func, "interval", seconds=seconds, id=job_id, kwargs=kwargs,
                          next_run_time=datetime.now(UTC))
    return scheduler


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Jobs every few seconds: log their failures, not each run and each HTTP request.
    for noisy in ("apscheduler.executors.default", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Enough connections for every job at once (alert evaluation holds one and queries with another).
    pool = db.open_pool(database_url(settings), min_size=1, max_size=8, name="worker")
    scheduler = build_scheduler(pool, settings)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("worker started with jobs: %s", ", ".join(j[0] for j in JOBS))
    try:
        scheduler.start()
    finally:
        pool.close()
