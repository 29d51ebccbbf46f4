"""Cohorts inferred from the resources people share: each one big enough to show a shift."""

from __future__ import annotations

from datetime import timedelta

from analytics import features as F
from tests.analytics.conftest import T0, event, frame


def _uses(user: str, resource: dict, n: int, offset: int) -> list[dict]:
    return [event(T0 + timedelta(minutes=offset + i), user, "data_export", metadata={**resource, "rows": 10})
            for i in range(n)]


def test_a_resource_few_people_choose_first_makes_no_cohort_of_its_own():
    """Finance works in its bucket; two of its members mostly open the ledger dataset, which four more
    open now and then. The ledger is specific enough to win for those two, but a cohort of two shows no
    month-end shift (fewer member windows than a shift needs) and a thin baseline: they stay in finance."""
    events = []
    for i in range(30):
        events += _uses(f"eng{i:02d}", {"project": "platform"}, 10, i)
    for i in range(30):
        events += _uses(f"fin{i:02d}", {"bucket": "finance"}, 10, i)
    for i in range(2):
        events += _uses(f"fin{i:02d}", {"dataset": "ledger"}, 20, 100 + i)
    for i in range(2, 6):
        events += _uses(f"fin{i:02d}", {"dataset": "ledger"}, 1, 200 + i)
    cohorts = F.infer_cohorts(frame(*events).lazy())
    assert cohorts["fin00"] == cohorts["fin01"] == cohorts["fin05"] == "cohort:finance"
    assert cohorts["eng00"] == "cohort:platform"
    sizes = {c: list(cohorts.values()).count(c) for c in set(cohorts.values())}
    assert sizes == {"cohort:finance": 30, "cohort:platform": 30}


def test_cohorts_do_not_depend_on_the_order_of_events():
    events = []
    for i in range(12):
        events += _uses(f"a{i:02d}", {"team": "red"}, 3, i) + _uses(f"a{i:02d}", {"team": "blue"}, 3, 50 + i)
        events += _uses(f"b{i:02d}", {"team": "green"}, 5, i)
    forward = F.infer_cohorts(frame(*events).lazy())
    backward = F.infer_cohorts(frame(*reversed(events)).lazy())
    assert forward == backward
    assert {forward[f"a{i:02d}"] for i in range(12)} == {"cohort:blue"}  # a tie, broken by name


def test_a_user_with_little_history_still_gets_a_cohort_when_events_are_sampled():
    """The sample is taken per user: a newcomer with three exports is not sampled away by the thousands of
    their colleagues' events (left without a cohort, their department's close was judged against everyone)."""
    events = []
    for i in range(30):
        events += _uses(f"fin{i:02d}", {"bucket": "finance"}, 60, i)
    for i in range(25):
        events += _uses(f"eng{i:02d}", {"project": "platform"}, 60, i)
        events += _uses(f"ops{i:02d}", {"project": "infra"}, 60, i)
    events += _uses("newcomer", {"bucket": "finance"}, 3, 500)
    cohorts = F.infer_cohorts(frame(*events).lazy(), sample=300)
    assert cohorts["newcomer"] == "cohort:finance"
    assert len(cohorts) == 81
