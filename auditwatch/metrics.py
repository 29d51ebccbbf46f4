"""Exposing metrics: the registry each process serves on /metrics, gunicorn multiprocess mode, and the
worker's job and leader metrics.

The API runs several gunicorn worker processes; Prometheus scrapes one of them at random, so their
samples go through files in ``PROMETHEUS_MULTIPROC_DIR`` that every worker sums on /metrics
(prometheus_client's multiprocess mode). The worker, the syslog listener and the bus writer are single
processes and serve the default registry, collectors included.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)
from prometheus_client import generate_latest as _generate

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format generate_latest writes (every Prometheus 2.x reads it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

JOB_LAST_SUCCESS = Gauge("auditwatch_job_last_success_timestamp_seconds",
                         "When each scheduled job last finished without an error (Unix time).", ["scheduled_job"])
JOB_DURATION = Histogram("auditwatch_job_duration_seconds", "How long each scheduled job run took.", ["scheduled_job"],
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
JOB_FAILURES = Counter("auditwatch_job_failures_total", "Scheduled job runs that raised an error.", ["scheduled_job"])
JOB_MISSED = Counter("auditwatch_job_missed_total", "Scheduled runs skipped (the previous run was still going).",
                     ["scheduled_job"])
LEADER = Gauge("auditwatch_worker_leader", "1 while this worker holds the analytics leader lock, else 0.",
               ["worker"])
HTTP_SECONDS = Histogram("auditwatch_http_request_duration_seconds",
                         "HTTP requests to the API, by route template, method and status code.",
                         ["route", "method", "status"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))


def enable_multiprocess(directory: Path) -> None:
    """Before gunicorn forks: samples go to files under ``directory`` (emptied: stale files would add up).

    prometheus_client picks its value class from the environment when it is first imported, which
    happened before the CLI knew it would serve; reset it, so every sample created from now on, in the
    forked workers, is file-backed. (Every metric the API touches has labels, so its samples are created
    on first use, after this.)
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


def registry() -> CollectorRegistry:
    """What /metrics serves: every worker's samples in multiprocess mode, else this process's registry."""
    if os.environ.get(MULTIPROC_ENV):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The text format body and its content type."""
    return _generate(registry()), CONTENT_TYPE


# -- scheduled jobs (APScheduler events) ---------------------------------------------------------------

class JobWatcher:
    """Times every run of every job through the scheduler's events: no job function is touched.

    Whether this worker leads is read from the leader-only scoring job's result (``ran`` is False on a
    worker that is not the leader), so the scrape never touches the advisory lock itself.
    """

    def __init__(self, worker: str, *, leader_job: str = "score_anomalies") -> None:
        self._started: dict[str, float] = {}
        self._worker = worker
        self._leader_job = leader_job

    def attach(self, scheduler) -> JobWatcher:
        from apscheduler.events import (
            EVENT_JOB_ERROR,
            EVENT_JOB_EXECUTED,
            EVENT_JOB_MAX_INSTANCES,
            EVENT_JOB_MISSED,
            EVENT_JOB_SUBMITTED,
        )

        scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        scheduler.add_listener(self._missed, EVENT_JOB_MAX_INSTANCES)
        scheduler.add_listener(self._misfired, EVENT_JOB_MISSED)  # submitted, then too late to run
        for job in scheduler.get_jobs():
            JOB_FAILURES.labels(job.id)  # every job shows up from the start, at 0
            if job.id == self._leader_job:
                LEADER.labels(self._worker).set(0)
        return self

    def _submitted(self, event) -> None:
        self._started[event.job_id] = time.perf_counter()

    def _finished(self, event) -> None:
        started = self._started.pop(event.job_id, None)
        if started is not None:
            JOB_DURATION.labels(event.job_id).observe(time.perf_counter() - started)
        if event.exception is not None:
            JOB_FAILURES.labels(event.job_id).inc()
        else:
            JOB_LAST_SUCCESS.labels(event.job_id).set(time.time())
            if event.job_id == self._leader_job and hasattr(event.retval, "ran"):
                LEADER.labels(self._worker).set(1 if event.retval.ran else 0)

    def _missed(self, event) -> None:
        JOB_MISSED.labels(event.job_id).inc()

    def _misfired(self, event) -> None:
        self._started.pop(event.job_id, None)

    def drain(self, seconds: float) -> list[str]:
        """Wait up to ``seconds`` for the jobs running now to end (a stopping worker, before it closes their
        pool); returns those still running."""
        deadline = time.monotonic() + seconds
        while self._started and time.monotonic() < deadline:
            time.sleep(0.05)
        return sorted(self._started)
