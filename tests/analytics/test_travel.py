"""A new country is judged for plausibility: two places at once is a stolen session, a trip is not."""

from __future__ import annotations

from datetime import timedelta

import orjson
import polars as pl

from analytics.detectors import NewContext
from tests.analytics.conftest import T0, event, frame


def _regular(history: pl.DataFrame) -> dict:
    """A user with plenty of history from one country and one browser."""
    humans = history.filter(pl.col("user_id").str.starts_with("u") & (pl.col("outcome") == "success"))
    counts = humans.group_by("user_id").agg(pl.len(), pl.col("source_country").n_unique().alias("c"))
    user = counts.filter(pl.col("c") == 1).sort("len")["user_id"][-1]
    return humans.filter(pl.col("user_id") == user).row(-1, named=True)


def test_two_countries_at_once_is_rarer_than_a_plausible_trip(history):
    detector = NewContext().fit(history)
    home = _regular(history)
    user, ua = home["user_id"], home["user_agent"]
    at_home = dict(ip=home["source_ip"], country=home["source_country"], asn=home["source_asn"], ua=ua)
    abroad = dict(ip="83.44.7.7", country="ES", asn="AS3352", ua=ua)
    trip = frame(event(T0 - timedelta(hours=9), user, **at_home), event(T0, user, **abroad))
    stolen = frame(event(T0 - timedelta(minutes=8), user, **at_home), event(T0, user, **abroad),
                   event(T0 + timedelta(minutes=20), user, **at_home))
    scored_trip = detector.score_frame(trip, start=T0 - timedelta(minutes=5))
    scored_stolen = detector.score_frame(stolen, start=T0 - timedelta(minutes=5))
    assert scored_trip["travel"].to_list() == [detector.trip_factor]  # known client, nobody at home meanwhile
    assert scored_stolen["elsewhere_minutes"].to_list() == [8.0]
    assert scored_stolen["score"][0] > scored_trip["score"][0]
    found = detector.detect(stolen, start=T0 - timedelta(minutes=5))
    assert found["entity_value"].to_list() == [user]
    assert orjson.loads(found["explanation"][0])["travel"]["plausible_trip"] is False
