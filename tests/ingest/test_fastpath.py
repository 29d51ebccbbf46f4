"""The batch fast path decides every event exactly as ``validate_event`` does: same event, or the same
error (code, field and message), whether a value is seen for the first time or remembered."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import EventRejected
from ingest.fastpath import BatchValidator
from ingest.validate import ValidationPolicy, validate_event

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
POLICY = ValidationPolicy()


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "6f1c1f2e-8a4f-4c8e-9d55-1f2f3f4f5f6f", "timestamp": "2024-06-01T12:00:00Z",
        "event_type": "user_login", "user_id": "alice", "outcome": "success", "source": "web",
        "source_ip": "81.2.69.160", "user_agent": "curl/8.0", "resource_id": "doc-1",
        "metadata": {"bytes": 12, "bucket": "hr", "ok": True, "ratio": 0.5, "none": None},
    }
    base.update(fields)
    return base


def outcome(decide, obj: Any) -> Any:
    try:
        return decide(obj)
    except EventRejected as exc:
        return ("rejected", exc.code, exc.field, exc.message)


VARIANTS: list[Any] = [
    event(),
    event(outcome=None, source=None, source_ip=None, user_agent=None, resource_id=None, metadata=None),
    event(metadata={}),
    event(metadata={"nested": {"a": [1, 2]}}),
    event(metadata={"_ingest": {"sender": "x"}}),
    event(metadata={"k": "a\x00b"}),
    event(metadata={"a\x01": 1}),
    event(metadata={"big": 2**70}),
    event(metadata={"blob": "x" * 20_000}),
    event(metadata=[1]),
    event(event_id="not-a-uuid-but-thirty-six-characters"),
    event(event_id="6F1C1F2E8A4F4C8E9D551F2F3F4F5F6F"),
    event(event_id=None),
    event(event_id=7),
    event(timestamp="2024-06-01T12:00:00"),
    event(timestamp="2024-06-01T13:00:00Z"),
    event(timestamp="2024-05-01T12:00:00Z"),
    event(timestamp="1969-12-31T23:59:59Z"),
    event(timestamp="2024-06-01T14:00:00+02:00"),
    event(timestamp=17),
    event(event_type="User_Login"),
    event(event_type=["user_login"]),
    event(user_id=""),
    event(user_id="  "),
    event(user_id="a\nb"),
    event(user_id="apikey:abc"),
    event(user_id="u" * 257),
    event(user_id={"a": 1}),
    event(source="auditwatch-cli"),
    event(source="s" * 129),
    event(source=["x"]),
    event(user_agent="ua\x7f"),
    event(user_agent="u" * 1025),
    event(resource_id="r" * 513),
    event(resource_id=5),
    event(source_ip="10.0.0.1%eth0"),
    event(source_ip="010.0.0.1"),
    event(source_ip="::ffff:10.0.0.1"),
    event(source_ip="2001:DB8::1"),
    event(source_ip=["x"]),
    event(outcome="maybe"),
    event(outcome=1),
    event(received_at="2024-06-01T12:00:00Z"),
    event(extra=1),
    [event()],
    "event",
]


@pytest.mark.parametrize("backfill", [False, True])
@pytest.mark.parametrize("policy", [POLICY, ValidationPolicy(text_limit_scale=2, max_metadata_bytes=64 * 1024)])
def test_every_variant_is_decided_as_validate_event_decides_it_first_time_and_remembered(backfill, policy):
    items = copy.deepcopy(VARIANTS)
    expected = [outcome(lambda o: validate_event(o, now=NOW, policy=policy, backfill=backfill), o) for o in items]
    assert any(not isinstance(e, tuple) for e in expected) and any(isinstance(e, tuple) for e in expected)
    for _ in range(2):  # the second pass meets every value already remembered
        fast = BatchValidator(now=NOW, policy=policy, backfill=backfill)
        assert [outcome(fast, o) for o in items] == expected


def test_a_value_remembered_as_valid_is_still_checked_against_the_window_and_other_fields():
    fast = BatchValidator(now=NOW, policy=POLICY, backfill=False)
    fast(event())
    late = event(timestamp=(NOW - timedelta(hours=1)).isoformat())
    assert outcome(fast, late) == outcome(lambda o: validate_event(o, now=NOW, policy=POLICY, backfill=False), late)
    assert outcome(fast, late)[1] == "timestamp_out_of_window"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["event_id", "timestamp", "event_type", "user_id", "outcome", "source",
                                        "source_ip", "user_agent", "resource_id", "metadata", "other"]),
                       st.one_of(st.none(), st.text(max_size=40), st.integers(), st.booleans(),
                                 st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers()),
                                                 max_size=3))))
def test_any_mutation_of_a_valid_event_is_decided_alike(fields):
    obj = event(**fields)
    expected = outcome(lambda o: validate_event(o, now=NOW, policy=POLICY, backfill=True), obj)
    assert outcome(BatchValidator(now=NOW, policy=POLICY, backfill=True), obj) == expected
