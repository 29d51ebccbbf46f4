"""The shipped absence rule does not warn about the demo's own traffic: a source people drive goes quiet at night."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.engine import observe
from alerts.rule_files import load_rules
from alerts.rules import PACKAGED_RULES
from ingest.seed import seed_demo
from storage.timescale import rule_inputs

START = datetime(2024, 6, 3, tzinfo=UTC)  # a Monday
END = START + timedelta(days=2)


def test_silent_source_stays_quiet_through_the_demos_nights_and_watches_a_source_that_sends_around_the_clock(pool):
    rule = load_rules(PACKAGED_RULES)["silent_source"]
    seed_demo(pool, start=START, end=END, now=END)
    # The demo's people do go quiet for longer than the rule's 30 minutes at night (the reason `demo-app` is
    # not among its senders), while its services never do.
    gaps = rule_inputs.sender_gaps(pool, field_name="source", values=["demo-app", "demo-batch"], start=START,
                                   end=END, min_gap_seconds=rule.condition.silent_for.total_seconds())
    assert {sender for sender, _, _ in gaps} == {"demo-app"}
    fired = [(at, [dict(o.group) for o in observed]) for at in
             (START + timedelta(days=1, minutes=m) for m in range(0, 24 * 60, 10))
             if (observed := observe(pool, rule, now=at))]
    assert fired == []
    # and it still watches what it lists: the services' source, once they stop
    assert [dict(o.group) for o in observe(pool, rule, now=END + timedelta(minutes=45))] == [{"source": "demo-batch"}]
