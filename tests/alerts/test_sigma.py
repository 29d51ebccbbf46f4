"""Sigma interop: our collection imports and round-trips, the imported rules fire as Sigma means them
(through the real evaluator and database), our threshold rules export, and unmappable rules are refused."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import yaml

from alerts.rule_files import load_rules
from alerts.rules import PACKAGED_RULES, Threshold
from alerts.sigma.exporter import export_rules, to_sigma
from alerts.sigma.importer import import_paths, import_text
from alerts.sigma.pipeline import Catalogue, CatalogueEntry
from storage.timescale import catalog
from tests.alerts.conftest import T0
from tests.alerts.test_rule_examples import example_failures

COLLECTION = PACKAGED_RULES.parent / "sigma" / "rules"
COMPARED = ("id", "title", "severity", "condition", "labels", "runbook_url", "description", "for_", "cooldown",
            "interval", "enabled")


@pytest.fixture
def cat(pool) -> Catalogue:
    return Catalogue(CatalogueEntry(t.event_type, t.class_uid, t.activity_id, t.type_uid)
                     for t in catalog.event_types(pool))


def same(a, b) -> dict:
    """The fields of two rules that differ (none for a faithful round trip)."""
    return {f: (getattr(a, f), getattr(b, f)) for f in COMPARED if getattr(a, f) != getattr(b, f)}


def test_the_collection_imports_whole_and_uses_every_mapping(cat):
    result = import_paths([str(COLLECTION)], cat)
    assert [str(r) for r in result.refused] == []
    rules = {rule.id: rule for rule, _ in result.rules}
    assert len(rules) >= 20 and len(rules) == len(list(COLLECTION.glob("*.yml")))
    shapes = {("single" if r.condition.at_least == 1 else
               "temporal" if r.condition.distinct == "event_type" else
               "value_count" if r.condition.distinct else "event_count") for r in rules.values()}
    assert shapes == {"single", "event_count", "value_count", "temporal"}
    # OCSF selectors resolve through the catalogue; OCSF and Windows field names map to ours.
    burst = rules["failed_logon_burst_ocsf"].condition
    assert burst == Threshold(window=timedelta(minutes=5), at_least=20,
                              event_types=("auth_failure", "ssh_invalid_user", "user_login"), outcome="failure",
                              group_by=("user_id",))
    spray = rules["logon_spray_ocsf"].condition
    assert (spray.group_by, spray.distinct, spray.at_least) == (("source_ip",), "user_id", 20)
    assert rules["auth_failure_burst"].condition.group_by == ("source_ip",)  # IpAddress
    assert rules["data_query_flood"].condition.event_types == ("data_query",)  # activity_name + class_uid
    assert rules["config_change_failed"].condition.outcome == "failure"  # "selection and refused"
    assert rules["ssh_break_in_attempt"].condition.event_types == ("ssh_break_in_attempt",)
    temporal = rules["login_then_bulk_export"].condition
    assert (temporal.event_types, temporal.distinct, temporal.at_least, temporal.outcome) == (
        ("data_export", "user_login"), "event_type", 2, "success")
    assert rules["api_key_created"].labels == {"mitre": "T1098.001"} and rules["audit_event_erased"].severity == "critical"


def test_every_rule_of_the_collection_round_trips(cat):
    imported = import_paths([str(COLLECTION)], cat).rules
    for rule, _ in imported:
        exported = to_sigma(rule)
        again = import_text(exported, cat)
        assert again.refused == [], exported
        [(back, _)] = again.rules
        assert same(rule, back) == {}, rule.id
        assert to_sigma(back) == exported  # a fixed point: exporting the re-import changes nothing


def test_our_threshold_rules_export_and_come_back_the_same(cat):
    packaged = load_rules(PACKAGED_RULES)
    result = export_rules(packaged.values())
    thresholds = {r.id for r in packaged.values() if r.kind == "threshold"}
    assert set(result.documents) == thresholds and len(thresholds) >= 5
    for rule_id, text in result.documents.items():
        documents = list(yaml.safe_load_all(text))
        assert documents[-1]["name"] == rule_id and documents[-1]["logsource" if len(documents) == 1
                                                                   else "correlation"]
        [(back, _)] = import_text(text, cat).rules
        assert same(packaged[rule_id], back) == {}, rule_id
    refused = {r.rule: r for r in result.refused}
    assert set(refused) == {r.id for r in packaged.values() if r.kind != "threshold"}
    assert refused["silent_source"].field == "absence" and "no Sigma equivalent" in refused["silent_source"].reason


def test_imported_rules_fire_on_what_they_describe_and_not_on_one_fewer(pool, cat):
    """Each imported rule's derived examples, through the real evaluator and database."""
    rules = [rule for rule, _ in import_paths([str(COLLECTION)], cat).rules]
    cases = [(rule, i) for rule in rules for i in range(len(rule.examples))]
    assert len(cases) == 2 * len(rules)
    assert example_failures(pool, cases, T0) == []


