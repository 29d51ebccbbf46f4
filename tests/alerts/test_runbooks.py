"""Every shipped rule links to a runbook section that exists in docs/runbooks/ and says what on-call needs."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from alerts.rule_files import default_directories, load_rules

ROOT = Path(__file__).resolve().parents[2]
REPO_BLOB = "https://github.com/auditwatch/auditwatch/blob/main/"
SHIPPED = load_rules(*default_directories(None))


def anchors(markdown: str) -> set[str]:
    """Heading anchors as GitHub and MkDocs make them: lower case, punctuation dropped, spaces to dashes."""
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def section(markdown: str, anchor: str) -> str:
    """The text from the heading with this anchor to the next heading of the same level."""
    match = re.search(rf"^(#+)\s+{re.escape(anchor)}\s*$", markdown, flags=re.MULTILINE)
    assert match, anchor
    level = len(match.group(1))
    rest = markdown[match.end():]
    end = re.search(rf"^#{{1,{level}}}\s", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def test_the_rule_pack_is_loaded():
    assert len(SHIPPED) >= 8, sorted(SHIPPED)


@pytest.mark.parametrize("rule_id", sorted(SHIPPED))
def test_every_shipped_rule_links_to_its_runbook_section(rule_id):
    url = SHIPPED[rule_id].runbook_url
    assert url, f"{rule_id} has no runbook_url"
    assert url.startswith(REPO_BLOB + "docs/runbooks/"), url
    parts = urlsplit(url)
    path = ROOT / parts.path.split("/blob/main/", 1)[1]
    assert path.is_file(), f"{rule_id}: {path} does not exist"
    text = path.read_text()
    assert parts.fragment in anchors(text), f"{rule_id}: no heading makes the anchor #{parts.fragment} in {path}"
    body = section(text, parts.fragment)
    for part in ("What it means", "How to triage", "How to silence safely"):
        assert f"**{part}.**" in body, f"{rule_id}'s runbook section lacks “{part}”"
    assert rule_id in body, "the silence advice names the rule it matches"


def test_anchors_follow_the_slug_rules():
    assert anchors("## failed_login_burst\n### What it means\n## Two Words, here\n") == {
        "failed_login_burst", "what-it-means", "two-words-here"}
