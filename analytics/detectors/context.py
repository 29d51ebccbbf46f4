"""New or rare context: a first-seen country, network (ASN), source IP or client for a user.

How surprising a first is depends on the user (someone who shows up from a new address every
day is not surprising when they do it again) and on the population (a country half the company
logs in from is not surprising, one nobody has ever used is). So a first is scored as the user's
rate of firsts (distinct values over events, a Good-Turing style estimate) times the share of
users that have ever used the value; location (country, else ASN, else IP) client and hour of day are
combined as independent evidence.

A first is also judged against the users around it *now* (``peer_hours``): a network that many users in good
standing (a client they already have, nobody elsewhere at the time) start using together is a new office,
VPN or ISP, and counts towards the population's share; colleagues who arrive in a new country through the
same network one after another are travelling together (a conference), which makes each later arrival a more
plausible trip. Neither applies to a network that is failing logins for users it never lets in (guessing),
and only arrivals before a first count, so live scoring and a file agree. Arrivals that a refit has since
learnt from still count: the model keeps when it first saw each value, and a value first seen inside the
frame being scored is a first there, wherever a refit fell.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl
import polars.selectors as cs

from analytics import features as F
from analytics import geo
from analytics.detectors.base import Detector, with_scores
from analytics.detectors.counts import _empty_scores

ATTRIBUTES = ("source_country", "source_asn", "source_ip", "user_agent")


class NewContext(Detector):
    """First-seen country, ASN, source IP or user agent for a user, weighed by how rare it is.

    Parameters
    ----------
    window : str, default "10m"
        Firsts of one user within this window form one finding.
    min_history : int, default 20
        Users with fewer events are new themselves: their firsts count as unsurprising for the user part.
    hour_prior : float, default 50.0
        Pseudo-events of population activity in each user's hour-of-day profile; a first at an hour the
        user is never active is more surprising than one in their working day.
    travel_hours : float, default 2.0
        A new country is judged for plausibility: the user seen from another country within this long of it
        could not have travelled (two places at once), which is evidence of a stolen session, scaled by how
        close in time; a new country with none of that, on a client the user already has, is a plausible trip.
    trip_factor : float, default 10.0
        How much less surprising a plausible trip (a known client, nobody at home meanwhile) is than the
        first alone; and at most how much more surprising being in two countries at once makes it. A trip
        that two or more other users made to the same country and network in the ``peer_hours`` before it
        (travelling together) is this much less surprising again (the square root of it with one).
    peer_hours : float, default 6.0
        How far back other users' arrivals on the same network count as peers of a first.
    flight_kmh : float, default 1000.0
        The fastest anyone travels between countries (an airliner's cruise, door to door is slower). A new country
        the user could only have reached faster than this from where they were seen in the ``peer_hours`` before
        it, by the least distance between the two countries (``analytics.geo``), is not a plausible trip.

    Attributes
    ----------
    known_ : polars.DataFrame
        (user_id, attribute, value) seen in history: how often (``seen``), on how many days, and first when.
    users_ : polars.DataFrame
        Per user: events with a source, and distinct values per attribute.
    population_ : dict
        Per attribute: value → number of users that used it; and the number of users.
    version_ : str
        Identifies the fitted model.
    """

    name = "new_context"
    version = "4"  # a trip faster than an airliner is not a plausible trip
    context_events: ClassVar[tuple[str, ...]] = ("user_login",)

    def __init__(self, *, window: str = "10m", min_history: int = 20, hour_prior: float = 50.0,
                 travel_hours: float = 2.0, trip_factor: float = 10.0, peer_hours: float = 6.0,
                 flight_kmh: float = 1000.0) -> None:
        self.window = window
        self.min_history = min_history
        self.hour_prior = hour_prior
        self.travel_hours = travel_hours
        self.trip_factor = trip_factor
        self.peer_hours = peer_hours
        self.flight_kmh = flight_kmh

    @property
    def _fastest_kmh(self) -> float:
        """``flight_kmh``; a model stored before version 4 has none and takes the default."""
        return getattr(self, "flight_kmh", 1000.0)

    @property
    def context(self) -> timedelta:
        """The logins of the ``peer_hours`` before a scored range, read for peers (``analytics.lookback``), so
        the worker sees the colleagues a file shows."""
        return timedelta(hours=getattr(self, "peer_hours", 6.0))  # a model stored before version 2 has none

    @staticmethod
    def _long(events: pl.LazyFrame) -> pl.LazyFrame:
        """(user, time, attribute, value) for every non-failed event: a failed login is not the user being there.
        Each row keeps its event's network (``_asn``), the place a first shares with peers (``_peers``).

        A user agent is compared as its client (``features.client_family``): a version bump is not a new client.
        """
        agents = events.select(pl.col("user_agent").unique()).collect().to_series()
        clients = F.client_family(agents)
        client = pl.col("user_agent").replace_strict(clients, default=pl.col("user_agent"), return_dtype=pl.String)
        present = events.filter(pl.col("outcome") != "failure").with_columns(client.alias("user_agent"))
        return pl.concat([
            present.filter(pl.col(a).is_not_null()).select("user_id", "timestamp", "event_id",
                                                           pl.lit(a).alias("attribute"), pl.col(a).alias("value"),
                                                           pl.col("source_asn").alias("_asn"))
            for a in ATTRIBUTES
        ])

    def _fit(self, events: pl.DataFrame) -> None:
        long = self._long(events.lazy())
        self.known_ = long.group_by("user_id", "attribute", "value").agg(
            pl.len().alias("seen"), pl.col("timestamp").dt.date().n_unique().alias("days"),
            pl.col("timestamp").min().alias("first")).collect()
        counts = events.lazy().filter(pl.col("source_ip").is_not_null() & (pl.col("outcome") != "failure")).group_by("user_id").agg(
            pl.len().alias("n")).collect()
        distinct = self.known_.group_by("user_id", "attribute").agg(pl.len().alias("d")).pivot(
            on="attribute", index="user_id", values="d")
        self.users_ = counts.join(distinct, on="user_id", how="left").fill_null(0)
        for a in ATTRIBUTES:
            if a not in self.users_.columns:
                self.users_ = self.users_.with_columns(pl.lit(0, dtype=pl.UInt32).alias(a))
        hours = events.lazy().with_columns(pl.col("timestamp").dt.hour().alias("hour"))
        self.hours_ = hours.group_by("user_id", "hour").agg(pl.len().alias("at_hour")).collect()
        share = np.ones(24)
        per_hour = hours.group_by("hour").agg(pl.len().alias("k")).collect()
        share[per_hour["hour"].to_numpy()] += per_hour["k"].to_numpy()
        self.hour_share_ = share / share.sum()
        self.population_ = {
            "users": max(events.select(pl.col("user_id").n_unique()).item() if events.height else 0, 1),
            # Users who came back to a value on another day: a one-day visit (an attacker's session, a stopover)
            # does not make a country or network familiar to the population.
            **{a: dict(self.known_.filter((pl.col("attribute") == a) & (pl.col("days") >= 2)).group_by("value")
                       .agg(pl.len().alias("u")).iter_rows()) for a in ATTRIBUTES},
        }

    def _score(self, events: pl.LazyFrame) -> pl.DataFrame:
        triple = ["user_id", "attribute", "value"]
        known = self.known_
        if "first" not in known.columns:  # a model stored before version 3 knows no first-seen times
            known = known.with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("first"))
        # A value is new where the model never saw it, or where the first time it saw it is in this frame:
        # the lookback before a range overlaps the model's history, and arrivals there are still firsts
        # (scored by the range they fell in, and peers of the firsts after them), wherever a refit fell.
        begins = events.select(pl.col("timestamp").min()).collect().item()
        seen_in_frame = (pl.col("first") >= begins).fill_null(False) if begins is not None else pl.lit(False)
        firsts = (self._long(events)
                  .join(known.lazy().filter(~seen_in_frame).select(triple), on=triple, how="anti")
                  .group_by(triple)
                  .agg(pl.col("event_id", "_asn").get(pl.col("timestamp").arg_min()), pl.col("timestamp").min())
                  .join(known.lazy().filter(seen_in_frame).select(*triple, "first"), on=triple, how="left")
                  .filter(pl.col("first").is_null() | (pl.col("first") == pl.col("timestamp"))).drop("first")
                  .collect())
        if firsts.is_empty():
            return _empty_scores()
        firsts = (firsts.with_columns(pl.col("timestamp").dt.hour().alias("hour"))
                  .join(self.users_, on="user_id", how="left").join(self.hours_, on=["user_id", "hour"], how="left"))
        n = firsts["n"].fill_null(0).to_numpy().astype(float)
        p_hour = np.where(n >= self.min_history,
                          (firsts["at_hour"].fill_null(0).to_numpy() + self.hour_prior
                           * self.hour_share_[firsts["hour"].to_numpy()]) / (n + self.hour_prior), 1.0)
        p_user = np.ones(firsts.height)
        share = np.ones(firsts.height)
        users = self.population_["users"]
        for a in ATTRIBUTES:
            mask = (firsts["attribute"] == a).to_numpy()
            d = firsts[a].fill_null(0).to_numpy().astype(float)
            rate = np.maximum(d, 1.0) / (n + 1.0)
            p_user = np.where(mask, np.where(n >= self.min_history, rate, 1.0), p_user)
            if a != "source_ip":
                used = firsts["value"].replace_strict(self.population_[a], default=0, return_dtype=pl.Float64)
                share = np.where(mask, (used.to_numpy() + 1.0) / (users + 2.0), share)
        firsts = firsts.with_columns(pl.Series("p_attr", np.minimum(p_user * share, 1.0)),
                                     pl.Series("p_user", p_user), pl.Series("pop_share", share),
                                     pl.Series("p_hour", np.minimum(p_hour, 1.0)),
                                     pl.col("timestamp").dt.truncate(self.window).alias("window_start"))
        location = {"source_country": 0, "source_asn": 1, "source_ip": 2}
        # Per user and window: location evidence is the most specific first that is new (country, else
        # ASN, else IP), client evidence the new user agent; the two multiply.
        grouped = (
            firsts.with_columns(pl.col("attribute").replace_strict(location, default=9, return_dtype=pl.Int8)
                                .alias("rank"))
            .sort("rank", "timestamp", "event_id", "attribute")  # a total order: a rerun takes the same firsts
            .group_by("user_id", "window_start", maintain_order=True)
            .agg(
                pl.col("p_attr").filter(pl.col("rank") < 9).first().fill_null(1.0).alias("p_location"),
                pl.col("attribute").filter(pl.col("rank") < 9).first().alias("_loc_attr"),
                pl.col("value").filter(pl.col("rank") < 9).first().alias("_loc_value"),
                pl.col("_asn").filter(pl.col("rank") < 9).first().alias("_loc_asn"),
                pl.col("timestamp").filter(pl.col("rank") < 9).first().alias("_loc_t"),
                pl.col("pop_share").filter(pl.col("rank") < 9).first().alias("_loc_share"),
                pl.col("p_attr").filter(pl.col("rank") == 9).first().fill_null(1.0).alias("p_client"),
                pl.struct("attribute", "value", "p_user", "pop_share").alias("firsts"),
                pl.col("event_id").unique(maintain_order=True).head(10).alias("sample_event_ids"),
                pl.col("n").first().alias("history_events"),
                pl.col("p_hour").min().alias("p_hour"), pl.col("hour").first().alias("hour"),
            )
        )
        frame = grouped.rename({"user_id": "entity_value"}).with_columns(
            pl.lit("user").alias("entity_type"),
            (pl.col("window_start") + F.duration(self.window)).alias("window_end"))
        frame = self._peers(self._plausibility(frame, firsts, events), events).drop(cs.starts_with("_loc"))
        p = frame["p_location"] * frame["p_client"] * frame["p_hour"] * frame["travel"]
        return with_scores(frame, p.clip(upper_bound=1.0).to_numpy())

    def _plausibility(self, frame: pl.DataFrame, firsts: pl.DataFrame, events: pl.LazyFrame) -> pl.DataFrame:
        """``travel``: a likelihood factor for windows with a new country (1 elsewhere) and ``elsewhere_minutes``.

        Two places at once: the nearest event of the user from another country, within ``travel_hours``, makes
        the new one rarer by up to ``trip_factor`` (the closer in time, the more). A plausible trip: nothing
        from another country that close, and a client the user already has (device continuity), makes it
        ``trip_factor`` times less rare.
        """
        new = (firsts.filter(pl.col("attribute") == "source_country")
               .select("user_id", "window_start", pl.col("value").alias("_country"), pl.col("timestamp").alias("_t"))
               .unique(["user_id", "window_start"], keep="first"))
        schema = {"travel": pl.Float64, "elsewhere_minutes": pl.Float64, "needed_kmh": pl.Float64}
        if new.is_empty():
            return frame.with_columns(*(pl.lit(None, dtype=t).alias(c) for c, t in schema.items())).with_columns(
                pl.col("travel").fill_null(1.0))
        span = timedelta(hours=self.travel_hours)
        around = (events.filter((pl.col("outcome") != "failure") & pl.col("source_country").is_not_null())
                  .join(new.lazy().select("user_id").unique(), on="user_id", how="semi")
                  .select("user_id", pl.col("timestamp").alias("_at"), "source_country").collect())
        apart_in_time = (pl.col("_at") - pl.col("_t")).abs()
        pairs = (new.join(around, on="user_id")
                 .filter((pl.col("source_country") != pl.col("_country"))
                         & ((apart_in_time <= span)
                            | ((pl.col("_at") <= pl.col("_t")) & (apart_in_time <= self.context))))
                 .with_columns((apart_in_time.dt.total_seconds() / 3600).alias("_hours")))
        # How fast the user would have had to travel from anywhere else they were seen in the hours before the first
        # (only before: the worker scores a first with what came before it, and a file must agree); the distance
        # is the least between the two countries (``analytics.geo``).
        apart = pl.DataFrame(
            [(a, b, geo.least_km(a, b)) for a, b in pairs.select("_country", "source_country").unique().iter_rows()],
            schema={"_country": pl.String, "source_country": pl.String, "_km": pl.Float64}, orient="row")
        gap = (pairs.join(apart, on=["_country", "source_country"], how="left")
               .group_by("user_id", "window_start")
               .agg((pl.col("_hours").filter(pl.col("_hours") <= self.travel_hours).min() * 60)
                    .alias("elsewhere_minutes"),
                    (pl.col("_km") / pl.col("_hours").clip(lower_bound=1 / 60)).filter(pl.col("_at") <= pl.col("_t"))
                    .max().alias("needed_kmh")))
        client_known = pl.col("p_client") >= 1.0
        hours = pl.col("elsewhere_minutes") / 60
        # Closer than an hour is two places at once (the full factor); at ``travel_hours`` it fades to none.
        at_once = pl.lit(1.0 / self.trip_factor) ** (1 - (hours - 1).clip(0) / max(self.travel_hours - 1, 1e-9))
        # A trip no airliner could have made is not a plausible trip, whatever the client.
        flown = pl.col("needed_kmh").fill_null(0.0) <= self._fastest_kmh
        travel = (pl.when(pl.col("_new_country").is_null()).then(1.0)
                  .when(pl.col("elsewhere_minutes").is_not_null()).then(at_once)
                  .when(client_known & flown).then(self.trip_factor).otherwise(1.0))
        return (frame.join(new.select("user_id", "window_start", pl.lit(True).alias("_new_country"))
                           .rename({"user_id": "entity_value"}), on=["entity_value", "window_start"], how="left")
                .join(gap.rename({"user_id": "entity_value"}), on=["entity_value", "window_start"], how="left")
                .with_columns(travel.cast(pl.Float64).alias("travel")).drop("_new_country"))

    def _peers(self, frame: pl.DataFrame, events: pl.LazyFrame) -> pl.DataFrame:
        """``peers``: other users who came in good standing through the same new country and network, or the
        same new network, in the ``peer_hours`` before a window's first (0 where none). Each peer adds to the
        population's share of the value (``p_location``), and a plausible trip with peers is ``trip_factor``
        times less rare again (its square root with one peer).

        In good standing: a client the user already has, nobody from another country within ``travel_hours``,
        and no trip faster than ``flight_kmh``. No peers count while the network fails logins for more users it
        never let in (within the same hours) than half the peers: a guessing attacker's address is nobody's office.
        """
        keep = frame.columns
        # A country is a place only with its network: without the ASN, two trips to one country say nothing.
        place = (frame.filter(pl.col("_loc_attr").is_in(["source_country", "source_asn"]))
                 .rename({"_loc_asn": "_asn"})
                 .filter((pl.col("_loc_attr") == "source_asn") | pl.col("_asn").is_not_null())
                 .with_columns(pl.when(pl.col("_loc_attr") == "source_asn").then(pl.col("_loc_value"))
                               .otherwise(pl.concat_str(pl.col("_loc_value"), pl.col("_asn"), separator="|"))
                               .alias("_key")))
        good = place.filter((pl.col("p_client") >= 1.0) & pl.col("elsewhere_minutes").is_null()
                            & (pl.col("needed_kmh").fill_null(0.0) <= self._fastest_kmh))
        span = self.context
        candidates = (place.select("entity_value", "window_start", "_key", "_asn", "_loc_t")
                      .join(good.select(pl.col("entity_value").alias("_peer"), pl.col("_key"),
                                        pl.col("_loc_t").alias("_peer_t")), on="_key")
                      .filter((pl.col("_peer") != pl.col("entity_value")) & (pl.col("_peer_t") <= pl.col("_loc_t"))
                              & (pl.col("_peer_t") >= pl.col("_loc_t") - span))
                      .group_by("entity_value", "window_start", "_asn", "_loc_t")
                      .agg(pl.col("_peer").n_unique().alias("peers")))
        if candidates.is_empty():
            return frame.with_columns(pl.lit(0, dtype=pl.UInt32).alias("peers")).select(*keep, "peers")
        # The network's logins (by ASN) in the hours before each first: who failed and never got in through it.
        asns = candidates["_asn"].drop_nulls().unique()
        logins = (events.filter((pl.col("event_type") == "user_login") & pl.col("source_asn").is_in(asns.implode()))
                  .select("user_id", "timestamp", "outcome", pl.col("source_asn").alias("_asn")).collect())
        first_ok = (logins.filter(pl.col("outcome") == "success").group_by("user_id", "_asn")
                    .agg(pl.col("timestamp").min().alias("_ok")))
        failing = (candidates.select("entity_value", "window_start", "_asn", "_loc_t")
                   .join(logins.filter(pl.col("outcome") == "failure"), on="_asn")
                   .filter((pl.col("timestamp") <= pl.col("_loc_t")) & (pl.col("timestamp") >= pl.col("_loc_t") - span))
                   .join(first_ok, on=["user_id", "_asn"], how="left")
                   .filter(pl.col("_ok").is_null() | (pl.col("_ok") > pl.col("_loc_t")))
                   .group_by("entity_value", "window_start").agg(pl.col("user_id").n_unique().alias("_failing")))
        counted = (candidates.join(failing, on=["entity_value", "window_start"], how="left")
                   .with_columns(pl.col("_failing").fill_null(0))
                   .with_columns(pl.when(pl.col("_failing") * 2 <= pl.col("peers")).then(pl.col("peers"))
                                 .otherwise(0).alias("peers"))
                   .select("entity_value", "window_start", "peers"))
        users = self.population_["users"]
        used = pl.col("_loc_share") * (users + 2.0)  # users who used the value before, plus one
        companions = pl.lit(self.trip_factor) ** (pl.col("peers").clip(upper_bound=2) / 2)
        return (frame.join(counted, on=["entity_value", "window_start"], how="left")
                .with_columns(pl.col("peers").fill_null(0))
                .with_columns(pl.when(pl.col("peers") > 0).then(pl.col("p_location") * (used + pl.col("peers")) / used)
                              .otherwise(pl.col("p_location")).alias("p_location"),
                              pl.when((pl.col("travel") > 1.0) & (pl.col("peers") > 0))
                              .then(pl.col("travel") * companions).otherwise(pl.col("travel")).alias("travel"))
                .select(*keep, "peers"))

    def _explain(self, row: dict[str, Any]) -> dict[str, Any]:
        firsts = row["firsts"]
        named = ", ".join(f"{f['attribute'].removeprefix('source_')} {f['value']}" for f in firsts[:4])
        return {
            "summary": f"first time {row['entity_value']} was seen with {named} "
                       f"(after {int(row['history_events'] or 0)} events of history)",
            "observed": {f["attribute"]: f["value"] for f in firsts},
            "expected": {f"{f['attribute']}_new_rate_for_user": round(f["p_user"], 6) for f in firsts},
            "features": [{"name": f"new_{f['attribute']}", "value": f["value"],
                          "contribution": round(-np.log10(max(f["p_user"] * f["pop_share"], 1e-300)), 2)}
                         for f in firsts],
            "peers": {f"share_of_users_with_{f['attribute']}": round(f["pop_share"], 6)
                      for f in firsts if f["attribute"] != "source_ip"},
            "hour": {"hour_utc": row["hour"], "share_of_user_activity": round(float(row["p_hour"]), 6)},
            **({"travel": {"seen_in_another_country_minutes_away": round(float(row["elsewhere_minutes"]), 1),
                           "plausible_trip": False}} if row.get("elsewhere_minutes") is not None else
               {"travel": {"needed_kmh_at_least": round(float(row["needed_kmh"])), "plausible_trip": False}}
               if (row.get("needed_kmh") or 0.0) > self._fastest_kmh else
               {"travel": {"plausible_trip": True}} if (row.get("travel") or 1.0) > 1.0 else {}),
        }

