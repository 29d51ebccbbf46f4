"""A new country is judged for plausibility: two places at once is a stolen session, a trip is not."""

from __future__ import annotations

from datetime import timedelta

import orjson
import polars as pl
import pytest

from analytics import geo
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


def _settled(history: pl.DataFrame, n: int) -> dict[str, dict]:
    """``n`` users who always came from one country, one network and one browser: each one's last success."""
    humans = history.filter(pl.col("user_id").str.starts_with("u") & (pl.col("outcome") == "success")
                            & pl.col("source_country").is_not_null())
    counts = humans.group_by("user_id").agg(pl.len(), *(pl.col(c).n_unique().alias(c) for c in
                                                         ("source_country", "source_asn", "user_agent")))
    users = (counts.filter((pl.col("source_country") == 1) & (pl.col("source_asn") == 1) & (pl.col("user_agent") == 1))
             .sort("len", "user_id", descending=True)["user_id"].to_list())
    assert len(users) >= n
    return {u: humans.filter(pl.col("user_id") == u).sort("timestamp").row(-1, named=True) for u in users[:n]}


def _home(last: dict, at) -> dict:
    return event(at, last["user_id"], ip=last["source_ip"], country=last["source_country"], asn=last["source_asn"],
                 ua=last["user_agent"])


def _abroad(last: dict, at, *, ip: str = "133.11.99.133") -> list[dict]:
    """A morning's logins from a conference hotel in Japan, on the user's own browser."""
    return [event(at + timedelta(minutes=7 * k), last["user_id"], ip=ip, country="JP", asn="AS2907",
                  ua=last["user_agent"]) for k in range(3)]


def _by_user(scored: pl.DataFrame) -> dict[str, dict]:
    return {row["entity_value"]: row for row in scored.iter_rows(named=True)}


def test_colleagues_arriving_at_a_conference_together_are_each_a_more_plausible_trip(history):
    """Four people reach the same hotel network in Japan 40 minutes apart, each on their own laptop with
    nobody at home: the first is judged as a lone trip, each later one with the colleagues already there."""
    detector = NewContext().fit(history)
    people = list(_settled(history, 4).values())
    alone = [_by_user(detector.score_frame(frame(_home(p, T0 - timedelta(hours=9)),
                                                 *_abroad(p, T0 + timedelta(minutes=40 * i))),
                                           start=T0 - timedelta(hours=1)))[p["user_id"]]
             for i, p in enumerate(people)]
    together = _by_user(detector.score_frame(
        frame(*(_home(p, T0 - timedelta(hours=9)) for p in people),
              *(e for i, p in enumerate(people) for e in _abroad(p, T0 + timedelta(minutes=40 * i)))),
        start=T0 - timedelta(hours=1)))
    assert [a["peers"] for a in alone] == [0, 0, 0, 0]
    assert [together[p["user_id"]]["peers"] for p in people] == [0, 1, 2, 3]
    assert together[people[0]["user_id"]]["score"] == alone[0]["score"]  # nobody there yet: a lone trip
    assert together[people[1]["user_id"]]["travel"] > alone[1]["travel"] == detector.trip_factor
    for i in (1, 2, 3):
        assert together[people[i]["user_id"]]["score"] < alone[i]["score"] - 0.05


def test_no_peers_on_a_network_that_is_guessing_or_for_sessions_seen_at_home_too(history):
    """Arrivals look alike when an attacker works through one network: peers do not count while it fails
    logins for users it never lets in, nor for users also seen at home that hour (a proxy of a phishing kit),
    nor when only the country is known (no network to share)."""
    detector = NewContext().fit(history)
    settled = list(_settled(history, 14).values())
    people, targets = settled[:4], settled[4:]
    arrivals = [e for i, p in enumerate(people) for e in _abroad(p, T0 + timedelta(minutes=40 * i))]
    guessing = [event(T0 - timedelta(minutes=30) + timedelta(minutes=i), t["user_id"], outcome="failure",
                      ip="133.11.40.2", country="JP", asn="AS2907", ua="python-requests/2.31")
                for i, t in enumerate(targets)]
    scored = _by_user(detector.score_frame(frame(*(_home(p, T0 - timedelta(hours=9)) for p in people),
                                                 *arrivals, *guessing), start=T0 - timedelta(hours=1)))
    assert [scored[p["user_id"]]["peers"] for p in people] == [0, 0, 0, 0]
    proxied = _by_user(detector.score_frame(
        frame(*(_home(p, T0 + timedelta(minutes=40 * i - 5)) for i, p in enumerate(people)), *arrivals),
        start=T0 - timedelta(hours=1)))
    assert [proxied[p["user_id"]]["peers"] for p in people] == [0, 0, 0, 0]
    assert all(proxied[p["user_id"]]["travel"] < 1.0 for p in people)  # two places at once, each of them
    unknown_network = [{**e, "source_asn": None} for e in arrivals]  # no ASN enrichment: only a country in common
    scored = _by_user(detector.score_frame(frame(*(_home(p, T0 - timedelta(hours=9)) for p in people),
                                                 *unknown_network), start=T0 - timedelta(hours=1)))
    assert [scored[p["user_id"]]["peers"] for p in people] == [0, 0, 0, 0]


