"""The documentation builds with `mkdocs build --strict` (what CI runs through `make test`): a broken link, a
missing anchor or a page left out of the nav fails. Also: the README's links resolve, the generated API reference
covers every route of the OpenAPI document, and every shipped rule's runbook anchor exists on the built site."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from alerts.rule_files import load_rules
from alerts.rules import PACKAGED_RULES
from auditwatch.api.openapi.document import DOCUMENT

ROOT = Path(__file__).resolve().parents[1]


def build(project: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build(ROOT, out)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("WARNING")]
    assert warnings == []
    return out


def test_the_site_builds_strictly_with_every_page(site):
    for page in ("index.html", "getting-started/index.html", "rules/index.html", "components/interop/index.html",
                 "operations/backup/index.html", "runbooks/platform-health/index.html", "reference/api/index.html",
                 "scaling/index.html"):
        assert (site / page).is_file(), page


def test_the_api_reference_covers_every_route_of_the_openapi_document(site):
    html = (site / "reference/api/index.html").read_text()
    for path, item in DOCUMENT["paths"].items():
        for method in item:
            if method in {"get", "post", "put", "patch", "delete"}:
                assert f"{method.upper()} {path}" in html, f"{method.upper()} {path} is missing from the reference"


def test_every_shipped_rules_runbook_anchor_exists_on_the_site(site):
    for rule in load_rules(PACKAGED_RULES).values():
        parts = urlsplit(rule.runbook_url)
        page = parts.path.split("/blob/main/docs/", 1)[1].removesuffix(".md")
        html = (site / page / "index.html").read_text()
        assert f'id="{parts.fragment}"' in html, rule.runbook_url


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    concepts = project / "docs" / "concepts.md"
    concepts.write_text(concepts.read_text() + "\nSee [the gone page](gone.md) and [a lost part](rules.md#nowhere).\n")
    done = build(project, tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "'gone.md', but the target is not found" in output
    assert "'rules.md#nowhere', but the doc 'rules.md' does not contain an anchor" in output


def test_the_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 160
    assert "make up      # " in text and "make test    # " in text  # the two commands, as the Makefile names them
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local and all((ROOT / link).is_file() for link in local), [x for x in local if not (ROOT / x).is_file()]
