"""Every notebook runs top to bottom against a seeded TimescaleDB, and its pair stays in sync."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT

from .conftest import NOTEBOOKS, SeededStore, notebook_id

PLOTLY = "application/vnd.plotly.v1+json"


def _outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _tagged_text(nb, tag: str) -> str:
    """What the cell tagged ``tag`` printed or displayed, as text."""
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}"
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cells[0].outputs)


def _check_explore(nb, store: SeededStore) -> None:
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


CHECKS: dict[str, Callable] = {
    "01_explore": _check_explore,
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
    CHECKS[source.stem](nb, seeded_store)


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
