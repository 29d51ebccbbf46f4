"""Storage fixtures: a pool on the test's fresh database and a factory for events."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from storage.events import EventRecord, Outcome

# A fixed clock: every event time in these tests is relative to it.
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)



@pytest.fixture
def make_event():
    """Build an EventRecord; every field has a sensible default and can be overridden."""
    counter = itertools.count()

    def make(**fields) -> EventRecord:
        n = next(counter)
        defaults = {
            "event_id": uuid.uuid4(),
            "timestamp": T0 - timedelta(minutes=n),
            "event_type": "user_login",
            "user_id": "alice",
            "received_at": T0,
            "outcome": Outcome.SUCCESS,
        }
        return EventRecord(**{**defaults, **fields})

    return make
