"""Notebook fixtures: one seeded database for every notebook, and a kernel that is this interpreter.

The kernel is described by a kernelspec written to a temporary directory, pointing at
``sys.executable``: nbclient then runs the notebooks in the same virtualenv as the tests on a
fresh clone, whatever kernels the machine has (or lacks) installed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from alerts.engine import AlertConfig, evaluate
from alerts.routing import load_routing
from analytics import jobs
from ingest.seed import SeedResult, seed_demo
from storage.timescale import db
from tests.conftest import ROOT, fresh_database, shared_data

KERNEL = "auditwatch-tests"
# Three demo days: history to fit on, and each day's four injected incidents to find.
SEED_END = datetime(2024, 5, 4, tzinfo=UTC)
SEED_START = SEED_END - timedelta(days=3)
SEED_ARGS = {"seed": 7, "users": 80, "service_accounts": 2}


@dataclass(frozen=True)
class SeededStore:
    url: str
    seeded: SeedResult
    anomalies: int


@pytest.fixture(scope="session")
def seeded_store(server_url: str, template_db: str, tmp_path_factory) -> Iterator[SeededStore]:
    """Three days of labelled demo traffic, loaded through the ingest pipeline, and the last day scored.

    The scoring is the worker's: the refit job learns from the first two days, the score job then
    stores the anomalies of the third, as a worker that had been running would have.
    """
    with fresh_database(server_url, template_db) as url:
        pool = db.open_pool(url, min_size=1, max_size=4, name="notebook-seed")
        try:
            result = seed_demo(pool, start=SEED_START, end=SEED_END, now=SEED_END, **SEED_ARGS)
            assert result.accepted > 10_000 and result.rejected == 0
            jobs.refit_job(pool, now=SEED_END - timedelta(days=1))
            scored = jobs.score_job(pool, now=SEED_END, config=jobs.JobConfig(first_run=timedelta(days=1)))
            # The alert rules as the worker evaluates them, every 10 minutes through the scored day.
            config = AlertConfig(routing=load_routing(None))
            rules = config.load_rules()
            at = SEED_END - timedelta(days=1) + timedelta(minutes=10)
            while at <= SEED_END:
                evaluate(pool, config, now=at, rules=rules)
                at += timedelta(minutes=10)
        finally:
            pool.close()
        assert scored.inserted > 0
        yield SeededStore(url, result, scored.inserted)


@pytest.fixture(scope="session")
def kernel_env(seeded_store: SeededStore, tmp_path_factory) -> dict[str, str]:
    """What the notebooks read: the database, the demo's parameters, and this checkout on the path."""
    return {
        "AUDITWATCH_DATABASE_URL": seeded_store.url,
        "AUDITWATCH_DATA_DIR": str(tmp_path_factory.mktemp("notebook-data")),  # (an empty archive root)
        "AUDITWATCH_NOTEBOOK_EXPORT_DIR": str(tmp_path_factory.mktemp("tuned")),
        "AUDITWATCH_LOGHUB_DIR": str(shared_data() / "loghub"),
        "AUDITWATCH_DEMO_SEED": str(SEED_ARGS["seed"]),
        "AUDITWATCH_DEMO_USERS": str(SEED_ARGS["users"]),
        "AUDITWATCH_DEMO_SERVICE_ACCOUNTS": str(SEED_ARGS["service_accounts"]),
        "PYTHONPATH": str(ROOT),
        "PLOTLY_RENDERER": "plotly_mimetype",  # figures as JSON outputs, without plotly.js inlined
    }


@pytest.fixture(scope="session")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A kernelspec directory holding one kernel: this Python."""
    root = tmp_path_factory.mktemp("kernels")
    spec_dir = root / KERNEL
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Auditwatch tests", "language": "python",
    }))
    return KernelSpecManager(kernel_dirs=[str(root)], ensure_native_kernel=False)


@pytest.fixture
def kernel_manager(kernel_specs: KernelSpecManager) -> KernelManager:
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=kernel_specs)


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def notebook_id(path: Path) -> str:
    return path.stem