def test_a_new_company_network_that_many_users_move_to_together_becomes_familiar(history):
    """A new VPN egress or ISP: 30 people, each at home with their own browser, arrive through one new
    network 2 minutes apart. Each arrival counts towards the network's share of the population, so the
    move pages for the first few, not for everyone."""
    detector = NewContext().fit(history)
    people = list(_settled(history, 30).values())

    def moved(i: int, p: dict) -> list[dict]:
        return [event(T0 + timedelta(minutes=2 * i + 7 * k), p["user_id"], ip=f"203.0.113.{i + 1}",
                      country=p["source_country"], asn="AS64500", ua=p["user_agent"]) for k in range(3)]

    alone = [detector.score_frame(frame(*moved(i, p)), start=T0 - timedelta(hours=1))["score"][0]
             for i, p in enumerate(people)]
    together = _by_user(detector.score_frame(frame(*(e for i, p in enumerate(people) for e in moved(i, p))),
                                             start=T0 - timedelta(hours=1)))
    assert [together[p["user_id"]]["peers"] for p in people] == list(range(30))
    assert all(together[p["user_id"]]["score"] < a for p, a in zip(people[1:], alone[1:], strict=True))
    paged_alone = sum(a >= 0.6 for a in alone)
    paged_together = sum(together[p["user_id"]]["score"] >= 0.6 for p in people)
    assert paged_alone >= 10 and paged_together <= paged_alone // 3, (paged_alone, paged_together)


def test_the_worker_sees_the_colleagues_a_file_shows(history):
    """Live scoring reads every event for an hour before a range, and beyond that only what a detector declares:
    new_context declares the logins of the 6 hours before, so colleagues who arrived hours earlier count as
    peers for the worker exactly as in a file (``analytics.lookback``)."""
    from analytics import lookback

    detector = NewContext().fit(history)
    assert lookback.reach(detector, bound=timedelta(days=30)) == timedelta(hours=6)
    assert lookback.event_types(detector) == ("user_login",)
    people = list(_settled(history, 3).values())
    arrivals = [T0, T0 + timedelta(hours=2), T0 + timedelta(hours=5)]
    events = [_home(p, T0 - timedelta(hours=9)) for p in people]
    for p, at in zip(people, arrivals, strict=True):
        events += _abroad(p, at)
        events.append(event(at + timedelta(minutes=30), p["user_id"], "query_executed", ip="133.11.99.133",
                            country="JP", asn="AS2907", ua=p["user_agent"]))
    whole = frame(*events)
    start = arrivals[-1]
    live = whole.filter(((pl.col("timestamp") >= start - timedelta(hours=6)) & (pl.col("event_type") == "user_login"))
                        | (pl.col("timestamp") >= start - timedelta(hours=1)))
    in_file = _by_user(detector.score_frame(whole, start=start))
    at_live_edge = _by_user(detector.score_frame(live, start=start))
    last = people[-1]["user_id"]
    assert in_file[last]["peers"] == at_live_edge[last]["peers"] == 2
    assert in_file[last]["score"] == at_live_edge[last]["score"]


