"""The overview after a history load: the rollups have not counted the loaded history yet while raw-event
widgets (latest events) show it; "Events in range" and "Source countries" say so until the refresh catches up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from dashboard.render import RenderContext
from dashboard.widgets import charts, kpi
from storage.events import EventRecord, Outcome
from storage.timescale import rollups
from storage.timescale import widgets_queries as wq
from storage.timescale.writer import EventWriter
from tests.dashboard.conftest import components_of, text_of


def _events(now: datetime, n: int, *, oldest: timedelta, newest: timedelta, tag: str) -> list[EventRecord]:
    step = (oldest - newest) / n
    return [EventRecord(event_id=uuid.uuid4(), timestamp=now - oldest + step * i, received_at=now,
                        event_type="user_login", user_id=f"{tag}{i % 7}", outcome=Outcome.SUCCESS,
                        source_ip="81.2.69.10", source_country="GB", metadata={"tag": tag}) for i in range(n)]


def test_the_events_tile_says_rollups_are_catching_up_after_a_history_load(pool):
    now = datetime.now(UTC)
    writer = EventWriter(pool)
    writer.write(_events(now, 120, oldest=timedelta(minutes=50), newest=timedelta(minutes=2), tag="live"))
    rollups.refresh(pool, now=now)
    start = now - timedelta(hours=24)
    rc = RenderContext(pool=pool, aio_id="kpi-total", start=start, end=now, now=now)

    before = kpi.render(rc, {"metric": "events_total"})
    assert "120" in text_of(before) and "catching up" not in text_of(before)

    # The demo's history load: a day's events written into the past, behind the rollups' watermark.
    writer.write(_events(now, 480, oldest=timedelta(hours=20), newest=timedelta(hours=3), tag="history"))
    countries, _ = wq.countries(pool, start, now)
    assert countries["events"].sum() == 120  # from the country rollups: not counted yet either
    assert wq.total(pool, start, now) == 120  # the rollups do not, until the refresh
    # Under a user cross-filter the countries come from the raw events (a day at most), history included.
    assert wq.countries(pool, start, now, wq.Filters(user_id="history3"))[0]["events"].sum() == 480 // 7 + 1
    countries_tile = text_of(charts.render_countries(rc, {"limit": 10}))
    assert "rollups catching up" in countries_tile and "120" in countries_tile, countries_tile
    behind = rollups.pending(pool, start, now)
    assert len(behind) == 1 and behind[0][0] <= now - timedelta(hours=20) and behind[0][1] >= now - timedelta(hours=3, minutes=5)
    lagging = text_of(kpi.render(rc, {"metric": "events_total"}))
    assert "120" in lagging and "rollups catching up" in lagging, lagging
    assert "rollups catching up" in text_of(kpi.render(rc, {"metric": "events_per_min"}))
    # A range the history does not reach is not marked.
    recent = RenderContext(pool=pool, aio_id="kpi-total", start=now - timedelta(hours=1), end=now, now=now)
    assert "catching up" not in text_of(kpi.render(recent, {"metric": "events_total"}))

    rollups.refresh(pool, now=now)
    caught_up = text_of(kpi.render(rc, {"metric": "events_total"}))
    assert "600" in caught_up and "catching up" not in caught_up
    countries_tile = text_of(charts.render_countries(rc, {"limit": 10}))
    assert "600" in countries_tile and "catching up" not in countries_tile, countries_tile
    assert rollups.pending(pool, start, now) == []


def test_events_without_a_country_are_named_for_what_they_are_not_unknown(pool):
    """The demo's busiest senders are service accounts on private addresses: their row said "unknown" on top of
    the first screen. It now says "no country", and its hover says which addresses those are."""
    now = datetime.now(UTC)
    internal = [EventRecord(event_id=uuid.uuid4(), timestamp=now - timedelta(minutes=30), received_at=now,
                            event_type="user_login", user_id=f"svc{i}", outcome=Outcome.SUCCESS, source_ip="10.1.2.3",
                            metadata={}) for i in range(9)]
    EventWriter(pool).write(internal + _events(now, 4, oldest=timedelta(minutes=40), newest=timedelta(minutes=5),
                                               tag="office"))
    rollups.refresh(pool, now=now)
    tile = charts.render_countries(RenderContext(pool=pool, aio_id="countries", start=now - timedelta(hours=1),
                                                 end=now, now=now), {"limit": 10})
    text = text_of(tile)
    assert "no country" in text and "GB" in text and "unknown" not in text, text
    assert text.index("no country") < text.index("GB")  # the busier row first, as before
    spans = [c for c in components_of(tile) if getattr(c, "className", None) == "aw-no-country"]
    assert len(spans) == 1 and "private or internal networks" in spans[0].title
