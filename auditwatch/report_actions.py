"""The dashboard's report actions: what the Reports page may do with reports/, handed to it by the host.

The dashboard never imports reports/ (only the composition root does); ``app.py`` hands it an instance of
``ReportActions``. A report is generated on a background thread of the server process, one at a time per
process, so a long report never holds a request thread: the page polls ``status``. A run finished by
another server process is found in the store (``generated_reports``), so polling any process works.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from reports import engine, registry
from reports.errors import ReportError
from reports.source import Source
from storage.cold.store import ColdStore
from storage.dataapi import AuditData
from storage.errors import StorageError
from storage.timescale import reports as stored_reports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Status:
    """Where one requested run is: ``queued``, ``running``, ``done``, ``failed`` or ``unknown``."""

    state: str
    message: str = ""


class ReportActions:
    """Generate reports for the dashboard in the background and say how each run is going."""

    def __init__(self, pool: ConnectionPool, *, out_root: str | Path, trusted_keys: frozenset[bytes],
                 archive: ColdStore | None = None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.pool = pool
        self.out_root = Path(out_root)
        self.trusted_keys = trusted_keys
        self.archive = archive
        self.now = now
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-report")
        self._lock = threading.Lock()
        self._jobs: dict[uuid.UUID, Status] = {}

    def catalogue(self) -> list[dict[str, Any]]:
        """The reports, with what each evidences and the scope kinds it takes."""
        return [{"name": d.name, "title": d.title, "version": d.version, "controls": list(d.controls),
                 "purpose": d.purpose, "scopes": list(d.scopes)} for d in registry.all_reports()]

    def start(self, name: str, start: datetime, end: datetime, scope: str | None, *, generated_by: str) -> uuid.UUID:
        """Check the parameters now (a ``ReportError`` says what to fix), then generate in the background."""
        params = registry.get(name).params(start, end, scope)
        report_id = uuid.uuid4()
        with self._lock:
            if len(self._jobs) > 1000:  # forget old finished runs; the store keeps them
                for key in [k for k, s in self._jobs.items() if s.state in ("done", "failed")][:500]:
                    del self._jobs[key]
            self._jobs[report_id] = Status("queued", "waiting for the report before it")
        self._runner.submit(self._run, report_id, params, generated_by)
        return report_id

    def _set(self, report_id: uuid.UUID, status: Status) -> None:
        with self._lock:
            self._jobs[report_id] = status

    def _run(self, report_id: uuid.UUID, params, generated_by: str) -> None:
        self._set(report_id, Status("running", "reading the period and verifying its integrity"))
        try:
            out = self.out_root / "dashboard" / str(report_id)
            generated = engine.generate(Source(AuditData(self.pool, read_only=False, cold=self.archive)), params,
                                        out, generated_by=generated_by, now=self.now(),
                                        trusted_keys=self.trusted_keys, archive=self.archive, report_id=report_id)
            engine.store(self.pool, generated, source="auditwatch-dashboard")
        except (ReportError, StorageError, OSError, RuntimeError) as exc:  # what the report can say to fix
            log.warning("report %s (%s) failed: %s", report_id, params.name, exc)
            self._set(report_id, Status("failed", str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - a background job: anything else is logged and shown, not lost
            log.exception("report %s (%s) failed", report_id, params.name)
            self._set(report_id, Status("failed", f"{type(exc).__name__}: {exc} (see the server log)"))
            return
        self._set(report_id, Status("done", generated.proof.verdict))

    def status(self, report_id: uuid.UUID) -> Status:
        """This process's view of the run, else the store's (another server process may have run it)."""
        with self._lock:
            known = self._jobs.get(report_id)
        if known is not None:
            return known
        if stored_reports.get(self.pool, report_id) is not None:
            return Status("done")
        return Status("unknown", "not started here; still running on another server process, or it failed there")
