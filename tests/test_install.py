"""Installing Auditwatch: every runtime import is a declared dependency, the lock file pins all of them, and
(the ``install`` test) a plain ``pip install .`` without extras, in a clean venv, serves and runs the worker.

The clean install resolves from the configured index (PyPI in CI); set AUDITWATCH_WHEELHOUSE to a directory
of wheels to install offline from it instead (``--no-index --find-links``).
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port

PACKAGES = ("ingest", "storage", "auditwatch", "analytics", "alerts", "dashboard", "reports", "forwarder")
# Imported inside a function by a test helper that only tests and benchmarks load (alerts/testing.py).
TEST_ONLY_IMPORTS = {"trustme"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def top_level_imports() -> dict[str, set[str]]:
    """Every absolute import of the product packages that is neither stdlib nor ours: module -> files."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_runtime_import_is_a_declared_dependency():
    declared = {_name(r) for r in _project()["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in top_level_imports().items():
        if module in TEST_ONLY_IMPORTS:
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is not installed at all"
        if not dists & declared:
            missing[module] = (sorted(dists), sorted(files)[:3])
    assert missing == {}, f"imported at run time but not in [project.dependencies]: {missing}"


def test_the_lock_pins_every_declared_dependency_with_hashes():
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {m.group(1).lower().replace("_", "-") for m in re.finditer(r"^([A-Za-z0-9._-]+)==", lock, re.M)}
    project = _project()
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert wanted - pinned == set(), "requirements.lock is stale: run `make lock` and commit it"
    blocks = re.split(r"\n(?=[A-Za-z0-9._-]+==)", lock)[1:]  # one block per pinned package
    assert len(blocks) == len(pinned) and all("--hash=sha256:" in block for block in blocks)
    assert "file://" not in lock and "--find-links" not in lock  # nothing from this machine's disk


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            answer = requests.get(url, timeout=2)
            if answer.status_code == 200:
                return answer
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer 200: {log.read_text()[-4000:]}")


@pytest.mark.install
@pytest.mark.timeout(1200)
def test_a_clean_install_without_extras_serves_and_runs_the_worker(db_url: str, tmp_path: Path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    wheelhouse = os.environ.get("AUDITWATCH_WHEELHOUSE")
    offline = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    started = time.monotonic()
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                                "--no-compile", *offline, str(source)], capture_output=True, text=True, timeout=1100)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    print(f"clean install took {time.monotonic() - started:.0f} s")

    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "list", "--format=freeze"],
                            capture_output=True, text=True, check=True, timeout=120).stdout.lower().replace("_", "-")
    for dev_only in ("pytest==", "trustme==", "ruff=="):
        assert dev_only not in listed, f"{dev_only} came with a plain install: the dev extra leaked"
    assert "cryptography==" in listed and "prometheus-client==" in listed

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITWATCH_", "PYTHON", "PROMETHEUS_"))}
    env.update(AUDITWATCH_DATABASE_URL=db_url, AUDITWATCH_DATA_DIR=str(tmp_path / "data"), AUDITWATCH_WORKERS="1",
               AUDITWATCH_PORT=str(free_port()), AUDITWATCH_WORKER_OPS_PORT=str(free_port()),
               AUDITWATCH_ALERTS_ENABLED="false", AUDITWATCH_ANALYTICS_ENABLED="false")
    run_dir = tmp_path / "run"  # not the checkout: only the installed package can be imported
    run_dir.mkdir()
    procs = []
    try:
        for command in ("serve", "worker"):
            log = tmp_path / f"{command}.log"
            procs.append((subprocess.Popen([str(venv / "bin" / "auditwatch"), command], env=env, cwd=run_dir,
                                           stdout=log.open("wb"), stderr=subprocess.STDOUT), log))
        (server, server_log), (worker, worker_log) = procs
        api = f"http://127.0.0.1:{env['AUDITWATCH_PORT']}"
        ops = f"http://127.0.0.1:{env['AUDITWATCH_WORKER_OPS_PORT']}"
        _wait(f"{api}/healthz", server, server_log)
        assert _wait(f"{api}/readyz", server, server_log).json()["checks"]["database"]["ok"] is True
        assert "auditwatch_http_request_duration_seconds" in _wait(f"{api}/metrics", server, server_log).text
        _wait(f"{ops}/healthz", worker, worker_log)
        assert _wait(f"{ops}/readyz", worker, worker_log).json()["status"] == "ok"
        imported_from = subprocess.run([str(python), "-c", "import auditwatch; print(auditwatch.__file__)"],
                                       cwd=run_dir, env=env, capture_output=True, text=True, timeout=60).stdout
        assert str(venv) in imported_from
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
