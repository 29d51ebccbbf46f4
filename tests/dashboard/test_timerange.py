"""The global time range against a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard import timerange
from dashboard.errors import TimeRangeError

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("preset", "span"), [("15m", timedelta(minutes=15)), ("1h", timedelta(hours=1)),
                                               ("24h", timedelta(days=1)), ("30d", timedelta(days=30))])
def test_presets_end_now(preset, span):
    assert timerange.resolve({"preset": preset}, now=NOW) == (NOW - span, NOW)


def test_default_and_widget_override():
    assert timerange.resolve(None, now=NOW) == (NOW - timedelta(hours=24), NOW)
    assert timerange.resolve({"preset": "1h"}, now=NOW, override="7d") == (NOW - timedelta(days=7), NOW)


def test_custom_ranges_are_utc_and_checked():
    start, end = timerange.resolve({"preset": "custom", "start": "2024-04-30T08:00", "end": "2024-04-30T09:30"},
                                   now=NOW)
    assert (start, end) == (datetime(2024, 4, 30, 8, tzinfo=UTC), datetime(2024, 4, 30, 9, 30, tzinfo=UTC))
    with pytest.raises(TimeRangeError, match="swap start and end"):
        timerange.resolve({"preset": "custom", "start": "2024-04-30T10:00", "end": "2024-04-30T09:00"}, now=NOW)
    with pytest.raises(TimeRangeError, match="needs both"):
        timerange.resolve({"preset": "custom", "start": "2024-04-30T10:00"}, now=NOW)
    with pytest.raises(TimeRangeError, match="not a date and time"):
        timerange.resolve({"preset": "custom", "start": "yesterday", "end": "2024-04-30T09:00"}, now=NOW)
    with pytest.raises(TimeRangeError, match="longer than 400 days"):
        timerange.resolve({"preset": "custom", "start": "2020-01-01T00:00", "end": "2024-01-01T00:00"}, now=NOW)
    with pytest.raises(TimeRangeError, match="unknown time range"):
        timerange.resolve({"preset": "forever"}, now=NOW)
