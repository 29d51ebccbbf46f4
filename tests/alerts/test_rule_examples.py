"""Detection-as-code: every rule's examples fire (or do not) through the real evaluator and database."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from alerts.engine import observe
from alerts.examples import example_anomalies, example_events
from alerts.rule_files import load_rules
from alerts.rules import PACKAGED_RULES
from storage.timescale.writer import EventWriter
from tests.alerts.conftest import T0, insert_anomaly
from tests.alerts.health_state import chain_head, health_state

RULES = load_rules(PACKAGED_RULES)
CASES = [(rule, i) for rule in RULES.values() for i in range(len(rule.examples))]


def test_the_default_pack_covers_the_seed_security_cases():
    kinds = {r.kind for r in RULES.values()}
    assert kinds == {"threshold", "anomaly", "absence", "health"}
    assert {"failed_login_burst", "password_spraying", "bulk_data_export", "permission_change_spree",
            "silent_source"} <= set(RULES)
    for rule in RULES.values():
        assert any(e.fires for e in rule.examples) and not all(e.fires for e in rule.examples), rule.id


def example_failures(pool, cases, start, db_url=None) -> list[str]:
    """Each example evaluated at its own instant, ten days apart, so none sees another's data."""
    failures = []
    writer = EventWriter(pool)
    for n, (rule, i) in enumerate(cases):
        example = rule.examples[i]
        now = start + timedelta(days=10 * n)
        head = chain_head(pool)
        writer.write(example_events(example, now))
        for row in example_anomalies(example, now):
            insert_anomaly(pool, **row)
        with health_state(pool, db_url, example, now, head_before=head) as at:
            observed = observe(pool, rule, now=at)
        if bool(observed) != example.fires:
            failures.append(f"{rule.id} / {example.name}: expected {'fire' if example.fires else 'quiet'}, "
                            f"observed {[dict(o.group) for o in observed]}")
        elif example.groups and sorted(map(sorted, (o.group.items() for o in observed))) != sorted(
                map(sorted, (g.items() for g in example.groups))):
            failures.append(f"{rule.id} / {example.name}: groups {[dict(o.group) for o in observed]} "
                            f"!= {list(example.groups)}")
    return failures


def test_every_example_of_every_rule(pool, db_url):
    assert len(CASES) >= 20
    assert example_failures(pool, CASES, T0, db_url) == []


def test_a_rule_that_drifts_from_its_examples_is_caught(pool):
    """The check has teeth: tighten a threshold and its 'fires' example fails; loosen it and a quiet one does."""
    rule = RULES["failed_login_burst"]
    stricter = replace(rule, condition=replace(rule.condition, at_least=11))
    looser = replace(rule, condition=replace(rule.condition, at_least=5))
    failures = example_failures(pool, [(stricter, i) for i in range(len(rule.examples))] +
                                [(looser, i) for i in range(len(rule.examples))], T0)
    assert any(f.startswith("failed_login_burst / ten failures within a minute: expected fire") for f in failures)
    assert any("nine failures" in f and "expected quiet" in f for f in failures)


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_titles_render_for_their_groups(rule_id):
    rule = RULES[rule_id]
    group = {name: f"<{name}>" for name in rule.group_by}
    title = rule.render_title(group)
    assert "{" not in title and all(v in title for v in group.values())
