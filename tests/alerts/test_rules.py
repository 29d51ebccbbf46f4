"""Rule files: loading, and bad files rejected with file, line and field."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.errors import RuleError
from alerts.rule_files import load_rules
from alerts.rule_yaml import parse_duration
from alerts.rules import PACKAGED_RULES, parse_rule

GOOD = textwrap.dedent("""\
    id: many_exports
    title: "Exports by {user_id}"
    severity: warning
    threshold:
      event_type: data_export
      window: 10m
      group_by: [user_id]
      at_least: 3
    examples:
      - {name: three, fires: true, events: [{at: -1m, user_id: a, event_type: data_export, repeat: 3}]}
      - {name: two, fires: false, events: [{at: -1m, user_id: a, event_type: data_export, repeat: 2}]}
    """)


def problems(text: str) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(RuleError) as caught:
        parse_rule(text, "rules/x.yml")
    message = str(caught.value)
    assert message.startswith("invalid alert rule(s):") and "rules/x.yml" in message
    return [(p.line, p.field, p.message) for p in caught.value.problems]


def test_a_good_rule_parses():
    rule = parse_rule(GOOD, "many_exports.yml")
    assert rule.kind == "threshold" and rule.condition.window == timedelta(minutes=10)
    assert rule.render_title({"user_id": "bob"}) == "Exports by bob"


@pytest.mark.parametrize(("change", "line", "field", "words"), [
    (("window: 10m", "window: ten minutes"), 6, "threshold.window", "not a duration"),
    (("at_least: 3", "at_least: many"), 8, "threshold.at_least", "whole number"),
    (("severity: warning", "severity: sev1"), 3, "severity", "info, warning, critical"),
    (("group_by: [user_id]", "group_by: [user_agent]"), 7, "threshold.group_by[0]", "not one of"),
    (("  window: 10m\n", "  window: 10m\n  windw: 5m\n"), 7, "threshold.windw", "unknown field"),
    (('title: "Exports by {user_id}"', 'title: "Exports by {source_ip}"'), 2, "title", "not a group-by field"),
    (("id: many_exports", "id: Many-Exports"), 1, "id", "lower-case"),
    (("severity: warning\n", "severity: warning\nlabels: {slack_token: xoxb-1-2}\n"), 4, "labels.slack_token",
     "credentials never go in rule files"),
    (("  - {name: two, fires: false", "  - {name: two, fires: true"), 9, "examples", "must not fire"),
    (("  window: 10m\n", ""), 4, "threshold.window", "is required"),
])
def test_bad_rules_name_line_and_field(change, line, field, words):
    old, new = change
    assert old in GOOD
    found = problems(GOOD.replace(old, new))
    assert any(p_line == line and p_field == field and words in message for p_line, p_field, message in found), found


def test_not_yaml_and_not_a_mapping():
    assert problems("id: [unclosed\n")[0][0] in (1, 2)
    assert "not valid YAML" in problems("id: x\n  - : :\n")[0][2]
    assert "one mapping" in problems("- a\n- b\n")[0][2]


def test_duplicate_keys_and_two_conditions():
    text = GOOD.replace("severity: warning\n", "severity: warning\nseverity: critical\nanomaly: {min_score: 0.5}\n")
    found = problems(text)
    assert (4, "severity", "appears twice; keep one") in found
    assert any(f == "anomaly" and "exactly one" in m for _, f, m in found)


def test_every_problem_of_a_file_is_reported_at_once():
    found = problems(GOOD.replace("window: 10m", "window: 1y").replace("severity: warning", "severity: loud"))
    assert {f for _, f, _ in found} >= {"threshold.window", "severity"}


def test_a_directory_load_names_each_bad_file(tmp_path: Path):
    (tmp_path / "many_exports.yml").write_text(GOOD)
    (tmp_path / "broken.yml").write_text(GOOD.replace("at_least: 3", "at_least: -1"))
    (tmp_path / "renamed.yml").write_text(GOOD)
    with pytest.raises(RuleError) as caught:
        load_rules(PACKAGED_RULES, tmp_path)
    text = str(caught.value)
    assert f"{tmp_path / 'broken.yml'}:8: `threshold.at_least`: must be at least 1" in text
    assert f"{tmp_path / 'renamed.yml'}:1: `id`: the id 'many_exports' must match the file name" in text


def test_user_rules_add_to_and_override_the_pack(tmp_path: Path):
    (tmp_path / "many_exports.yml").write_text(GOOD)
    override = (PACKAGED_RULES / "failed_login_burst.yml").read_text().replace("at_least: 10", "at_least: 20")
    (tmp_path / "failed_login_burst.yml").write_text(override)
    rules = load_rules(PACKAGED_RULES, tmp_path)
    assert "many_exports" in rules and rules["failed_login_burst"].condition.at_least == 20


def test_an_oversized_file_is_refused():
    assert "over 256 KB" in problems(GOOD + "#" * 300_000)[0][2]


@pytest.mark.parametrize("text", ["1w", "10", "-5m", "5 m", "", None, 5])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="e.g. 30s, 10m"):
        parse_duration(text)


def test_edits_are_picked_up_and_a_bad_edit_keeps_the_last_valid_version(tmp_path: Path, caplog):
    import os

    from alerts.rule_files import RuleSource
    source = RuleSource(PACKAGED_RULES, tmp_path)
    assert "many_exports" not in source.current()
    path = tmp_path / "many_exports.yml"
    path.write_text(GOOD)
    assert source.current()["many_exports"].condition.at_least == 3 and source.problems == []
    path.write_text(GOOD.replace("at_least: 3", "at_least: 4"))
    os.utime(path, ns=(1, 2_000_000_000))  # a new mtime even on coarse clocks
    assert source.current()["many_exports"].condition.at_least == 4
    path.write_text(GOOD.replace("at_least: 3", "at_least: lots"))
    os.utime(path, ns=(1, 3_000_000_000))
    with caplog.at_level("ERROR", logger="alerts.rules"):
        rules = source.current()
        again = source.current()
    assert rules["many_exports"].condition.at_least == 4 and again["many_exports"].condition.at_least == 4
    assert [p.field for p in source.problems] == ["threshold.at_least", None]
    assert sum("threshold.at_least" in r.getMessage() for r in caplog.records) == 1  # logged once, not per run
    (tmp_path / "broken_new.yml").write_text("id: broken_new\n")
    assert "broken_new" not in source.current() and len(source.current()) == len(RULES_AT_START) + 1
    path.unlink()
    assert "many_exports" not in source.current()


RULES_AT_START = load_rules(PACKAGED_RULES)


def test_hostile_yaml_is_refused_quickly():
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(12))
    found = problems(laughs)
    assert found[0][0] == 2 and "anchors and aliases" in found[0][2]
    assert "nested deeper than 32 levels" in problems("x: " + "[" * 5000 + "]" * 5000)[0][2]
    assert "not valid YAML" in problems("id: !!python/object/apply:os.system ['true']\n")[0][2]
