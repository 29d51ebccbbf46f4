"""The lifecycle step as a pure function: pending for `for`, cooldown before resolving, flapping."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from alerts.lifecycle import Observation, fingerprint, resolve_orphans, step
from alerts.rule_files import load_rules
from alerts.rules import PACKAGED_RULES
from tests.alerts.conftest import T0

RULE = load_rules(PACKAGED_RULES)["failed_login_burst"]
GROUP = {"user_id": "alice"}
FP = fingerprint(RULE.id, GROUP)


def run(rule, observed: bool, stored: dict, now, resolutions: int = 0):
    changes = step(rule, [Observation(GROUP, 12)] if observed else [], stored, now=now,
                   resolutions=lambda fp, since: resolutions)
    for change in changes:
        stored[change.alert.fingerprint] = change.alert
    return [(c.from_state, c.to_state) for c in changes]


def test_fingerprints_are_stable_and_distinct():
    assert fingerprint("r", {"a": "1", "b": "2"}) == fingerprint("r", {"b": "2", "a": "1"})
    assert len({fingerprint("r", {"a": "1"}), fingerprint("r", {"a": "2"}), fingerprint("s", {"a": "1"})}) == 3


def test_pending_for_the_rules_for_duration_then_firing():
    rule = replace(RULE, for_=timedelta(seconds=30))
    stored: dict = {}
    assert run(rule, True, stored, T0) == [(None, "pending")]
    assert run(rule, True, stored, T0 + timedelta(seconds=20)) == [("pending", "pending")]
    assert run(rule, True, stored, T0 + timedelta(seconds=30)) == [("pending", "firing")]
    assert stored[FP].firing_at == T0 + timedelta(seconds=30) and stored[FP].started_at == T0


def test_pending_that_clears_never_fires():
    rule = replace(RULE, for_=timedelta(minutes=1))
    stored: dict = {}
    run(rule, True, stored, T0)
    assert run(rule, False, stored, T0 + timedelta(seconds=10)) == [("pending", "resolved")]
    assert stored[FP].firing_at is None


def test_the_cooldown_holds_a_firing_alert_through_a_pause():
    stored: dict = {}
    run(RULE, True, stored, T0)
    assert run(RULE, False, stored, T0 + timedelta(seconds=10)) == [("firing", "firing")]
    assert stored[FP].inactive_since == T0 + timedelta(seconds=10)
    assert run(RULE, True, stored, T0 + timedelta(seconds=70)) == [("firing", "firing")]  # resumed: same alert
    assert stored[FP].inactive_since is None
    run(RULE, False, stored, T0 + timedelta(seconds=80))
    assert run(RULE, False, stored, T0 + timedelta(seconds=199)) == []
    assert run(RULE, False, stored, T0 + timedelta(seconds=200)) == [("firing", "resolved")]


def test_a_flapping_alert_is_held_for_the_flap_window():
    stored: dict = {}
    run(RULE, True, stored, T0)
    run(RULE, False, stored, T0 + timedelta(minutes=1))
    run(RULE, False, stored, T0 + timedelta(minutes=3))
    assert stored[FP].state == "resolved"
    # It comes back after resolving three times within the hour: flapping.
    assert run(RULE, True, stored, T0 + timedelta(minutes=4), resolutions=3) == [("resolved", "firing")]
    assert stored[FP].flapping
    run(RULE, False, stored, T0 + timedelta(minutes=5))
    assert run(RULE, False, stored, T0 + timedelta(minutes=30)) == []  # a 2-minute cooldown would have resolved
    assert run(RULE, False, stored, T0 + timedelta(minutes=65)) == [("firing", "resolved")]
    assert not stored[FP].flapping


def test_an_acknowledgement_ends_with_the_alert():
    stored: dict = {}
    run(RULE, True, stored, T0)
    stored[FP] = replace(stored[FP], acknowledged_by="bob", acknowledged_at=T0)
    run(RULE, False, stored, T0 + timedelta(seconds=10))
    run(RULE, False, stored, T0 + timedelta(minutes=5))
    assert stored[FP].state == "resolved" and stored[FP].acknowledged_by is None
    run(RULE, True, stored, T0 + timedelta(minutes=6))
    assert stored[FP].acknowledged_by is None and stored[FP].state == "firing"


def test_alerts_of_removed_rules_resolve():
    stored: dict = {}
    run(RULE, True, stored, T0)
    changes = resolve_orphans(list(stored.values()), {"other_rule"}, now=T0 + timedelta(minutes=1))
    assert [(c.from_state, c.to_state) for c in changes] == [("firing", "resolved")]
    assert resolve_orphans(list(stored.values()), {RULE.id}, now=T0) == []