def test_the_examples_check_has_teeth(pool, cat):
    rule = next(r for r, _ in import_paths([str(COLLECTION / "login_then_permission_change.yml")], cat).rules)
    widened = dataclasses.replace(rule, condition=dataclasses.replace(rule.condition, at_least=3))
    failures = example_failures(pool, [(widened, 0)], T0)
    assert failures and "expected fire" in failures[0]


RULE = """
title: {title}
name: {name}
logsource: {logsource}
detection:
  selection: {selection}
  condition: {condition}
level: high
"""


def sigma(name="probe", *, selection="{event_type: user_login}", condition="selection",
          logsource="{product: auditwatch}") -> str:
    return RULE.format(title=f"Probe {name}", name=name, selection=selection, condition=condition,
                       logsource=logsource)


def correlation(kind: str, condition: str, group_by="[user_id]", timespan="5m", rules="[probe]") -> str:
    return sigma() + f"""---
title: Correlated
name: correlated
correlation:
  type: {kind}
  rules: {rules}
  group-by: {group_by}
  timespan: {timespan}
{condition}
level: high
"""


@pytest.mark.parametrize(("text", "rule", "field", "reason"), [
    (sigma(selection="{user.name: root}"), "probe", "user_id", "can be a correlation group-by"),
    (sigma(selection="{CommandLine: whoami}"), "probe", "CommandLine", "no Auditwatch field"),
    (sigma(selection="{event_type|contains: login}"), "probe", "event_type", "wildcard or pattern"),
    (sigma(selection="{event_type|re: 'user_.*'}"), "probe", "event_type", "RegularExpression value"),
    (sigma(selection="{event_type: no_such_type}"), "probe", "event_type", "no event type in the catalogue"),
    (sigma(selection="{type_uid: 999901}"), "probe", "type_uid", "no event type in the catalogue"),
    (sigma(selection="{status: maybe}"), "probe", "outcome", "is not an outcome"),
    (sigma(selection="[mimikatz]"), "probe", "condition", "keyword search"),
    (sigma(logsource="{product: windows, service: security}"), "probe", "logsource.product", "is not ours"),
    (sigma(logsource="{product: auditwatch, category: process_creation}"), "probe", "logsource.category",
     "names no OCSF class"),
    (sigma(selection="{status: [Success, Failure]}"), "probe", "outcome", "one outcome"),
    (sigma(selection="{event_type: user_login}\n  other: {status: Failure}", condition="selection or other"),
     "probe", "condition", "OR across event types and outcomes"),
    (correlation("event_count", "  condition: {lt: 5}"), "correlated", "correlation.condition", "at or above"),
    (correlation("event_count", "  condition: {gte: 5}", group_by="[resource_id]"), "correlated",
     "correlation.group-by", "cannot be grouped on"),
    (correlation("event_count", "  condition: {gte: 5}", timespan="2d"), "correlated", "correlation.timespan",
     "outside 10s..1d"),
    (correlation("value_count", "  condition: {gte: 5, field: user_agent}"), "correlated",
     "correlation.condition.field", "cannot be counted"),
    (correlation("temporal_ordered", ""), "correlated", "correlation.type", "no threshold equivalent"),
    (correlation("value_sum", "  condition: {gte: 5, field: user_id}"), "correlated", "correlation.type",
     "no threshold equivalent"),
])
def test_unmappable_rules_are_refused_naming_rule_field_and_reason(cat, text, rule, field, reason):
    result = import_text(text, cat, origin="probe.yml")
    assert [r for r, _ in result.rules] == []
    [refusal] = result.refused
    assert refusal.rule == f"{rule} (probe.yml)" and refusal.field == field and reason in refusal.reason, refusal
    assert str(refusal).startswith(f"{rule} (probe.yml) (field {field}): ")


def test_a_temporal_rule_whose_parts_share_a_type_is_refused_and_the_rest_still_import(cat):
    text = sigma("a", selection="{event_type: user_login, status: Failure}") + "---\n" + sigma(
        "b", selection="{event_type: user_login, status: Failure}") + """---
title: Same type twice
name: same_type_twice
correlation: {type: temporal, rules: [a, b], group-by: [user_id], timespan: 5m}
level: high
---""" + sigma("standalone", selection="{event_type: sudo, status_id: 2}")
    result = import_text(text, cat)
    assert [str(r) for r in result.refused] == [
        "same_type_twice (field correlation.rules): the referenced rules must select different event types with "
        "the same outcome"]
    assert [rule.id for rule, _ in result.rules] == ["standalone"]