def test_colleagues_who_arrived_before_a_refit_are_still_peers(history):
    """The worker refits every few hours. Colleagues who reached the hotel network before the refit are in its
    history then, yet their arrivals in the lookback are still firsts: the one who arrives after the refit is
    judged with them, as by a model fitted before any of them came (a refit's timing decides nothing)."""
    people = list(_settled(history, 3).values())
    arrivals = [T0, T0 + timedelta(hours=2), T0 + timedelta(hours=5)]
    events = [_home(p, T0 - timedelta(hours=9)) for p in people]
    for p, at in zip(people, arrivals, strict=True):
        events += _abroad(p, at)
    whole = frame(*events)
    start = arrivals[-1]
    before_all = NewContext().fit(history)
    refit = start - timedelta(minutes=30)  # after the first two arrived, before the third
    after_two = NewContext().fit(pl.concat([history, whole.filter(pl.col("timestamp") < refit)], how="diagonal_relaxed"))
    lookback = whole.filter(pl.col("timestamp") >= start - before_all.context)
    last = people[-1]["user_id"]
    early = _by_user(before_all.score_frame(lookback, start=start))[last]
    late = _by_user(after_two.score_frame(lookback, start=start))
    assert early["peers"] == late[last]["peers"] == 2
    assert late[last]["travel"] == early["travel"] > before_all.trip_factor
    assert abs(late[last]["score"] - early["score"]) < 0.02
    assert set(late) == {last}  # the two earlier arrivals were scored by the range they fell in, not again here
    alone = _by_user(after_two.score_frame(lookback.filter(pl.col("user_id") == last), start=start))[last]
    assert late[last]["score"] < alone["score"] - 0.05


NETWORKS = {"NZ": ("202.36.1.9", "AS9790"), "SG": ("116.12.1.9", "AS9506"), "BR": ("177.1.1.9", "AS28573"),
            "CA": ("24.114.1.9", "AS812"), "MX": ("187.1.1.9", "AS8151"), "DE": ("91.1.1.9", "AS3320"),
            "FR": ("90.1.1.9", "AS3215"), "ES": ("83.44.7.7", "AS3352")}


def test_a_trip_no_airliner_could_make_is_not_a_plausible_trip(history):
    detector = NewContext().fit(history)
    home = _regular(history)
    user, ua, country = home["user_id"], home["user_agent"], home["source_country"]
    at_home = dict(ip=home["source_ip"], country=country, asn=home["source_asn"], ua=ua)
    others = [c for c in NETWORKS if c != country]
    far = max(others, key=lambda c: geo.least_km(country, c))
    near = next(c for c in others if geo.least_km(country, c) == 0.0)  # a neighbour, or a short hop away
    assert geo.least_km(country, far) > 3 * detector.flight_kmh  # too far for three hours in the air

    def away(where: str, hours: float) -> pl.DataFrame:
        ip, asn = NETWORKS[where]
        return frame(event(T0 - timedelta(hours=hours), user, **at_home),
                     event(T0, user, ip=ip, country=where, asn=asn, ua=ua))

    def scored(where: str, hours: float) -> pl.DataFrame:
        return detector.score_frame(away(where, hours), start=T0 - timedelta(minutes=5))

    # Three hours after a session at home: too soon for the far country, a plausible trip to the neighbour.
    flew = scored(far, 3)
    assert flew["travel"].to_list() == [1.0]  # no trip bonus, and not "two places at once" either
    assert flew["needed_kmh"][0] == pytest.approx(geo.least_km(country, far) / 3)
    assert scored(near, 3)["travel"].to_list() == [detector.trip_factor]
    later = scored(far, 23)  # a day's flight later: the same first, and a plausible trip
    assert later["travel"].to_list() == [detector.trip_factor]
    assert flew["score"][0] > later["score"][0]
    found = detector.detect(away(far, 3), start=T0 - timedelta(minutes=5))
    assert found["entity_value"].to_list() == [user]
    travel = orjson.loads(found["explanation"][0])["travel"]
    assert travel == {"needed_kmh_at_least": round(flew["needed_kmh"][0]), "plausible_trip": False}
    assert detector.detect(away(far, 23), start=T0 - timedelta(minutes=5)).is_empty()
    # Only what came before the first counts, as the worker scores it: home again three hours later is no evidence.
    back = frame(event(T0 - timedelta(hours=23), user, **at_home),
                 event(T0, user, ip=NETWORKS[far][0], country=far, asn=NETWORKS[far][1], ua=ua),
                 event(T0 + timedelta(hours=3), user, **at_home))
    returned = detector.score_frame(back, start=T0 - timedelta(minutes=5)).filter(pl.col("window_start") <= T0)
    assert returned["travel"].to_list() == [detector.trip_factor] and returned["needed_kmh"].is_null().all()
