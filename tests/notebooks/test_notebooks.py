"""Every notebook runs top to bottom against a seeded TimescaleDB, and its pair stays in sync."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from analytics.detectors import ExportVolume
from ingest.seed import demo_labels
from tests.conftest import ROOT

from .conftest import NOTEBOOKS, SEED_ARGS, SEED_END, SeededStore, notebook_id

PLOTLY = "application/vnd.plotly.v1+json"


def _outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _tagged_text(nb, tag: str) -> str:
    """What the cell tagged ``tag`` printed or displayed, as text."""
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}"
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cells[0].outputs)


def _check_explore(nb, store: SeededStore, env: dict[str, str]) -> None:
    # The notebook's failed-logins-by-source table puts every spraying address at the top.
    shown = _tagged_text(nb, "failed-logins-by-source")
    sprayers = {i.source_ip for i in store.seeded.incidents if i.scenario == "password_spraying"}
    assert len(sprayers) == 3
    for address in sprayers:
        assert address in shown
    # The human exporters with the most rows are the three injected night exports.
    exporters = _tagged_text(nb, "top-exporters")
    leaders = exporters.split("╡", 1)[1].splitlines()[1:4]
    thieves = {i.user_id for i in store.seeded.incidents if i.scenario == "night_data_export"}
    assert len(thieves) == 3 and {line.split("┆")[0].strip("│ ") for line in leaders} == thieves


def _check_tune(nb, store: SeededStore, env: dict[str, str]) -> None:
    # Every demo scenario of the backtest day is reported, and the bursts and exports are found.
    shown = _tagged_text(nb, "recall-by-scenario")
    rows = {line.split("┆")[0].strip("│ "): line for line in shown.splitlines() if "┆" in line}
    for scenario in ("failed_login_burst", "password_spraying", "night_data_export", "unusual_permission_change"):
        assert scenario in rows
    for found in ("failed_login_burst", "night_data_export"):
        assert rows[found].rstrip("│ ").endswith("1.0")
    exported = json.loads((Path(env["AUDITWATCH_NOTEBOOK_EXPORT_DIR"]) / "export_volume.json").read_text())
    assert exported["detector"] == "export_volume"
    assert exported["params"]["min_scale"] in (0.1, 0.25, 0.5, 1.0, 2.0) and 0 < exported["threshold"] < 1
    assert ExportVolume(**exported["params"]).get_params()["min_scale"] == exported["params"]["min_scale"]


def _check_investigate(nb, store: SeededStore, env: dict[str, str]) -> None:
    # By default the notebook opens the newest alert on an entity (raised by the alert rules the
    # fixture evaluated through the day), and the anomaly behind it: one of the injected attacks.
    header = _tagged_text(nb, "anomaly")
    assert header.startswith("alert "), header
    labels = demo_labels(start=SEED_END - timedelta(days=1), end=SEED_END, **SEED_ARGS)
    assert any(entity in header for label in labels for entity in label.entities), header
    assert "true" in _tagged_text(nb, "baseline-window")  # the window stands above its baseline


def _check_real_logs(nb, store: SeededStore, env: dict[str, str]) -> None:
    # The heaviest brute-force source of OpenSSH_2k tops the table; the one accepted login had no failures.
    attackers = _tagged_text(nb, "attackers")
    first = attackers.split("╡", 1)[1].splitlines()[1]
    assert "183.62.140.253" in first and "286" in first
    assert "fztu from 119.137.62.142 at 09:32:20: 0 earlier failures" in _tagged_text(nb, "accepted")
    flagged = _tagged_text(nb, "flagged")
    assert "183.62.140.253" in flagged and "119.137.62.142" not in flagged


CHECKS: dict[str, Callable] = {
    "04_real_logs": _check_real_logs,
    "01_explore": _check_explore,
    "02_tune_a_detector": _check_tune,
    "03_investigate": _check_investigate,
}


@pytest.mark.parametrize("source", NOTEBOOKS, ids=notebook_id)
def test_notebook_runs_top_to_bottom(source: Path, kernel_manager, kernel_env, seeded_store):
    nb = jupytext.read(source)
    client = NotebookClient(nb, km=kernel_manager, timeout=120, allow_errors=False,
                            resources={"metadata": {"path": str(source.parent)}})
    try:
        client.execute(env={**os.environ, **kernel_env})  # raises CellExecutionError on any failing cell
    finally:
        keep = os.environ.get("AUDITWATCH_NOTEBOOK_OUTPUT_DIR")  # executed copies, e.g. as CI artifacts
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(keep) / f"{source.stem}.ipynb")
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(PLOTLY in o.get("data", {}) for o in outputs), "each notebook shows at least one chart"
    CHECKS[source.stem](nb, seeded_store, kernel_env)


@pytest.mark.parametrize("source", NOTEBOOKS, ids=notebook_id)
def test_pair_is_in_sync_and_has_no_outputs(source: Path):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: run `jupytext --sync {source.relative_to(ROOT)}`"
    nb = nbformat.read(paired, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{paired.name} was saved with outputs"
    expected = jupytext.read(source)
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in expected.cells], (
        f"{paired.name} differs from {source.name}: run `jupytext --sync {source.relative_to(ROOT)}`")


def test_every_notebook_has_a_source_and_checks():
    stray = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")} - {p.stem for p in NOTEBOOKS}
    assert not stray, f"notebooks without a .py source of truth: {sorted(stray)}"
    assert NOTEBOOKS and {p.stem for p in NOTEBOOKS} == set(CHECKS)
