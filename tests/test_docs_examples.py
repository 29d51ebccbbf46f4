"""The docs' runnable examples, run against a live stack so they stay true.

A fenced ``sh`` or ``python`` block right after a ``<!-- docs-test -->`` line in README.md or docs/ is runnable: it
runs as the reader would run it, with ``KEY`` (an admin key), ``AUDITWATCH_URL`` (a real ``auditwatch serve`` on a
loopback port), ``AUDITWATCH_DATABASE_URL`` and ``auditwatch`` on the PATH (this checkout), in an empty working
directory. The store holds what ``make up``'s demo guarantees the examples: user0001, and one of its logins.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.auth import Role
from storage.events import EventRecord, Outcome
from storage.timescale import catalog, db
from storage.timescale.writer import EventWriter
from tests.conftest import fresh_database, start_server

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- docs-test -->"
BLOCK = re.compile(r"^" + re.escape(MARKER) + r"[ \t]*\n```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def runnable_blocks() -> list[tuple[str, str, str]]:
    """(where, language, code) for every marked block; a marker not followed by a fenced block is an error."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        blocks = list(BLOCK.finditer(text))
        markers = len(re.findall(r"^" + re.escape(MARKER) + r"[ \t]*$", text, flags=re.MULTILINE))
        assert len(blocks) == markers, f"{path}: a {MARKER} line must sit right above a fenced block"
        for match in blocks:
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1), match.group(2)))
    return found


BLOCKS = runnable_blocks()


def test_the_docs_have_runnable_examples_in_both_languages():
    assert len(BLOCKS) >= 5
    assert {lang for _, lang, _ in BLOCKS} == {"sh", "python"}


@pytest.fixture(scope="module")
def stack(server_url, template_db, tmp_path_factory):
    """A live `auditwatch serve` on its own database, with an admin key and the demo's user0001."""
    tmp = tmp_path_factory.mktemp("docs-stack")
    with fresh_database(server_url, template_db) as url:
        pool = db.open_pool(url, min_size=1, max_size=2, name="docs-tests")
        try:
            _, key = catalog.create_key(pool, "docs-admin", Role.ADMIN, "tests")
            catalog.register_users(pool, [{"user_id": "user0001"}], "tests")
            now = datetime.now(UTC)
            EventWriter(pool).write([EventRecord(event_id=uuid.uuid4(), timestamp=now, received_at=now,
                                                 event_type="user_login", user_id="user0001",
                                                 outcome=Outcome.SUCCESS, source_ip="81.2.69.142")])
        finally:
            pool.close()
        server = start_server(url, tmp)
        try:
            bin_dir = tmp / "bin"  # `auditwatch` as the reader has it, from this checkout
            bin_dir.mkdir()
            (bin_dir / "auditwatch").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m auditwatch.cli "$@"\n')
            (bin_dir / "auditwatch").chmod(0o755)
            yield {**os.environ, "KEY": key, "AUDITWATCH_URL": server.url, "AUDITWATCH_DATABASE_URL": url,
                   "AUDITWATCH_DATA_DIR": str(tmp / "data"), "PYTHONPATH": str(ROOT),
                   "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])}
        finally:
            server.stop()


@pytest.mark.parametrize(("where", "language", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_example_runs(stack, tmp_path, where, language, code):
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
    assert language in {"sh", "python"}, f"{where}: only sh and python blocks can be marked runnable"
    done = subprocess.run(command, cwd=tmp_path, env=stack, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{where} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
